"""Layers point down only: pipelines <- core (``solar_diffusion``, its CLI module aside) <- builder /
training / CLI / benchmarks. No module of ``pipelines/`` or of the core imports the builder,
training, the CLI or the benchmarks, by any route (checked on the source, so a function-local or
an importlib import counts too), and the pipeline file, uploaded alone as a Hub repo's
``pipeline.py``, imports only the standard library, numpy, torch and diffusers (and, inside a
function, in a ``try`` that turns its ``ImportError`` into an error of its own, the package's one
sunpy position conversion: ``LAZY_PIPELINE_IMPORTS``)."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Modules above the core, by their installed and their checkout names.
UPPER_FLOORS = ("solar_diffusion.training", "solar_diffusion.dataset_builder", "solar_diffusion.cli",
                "training", "dataset_builder", "benchmarks")
#: What the standalone pipeline file may import besides the standard library.
PIPELINE_IMPORTS = {"numpy", "torch", "diffusers"}
PIPELINE_FILE = ROOT / "pipelines" / "pipeline_solar_flare.py"
#: What the pipeline file may import from the package, lazily (inside a function, in a ``try``
#: catching ``ImportError``): NOAA locations and SkyCoords, converted by sunpy where it is installed.
LAZY_PIPELINE_IMPORTS = {"solar_diffusion.positions"}


def imported_names(source: str, package: str) -> list[str]:
    """Every module that ``source`` (a module of ``package``) names in an import, anywhere in it:
    ``import`` and ``from`` statements (relative ones resolved in ``package``; ``from a import b``
    names ``a`` and ``a.b``, which may be a module), and ``importlib.import_module`` or
    ``__import__`` called with a string.

    >>> imported_names("def f():\\n    from ..cli import main", "solar_diffusion.pipelines")
    ['solar_diffusion.cli', 'solar_diffusion.cli.main']
    """
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node.module or "", node.level, package)
            names += [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call) and _called_name(node.func) in ("import_module", "__import__") and node.args:
            first, anchor = node.args[0], node.args[1:2] or [k.value for k in node.keywords if k.arg == "package"]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                level = len(first.value) - len(first.value.lstrip("."))
                within = anchor[0].value if anchor and isinstance(anchor[0], ast.Constant) else package
                names.append(_absolute(first.value.lstrip("."), level, within))
    return names


def _absolute(module: str, level: int, package: str) -> str:
    """A relative import's module, made absolute in ``package``."""
    if not level:
        return module
    base = package.rsplit(".", level - 1)[0] if level > 1 else package
    return f"{base}.{module}" if module else base


def _called_name(func) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def upward_imports(source: str, package: str) -> list[str]:
    """The modules above the core that ``source`` imports.

    >>> upward_imports("from solar_diffusion.splits import resize\\nimport torch", "solar_diffusion")
    []
    """
    return [name for name in imported_names(source, package)
            if any(name == floor or name.startswith(floor + ".") for floor in UPPER_FLOORS)]


def non_standalone_imports(source: str) -> list[str]:
    """What ``source`` imports besides the standard library, numpy, torch and diffusers (a
    relative import counts: the Hub file has no package around it), a ``LAZY_PIPELINE_IMPORTS``
    module imported in a function's ``try ... except ImportError`` aside."""
    allowed = set(sys.stdlib_module_names) | PIPELINE_IMPORTS
    tree = ast.parse(source)
    lazy = {id(node) for node in _guarded_in_functions(tree)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.append("." * node.level + (node.module or ""))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            found += [m for m in modules if m.split(".")[0] not in allowed
                      and not (id(node) in lazy and m in LAZY_PIPELINE_IMPORTS)]
    return found


def _guarded_in_functions(tree):
    """The import statements in the body of a ``try`` (inside a function) that catches ``ImportError``."""
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Try) and any(_catches_import_error(h.type) for h in node.handlers):
                yield from (s for s in node.body if isinstance(s, (ast.Import, ast.ImportFrom)))


def _catches_import_error(handler_type) -> bool:
    names = handler_type.elts if isinstance(handler_type, ast.Tuple) else [handler_type]
    return any(_called_name(n) in ("ImportError", "ModuleNotFoundError") for n in names)


def lower_floor_modules() -> list[tuple[Path, str]]:
    """Each module of ``pipelines/`` and of the core (the CLI module and the bundled models aside),
    with the package it is installed in."""
    pipelines = [(path, "solar_diffusion.pipelines") for path in sorted((ROOT / "pipelines").glob("*.py"))]
    core = [(path, "solar_diffusion") for path in sorted((ROOT / "solar_diffusion").glob("*.py")) if path.name != "cli.py"]
    return pipelines + core


