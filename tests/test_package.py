"""The package's shape: imports follow the data flow, and nothing imports the scripts on top.

docs/design (and inrforge/__init__'s docstring) describe the library as one pipeline,
sources -> fit -> store -> data/augment -> models -> train, with the scripts and the CLI on top.
These tests read every module's imports (also those inside functions) and check them against
:data:`LAYERS`, so that a backward import fails here rather than in a review.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Each inrforge module may import only modules listed before it (a subpackage's own modules may
# import each other).  The package's __init__ is the public API on top: nothing inside imports it.
LAYERS = [
    "errors", "checks", "version", "files", "memory",  # shared basics; files: safe local outputs
    "arch", "weights", "inr",                 # the INR description, the weight container, the forward
    "sources",                                # what gets fitted
    "native",                                 # the fused C++ fitting step
    "fit", "store", "fitjob", "distributed",  # fitting into a store, locally or on Dask
    "data", "align", "augment", "models",     # reading a store, augmenting, the models
    "optim",                                  # what the training loops share (schedule, step, best keeper)
    "checkpoint",                             # a training run's checkpoint, for --resume
    "run_folder",                             # the files of a training run's folder
    "zoo", "adapt",                           # the classifier zoo, weight->weight domain adaptation of one
    "interop", "contrastive",                 # DWSNets files, contrastive learning
    "predict",                                # a trained run read back and applied to other INRs
    "train",                                  # training weight-space models on a store
    "script", "figures", "experiments",       # what the command line and the pipelines share
    "cli", "launch", "__main__", "__init__",
]


def inrforge_imports(source: str, module: str) -> set[str]:
    """The inrforge modules (``inrforge.X``, X a module or subpackage of the top level) that the
    code ``source`` of module ``module`` (e.g. ``inrforge.sources.mnist``) imports, anywhere in it."""
    is_package = module.endswith(".__init__")
    package = module.rsplit(".", 1)[0] if is_package or "." in module else module
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = package.split(".")
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join(parts + ([node.module] if node.module else []))
            names = [base] if node.module else [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "inrforge":
                continue
            if len(parts) == 1 or not is_module(parts[:2]):
                found.add("inrforge.__init__")  # the package itself, or a name its __init__ defines
            else:
                found.add(".".join(parts[:2]))
    return found


def is_module(parts: list[str]) -> bool:
    """Whether ``inrforge.X`` (``parts`` = ["inrforge", X]) is a module or subpackage, not a name in __init__."""
    path = ROOT.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def backward_imports(module: str, imported: set[str]) -> list[str]:
    """The imports of ``module`` that point against :data:`LAYERS` (or to a module not in it)."""
    top = module.split(".")[1]
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for name in sorted(imported):
        other = name.split(".")[1]
        if other == top:
            continue  # within a subpackage
        if other not in rank or rank[other] >= rank[top]:
            bad.append(f"{module} imports {name}")
    return bad


def library_modules():
    for path in sorted((ROOT / "inrforge").rglob("*.py")):
        yield ".".join(path.relative_to(ROOT).with_suffix("").parts), path


def test_every_module_has_a_layer():
    tops = {module.split(".")[1] for module, _ in library_modules()}
    assert tops == set(LAYERS), f"modules not in LAYERS: {sorted(tops - set(LAYERS))}, gone: {sorted(set(LAYERS) - tops)}"


def test_imports_follow_the_data_flow():
    bad = [line for module, path in library_modules()
           for line in backward_imports(module, inrforge_imports(path.read_text(), module))]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("source, module, expected", [
    ("from .store import open_store", "inrforge.data", {"inrforge.store"}),
    ("from ..errors import InrforgeError", "inrforge.sources.mnist", {"inrforge.errors"}),
    ("from .base import Source", "inrforge.sources.mnist", {"inrforge.sources"}),
    ("from . import __version__", "inrforge.store", {"inrforge.__init__"}),
    ("from . import fit", "inrforge.__init__", {"inrforge.fit"}),
    ("def f():\n    import inrforge.train\n", "inrforge.data", {"inrforge.train"}),
    ("from inrforge.models.dwsnet import DWSNet", "inrforge.train", {"inrforge.models"}),
])
def test_the_checker_reads_every_kind_of_import(source, module, expected):
    assert inrforge_imports(source, module) == expected


def test_the_checker_finds_a_backward_import():
    # A function-level import of a later stage, and the package's own __init__, are both caught.
    assert backward_imports("inrforge.store", {"inrforge.data", "inrforge.arch"}) == \
        ["inrforge.store imports inrforge.data"]
    assert backward_imports("inrforge.store", {"inrforge.__init__"}) == ["inrforge.store imports inrforge.__init__"]
    assert backward_imports("inrforge.sources", {"inrforge.sources", "inrforge.inr"}) == []


def test_nothing_imports_the_scripts_on_top():
    """pipelines/ and benchmarks/ use the library; the library, and each other, never import them."""
    scripts = {path.stem for folder in ("pipelines", "benchmarks") for path in (ROOT / folder).glob("*.py")}
    offenders = []
    for folder in ("inrforge", "pipelines", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                         else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                for name in names:
                    first = name.split(".")[0]
                    if first in ("pipelines", "benchmarks", "tests") or (first in scripts and first != "_common"):
                        offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_no_submodule_shadows_a_public_name():
    """Importing a submodule sets it as an attribute of the package: one named like a public name
    (a module ``inrforge/render.py`` beside the function ``inrforge.render``) would replace that name
    for everyone once anything imported it."""
    import importlib

    import inrforge

    public = {name: getattr(inrforge, name) for name in inrforge.__all__}
    modules = [module for module, _ in library_modules() if not module.endswith("__main__")]
    for module in modules:
        importlib.import_module(module.removesuffix(".__init__"))
    assert {name for name in public if getattr(inrforge, name) is not public[name]} == set()
    assert not {module.split(".")[1] for module in modules} & set(inrforge.__all__)


def test_importing_the_package_or_its_entry_point_leaves_torch_for_later():
    """``import inrforge`` loads its public names on first use, so the console script starts without
    torch (seconds to import) and handles a Ctrl-C meanwhile itself (inrforge.launch)."""
    import subprocess
    import sys

    code = ("import sys, inrforge, inrforge.launch; assert 'torch' not in sys.modules, 'torch imported'; "
            "from inrforge import open_store, __version__; assert 'torch' in sys.modules; "
            "assert inrforge.fit.FitSettings and 'fit_inrs' in dir(inrforge); print(__version__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    with pytest.raises(AttributeError, match="module 'inrforge' has no attribute 'nope'"):
        import inrforge

        inrforge.nope


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "pipelines").glob("*.py")))
def test_a_ctrl_c_while_a_pipeline_script_starts_is_one_line(script):
    """A Ctrl-C while a pipeline script imports torch (raised by an import hook): one line on stderr,
    and the process ends as stopped by SIGINT, as Python's own handling does; no traceback."""
    import signal
    import subprocess
    import sys

    code = ("import runpy, sys\n"
            "class Interrupt:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Interrupt())\n"
            f"runpy.run_path('pipelines/{script}', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert (done.returncode, done.stderr) == (-signal.SIGINT, f"{script}: interrupted\n")


def test_a_ctrl_c_while_the_command_starts_is_one_line():
    """A Ctrl-C while the CLI (and torch with it) is being imported: one line on stderr and status
    130, no traceback.  The interrupt is raised by an import hook when ``inrforge.cli`` is imported."""
    import subprocess
    import sys

    code = ("import sys\n"
            "class Interrupt:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'inrforge.cli':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Interrupt())\n"
            "from inrforge.launch import main\n"
            "sys.exit(main(['info', 'nowhere.zarr']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert (done.returncode, done.stderr) == (130, "inrforge: interrupted\n")
