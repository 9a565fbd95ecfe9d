"""``solar-diffusion generate`` imports only what its output needs: no sunpy, matplotlib or
scipy.stats for PNG files (about 2 s of start-up on 2 cores); everything still works after."""

import json
import subprocess
import sys

import pytest

from solar_diffusion.defaults import bundled_model

pytestmark = pytest.mark.skipif(bundled_model() is None, reason="no bundled model in this checkout")

SCRIPT = """
import json, sys
from solar_diffusion.cli import main
main(["generate", "--num-images", "1", "--flare-class", "M", "--steps", "2", "--out", sys.argv[1]] + sys.argv[2:])
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


def test_png_output_imports_no_sunpy_matplotlib_or_scipy_stats(tmp_path):
    result = run(tmp_path)
    assert result["loaded"] == {"sunpy": False, "matplotlib": False, "scipy.stats": False, "astropy": False}
    assert result["sigma"] > 100  # beta sigmas, computed by scipy.stats once asked for
    assert (tmp_path / "out" / "contact_sheet_0094.png").exists()


def test_fits_output_imports_sunpy(tmp_path):
    result = run(tmp_path, "--format", "fits")
    assert result["loaded"]["sunpy"] and result["loaded"]["astropy"]
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()).count(".fits") == 3  # one file per channel


def test_main_hands_the_collector_back_and_the_script_exits_frozen(tmp_path):
    """In-process commands leave the garbage collector as they found it (the tests run many);
    the script leaves the start-up's objects frozen, so the collection at exit skips them."""
    import gc

    from solar_diffusion.cli import main

    assert main(["generate", "--num-images", "1", "--flare-class", "M", "--steps", "2",
                 "--out", str(tmp_path / "a")]) == 0
    assert gc.isenabled() and gc.get_freeze_count() == 0
    script = ("import atexit, gc, sys\n"
              "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 100000, gc.isenabled()))\n"
              "sys.argv = ['solar-diffusion', 'generate', '--num-images', '1', '--flare-class', 'M',"
              " '--steps', '2', '--out', sys.argv[1]]\n"
              "from solar_diffusion.cli import run\nrun()\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "b")], capture_output=True, text=True,
                          timeout=120, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "frozen True True"
    assert (tmp_path / "b" / "contact_sheet_0094.png").exists()