@pytest.mark.parametrize("path, package", lower_floor_modules(), ids=lambda p: getattr(p, "name", None))
def test_pipelines_and_the_core_import_nothing_above_them(path, package):
    found = upward_imports(path.read_text(), package)
    assert not found, f"{path.relative_to(ROOT)} imports {found}: move what it needs down into the core"


def test_the_pipeline_file_stands_alone():
    found = non_standalone_imports(PIPELINE_FILE.read_text())
    assert not found, f"{PIPELINE_FILE.relative_to(ROOT)} imports {found}: the Hub's pipeline.py has only " \
                      "the standard library, numpy, torch and diffusers"


UPWARD = {  # each route an import can take, as a core module (package "solar_diffusion") would write it
    "top-level import": "import solar_diffusion.training.data",
    "top-level from": "from solar_diffusion.training.experiments import comparison_tables",
    "function-local from": "def f():\n    from solar_diffusion.dataset_builder.labels import frame_flares",
    "method-local import": "class A:\n    def m(self):\n        import solar_diffusion.cli",
    "from the package": "from solar_diffusion import cli",
    "relative": "from .training import data",
    "relative package": "from . import dataset_builder",
    "checkout name": "import training.data",
    "checkout name, from": "from dataset_builder.build import plan_build",
    "benchmarks": "from benchmarks import bench_student",
    "import_module": "import importlib\nimportlib.import_module('solar_diffusion.training.data')",
    "bare import_module": "from importlib import import_module\nmod = import_module('solar_diffusion.cli')",
    "relative import_module": "import importlib\nimportlib.import_module('.dataset_builder', package='solar_diffusion')",
    "__import__": "def f():\n    return __import__('solar_diffusion.dataset_builder.build')",
}


@pytest.mark.parametrize("route", list(UPWARD))
def test_the_layering_check_catches_every_route(route):
    assert upward_imports(UPWARD[route], "solar_diffusion"), route


def test_the_layering_check_resolves_relative_imports_in_their_package():
    assert upward_imports("from ..cli import main", "solar_diffusion.pipelines") == ["solar_diffusion.cli",
                                                                                    "solar_diffusion.cli.main"]
    assert upward_imports("from ..training import data", "solar_diffusion.pipelines")
    assert not upward_imports("from .pipeline_solar_flare import SolarFlarePipeline", "solar_diffusion.pipelines")
    assert not upward_imports("from solar_diffusion import pack, splits\nimport_module('solar_diffusion.presets')",
                              "solar_diffusion")


def test_the_standalone_check_catches_what_the_hub_file_cannot_import():
    assert non_standalone_imports("import json, math\nimport numpy as np\nfrom diffusers import DiffusionPipeline\n"
                                  "def f():\n    import torch.nn.functional as F") == []
    for source in ("import sunpy.map", "def f():\n    from solar_diffusion import splits", "from . import x",
                   "from .pipeline_solar_flare import QUIET_LABEL", "import astropy.units as u"):
        assert non_standalone_imports(source), source


def test_the_standalone_check_allows_only_the_guarded_lazy_position_import():
    """The pipeline's one import of the package (``prepare_position``) passes only inside a
    function, in a ``try`` that catches its ``ImportError``; any other spelling or place is caught."""
    guarded = ("def f():\n    try:\n        from solar_diffusion.positions import model_position\n"
               "    except {}:\n        raise ValueError('needs solar-diffusion')")
    assert non_standalone_imports(guarded.format("ImportError")) == []
    assert non_standalone_imports(guarded.format("(ModuleNotFoundError, OSError)")) == []
    for source in ("from solar_diffusion.positions import model_position",  # at module level
                   "try:\n    import solar_diffusion.positions\nexcept ImportError:\n    pass",  # module level
                   "def f():\n    from solar_diffusion.positions import model_position",  # unguarded
                   guarded.format("ValueError"),  # guards the wrong error
                   guarded.replace("solar_diffusion.positions import model_position",
                                   "solar_diffusion import positions").format("ImportError"),
                   guarded.replace("solar_diffusion.positions", "solar_diffusion.maps").format("ImportError"),
                   guarded.replace("from solar_diffusion.positions import model_position",
                                   "import sunpy.coordinates").format("ImportError")):
        assert non_standalone_imports(source), source
