"""``solar-diffusion generate`` imports only what its output needs: no sunpy, matplotlib or
scipy.stats for PNG files (about 2 s of start-up on 2 cores); everything still works after.

``startup.scipy_on_demand`` relies on a private flag of diffusers (``_scipy_available``) and on
what diffusers' scheduler modules import under it: the tests at the end fail when a diffusers
release changes either (pyproject.toml pins the tested minor version)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from solar_diffusion.defaults import bundled_model
from solar_diffusion.startup import SCIPY_NAMES

needs_bundled_model = pytest.mark.skipif(bundled_model() is None, reason="no bundled model in this checkout")

SCRIPT = """
import json, sys
from solar_diffusion.cli import main
main(["generate", "--num-images", "1", "--flare-class", "M", "--steps", "2", "--image-size", "64", "--out", sys.argv[1]]
     + sys.argv[2:])
loaded = {name: name in sys.modules for name in ("sunpy", "matplotlib", "scipy.stats", "astropy")}
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler, LMSDiscreteScheduler
scheduler = DPMSolverMultistepScheduler(use_beta_sigmas=True)  # scipy.stats, imported on demand
scheduler.set_timesteps(5)
EulerDiscreteScheduler(use_beta_sigmas=True).set_timesteps(5)
LMSDiscreteScheduler().set_timesteps(5)  # a real class, not diffusers' scipy-less placeholder
print(json.dumps({"loaded": loaded, "sigma": float(scheduler.sigmas[0])}))
"""


def run(tmp_path, *extra) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "out"), *extra], capture_output=True,
                          text=True, timeout=120, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warn" not in done.stderr.lower() and "kept in float32" not in done.stderr, done.stderr  # no spurious warnings
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_bundled_model
def test_png_output_imports_no_sunpy_matplotlib_or_scipy_stats(tmp_path):
    result = run(tmp_path)
    assert result["loaded"] == {"sunpy": False, "matplotlib": False, "scipy.stats": False, "astropy": False}
    assert result["sigma"] > 100  # beta sigmas, computed by scipy.stats once asked for
    assert (tmp_path / "out" / "contact_sheet_0094.png").exists()


@needs_bundled_model
def test_fits_output_imports_sunpy(tmp_path):
    result = run(tmp_path, "--format", "fits")
    assert result["loaded"]["sunpy"] and result["loaded"]["astropy"]
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()).count(".fits") == 3  # one file per channel


@needs_bundled_model
def test_main_hands_the_collector_back_and_the_script_exits_frozen(tmp_path):
    """In-process commands leave the garbage collector as they found it (the tests run many);
    the script leaves the start-up's objects frozen, so the collection at exit skips them."""
    import gc

    from solar_diffusion.cli import main

    assert main(["generate", "--num-images", "1", "--flare-class", "M", "--steps", "2", "--image-size", "64",
                 "--out", str(tmp_path / "a")]) == 0
    assert gc.isenabled() and gc.get_freeze_count() == 0
    script = ("import atexit, gc, sys\n"
              "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 100000, gc.isenabled()))\n"
              "sys.argv = ['solar-diffusion', 'generate', '--num-images', '1', '--flare-class', 'M',"
              " '--steps', '2', '--image-size', '64', '--out', sys.argv[1]]\n"
              "from solar_diffusion.cli import run\nrun()\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "b")], capture_output=True, text=True,
                          timeout=120, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "frozen True True"
    assert (tmp_path / "b" / "contact_sheet_0094.png").exists()


def scipy_imports(source: str) -> tuple[dict, list]:
    """What a module imports from scipy as it loads: the names bound under a module-level ``if
    is_scipy_available():`` (name -> module), and any other scipy import outside its functions.

    >>> scipy_imports("if is_scipy_available():\\n    import scipy.stats\\n    from scipy import integrate\\n"
    ...               "import scipy.special\\ndef f():\\n    import scipy.linalg")
    ({'scipy': 'scipy', 'integrate': 'scipy.integrate'}, ['scipy.special'])
    """
    guarded, other = {}, []

    def visit(node, under_flag: bool):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return  # imported when called, not as the module loads
        if isinstance(node, ast.If):
            flag = ast.unparse(node.test) == "is_scipy_available()"
            for child in node.body:
                visit(child, under_flag or flag)
            for child in node.orelse:
                visit(child, under_flag)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                module = alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
                if module.split(".")[0] != "scipy":
                    continue
                if not under_flag:
                    other.append(module)
                elif isinstance(node, ast.Import):  # "import scipy.stats" binds scipy; "... as st", scipy.stats
                    guarded[alias.asname or "scipy"] = module if alias.asname else "scipy"
                else:
                    guarded[alias.asname or alias.name] = module
            return
        for child in ast.iter_child_nodes(node):
            visit(child, under_flag)

    visit(ast.parse(source), False)
    return guarded, other


def scheduler_modules_with_scipy() -> dict:
    """The installed diffusers' scheduler modules that import scipy as they load: name -> what they bind."""
    from diffusers.utils import import_utils

    found = {}
    for path in sorted((Path(import_utils.__file__).parents[1] / "schedulers").glob("scheduling_*.py")):
        guarded, other = scipy_imports(path.read_text())
        assert not other, f"diffusers' {path.name} imports {other} without is_scipy_available(): " \
                          "scipy_on_demand no longer keeps scipy out of start-up"
        if guarded:
            found[path.stem] = guarded
    return found


def test_diffusers_still_has_the_private_scipy_flag_and_reads_it_when_asked():
    """``scipy_on_demand`` sets ``import_utils._scipy_available``: it must exist, be a bool, and be
    what ``is_scipy_available()`` returns at the time of the call (the scheduler modules ask then)."""
    from diffusers.utils import import_utils

    flag = import_utils._scipy_available
    assert isinstance(flag, bool) and flag  # scipy is a dependency
    try:
        import_utils._scipy_available = False
        assert import_utils.is_scipy_available() is False
    finally:
        import_utils._scipy_available = flag


def test_scheduler_modules_import_from_scipy_only_what_startup_provides_on_demand():
    found = scheduler_modules_with_scipy()
    assert {"scheduling_dpmsolver_multistep", "scheduling_euler_discrete", "scheduling_heun_discrete",
            "scheduling_lms_discrete"} <= set(found)  # the ones the UNet's import loads, and LMS (integrate)
    for module, names in found.items():
        assert names.items() <= SCIPY_NAMES.items(), f"{module} imports {names}; startup.SCIPY_NAMES has {SCIPY_NAMES}"


SCHEDULERS_SCRIPT = """
import importlib, inspect, json, sys, warnings
warnings.simplefilter("ignore")
import torch
from solar_diffusion.startup import scipy_on_demand
with scipy_on_demand():
    modules, missing = [], []
    for name in sys.argv[1:]:
        try:
            modules.append(importlib.import_module("diffusers.schedulers." + name))
        except ModuleNotFoundError as error:  # an optional dependency of one scheduler (torchsde)
            missing.append(name)
loaded_at_import = "scipy.stats" in sys.modules
from diffusers import SchedulerMixin
sigmas = {}
for module in modules:
    for name, cls in list(vars(module).items()):
        if (inspect.isclass(cls) and issubclass(cls, SchedulerMixin) and cls.__module__ == module.__name__
                and "use_beta_sigmas" in inspect.signature(cls.__init__).parameters):
            scheduler = cls(use_beta_sigmas=True)
            scheduler.set_timesteps(5)
            sigmas[name] = float(scheduler.sigmas[0])
from diffusers import LMSDiscreteScheduler
lms = LMSDiscreteScheduler()
lms.set_timesteps(5)
x = torch.zeros(1, 1, 4, 4)
step = lms.step(torch.zeros_like(x), lms.timesteps[1], x).prev_sample  # its coefficients integrate with scipy
print(json.dumps({"loaded_at_import": loaded_at_import, "missing": missing, "sigmas": sigmas,
                  "lms_step_finite": bool(torch.isfinite(step).all()), "loaded_after": "scipy.stats" in sys.modules}))
"""


def test_schedulers_loaded_without_scipy_still_work_with_beta_sigmas():
    """Every scheduler module that imports scipy, loaded inside ``scipy_on_demand``: scipy.stats is not
    imported then, yet each of its schedulers makes beta sigmas and LMS steps (scipy imported on use)."""
    modules = sorted(scheduler_modules_with_scipy())
    done = subprocess.run([sys.executable, "-c", SCHEDULERS_SCRIPT, *modules], capture_output=True, text=True,
                          timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["loaded_at_import"] and result["loaded_after"]
    assert len(result["missing"]) <= 1 and len(result["sigmas"]) >= 10, result
    assert all(sigma > 0 and sigma == sigma for sigma in result["sigmas"].values()), result["sigmas"]
    assert result["lms_step_finite"]
