"""Training on an offline GPU node, tested here on CPU: a pack of real frames, training in Python
processes that cannot import what the node lacks, the pipeline in parts, assembled and sampled.

The transfer budget: the project's tracked files, the pack of the 2012 training months (128 px,
171/131/94 A) and the wheels travel to the GPU machine together, at most 60 MiB (its limit is 64).
"""

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from solar_diffusion import SolarFlarePipeline
from solar_diffusion.cli import main
from solar_diffusion.offline import (
    GPU_NODE_WHEELS,
    NODE_PACKAGES,
    NOT_IMPORTED,
    assemble,
    gpu_wheels_command,
    wheel_files,
)
from solar_diffusion.pack import DEFAULT_MAX_MB, write_pack

ROOT = Path(__file__).resolve().parents[1]
TRANSFER_BUDGET = 60 * 2**20
#: What an offline GPU node lacks and the training path must not import.
NOT_ON_NODE = ("datasets", "sunpy", "astropy", "importlib_metadata")
#: What pip needs to build and install this checkout (pyproject's readme, licences and package-dir).
CHECKOUT = ("pyproject.toml", "README.md", "LICENSE", "CREDITS.md", "solar_diffusion", "pipelines", "dataset_builder",
            "training")


def node_env(tmp_path, hide_checkout=False) -> dict:
    """An environment whose Python processes cannot import ``NOT_ON_NODE`` (a sitecustomize
    blocks them), nor, with ``hide_checkout``, this checkout's editable install: as on the node."""
    folder = tmp_path / "node-sitecustomize"
    folder.mkdir(exist_ok=True)
    code = f"import sys\nfor name in {NOT_ON_NODE!r}:\n    sys.modules[name] = None\n"
    if hide_checkout:
        code += ("sys.meta_path[:] = [f for f in sys.meta_path\n"
                 "                   if not getattr(f, '__module__', '').startswith('__editable__')]\n")
    (folder / "sitecustomize.py").write_text(code)
    return dict(os.environ, PYTHONPATH=str(folder), HF_HUB_OFFLINE="1", PYTHONHASHSEED="0")


def run(cmd, env, cwd, timeout=600):
    result = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            check=False)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


def check_assembled(parts, model, trained):
    """Assemble ``parts`` into ``model`` with the CLI: the UNet is the trained one and it generates."""
    assert main(["assemble", "--parts", parts, "--out", model]) == 0
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (model / weights).read_bytes() == (trained / weights).read_bytes()
    pipe = SolarFlarePipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(list(pipe.id2label.values())[-1:], num_inference_steps=2, output_type="data_unit")
    assert out.images.shape == (1, 1, 16, 16) and np.isfinite(out.images).all()


def test_pack_train_under_a_time_budget_export_in_parts_assemble_generate(tiny_dataset, tmp_path, capsys):
    pack, out = tmp_path / "pack", tmp_path / "run"
    write_pack(tiny_dataset, pack, log=lambda *_: None)
    # the run is over budget after its first step: it checkpoints and writes its pipeline
    run([sys.executable, "-m", "solar_diffusion.training.train_ddpm", "--dataset", pack, "--out", out,
         "--preset", "tiny", "--train-batch-size", "4", "--max-train-steps", "50", "--max-train-minutes", "0.001",
         "--logger", "none", "--sample-steps", "0", "--validation-steps", "1", "--checkpointing-steps", "20",
         "--scale-lr", "--mixed-precision", "no"], node_env(tmp_path), cwd=tmp_path)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["stop"] == "max_train_minutes" and summary["steps"] == 1 and summary["images_per_s"] > 0
    assert summary["learning_rate"] == pytest.approx(2e-4 * 0.5)  # sqrt(4 / 16)
    assert summary["channels_last"] is False and summary["device"] == "cpu"
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-1"]
    assert [json.loads(line)["step"] for line in (out / "losses.jsonl").read_text().splitlines()] == [1]

    parts = tmp_path / "parts"
    assert main(["export-parts", "--model", out / "pipeline", "--out", parts, "--part-mb", "0.1"]) == 0
    manifest = json.loads((parts / "parts.json").read_text())
    assert len(manifest["parts"]) > 1 and all((parts / p["file"]).stat().st_size <= 100_000 for p in manifest["parts"])
    check_assembled(parts, tmp_path / "model", out / "pipeline")

    # a part cut short, or missing, is named; nothing is written
    second = parts / manifest["parts"][1]["file"]
    second.write_bytes(second.read_bytes()[:-10])
    assert main(["assemble", "--parts", parts, "--out", tmp_path / "model2"]) == 2
    assert re.search(r"error: .*pipeline\.tar\.001: .*cut-short copy", capsys.readouterr().err)
    second.unlink()
    with pytest.raises(ValueError, match=r"pipeline\.tar\.001: missing"):
        assemble(parts, tmp_path / "model2")
    assert not (tmp_path / "model2").exists()
    with pytest.raises(ValueError, match="not an empty folder"):
        assemble(parts, tmp_path / "model")


def test_offline_gpu_script_installs_the_checkout_and_trains_from_a_pack(tiny_dataset, tmp_path):
    """training/offline_gpu.sh as on the node: pip installs the carried wheels (where .whl has
    them) and a copy of this checkout (less its bundled models) into a site folder; Python cannot
    import the checkout's editable install nor what the node lacks."""
    src = tmp_path / "checkout"
    src.mkdir()
    for name in CHECKOUT:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "models"))
        else:
            shutil.copy(ROOT / name, src / name)
    write_pack(tiny_dataset, src / ".pack" / "tiny", log=lambda *_: None)
    wheels = ROOT / ".whl" if all(wheel_files(ROOT / ".whl").values()) else tmp_path / "no-wheels"
    env = node_env(tmp_path, hide_checkout=True) | {
        "PYTHON": sys.executable, "SITE": str(tmp_path / "site"), "WHEELS": str(wheels), "RUN": str(tmp_path / "run")}
    result = run(["sh", "training/offline_gpu.sh", ".pack/tiny", tmp_path / "out", "--preset", "tiny",
                  "--train-batch-size", "4", "--max-train-steps", "2", "--max-train-minutes", "5",
                  "--validation-steps", "0", "--checkpointing-steps", "1"], env, cwd=src)
    assert re.search(r"1 x cpu, no precision, total batch 4, .* diffusers 0\.42", result.stdout)
    site = tmp_path / "site"
    assert (site / "solar_diffusion" / "pipelines" / "pipeline_solar_flare.py").is_file()
    assert (site / "diffusers").is_dir() == (wheels == ROOT / ".whl")
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["stop"] == "max_train_steps" and summary["images_per_s"] > 0
    check_assembled(tmp_path / "out", tmp_path / "model", tmp_path / "run" / "pipeline")


def test_the_gpu_wheels_are_the_tested_versions_fetched_for_the_node(tmp_path, capsys):
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = {canonicalize_name(Requirement(r).name): Requirement(r).specifier for r in project["dependencies"]}
    for pin in GPU_NODE_WHEELS:
        name, version = pin.split("==")
        assert version in ranges[canonicalize_name(name)], pin  # inside the project's range
        assert importlib.metadata.version(name) == version, pin  # and the version tested here

    command = gpu_wheels_command(tmp_path / ".whl")
    assert command[:6] == ["python3", "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    flags = " ".join(command)
    assert "--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64" in flags
    assert "--platform manylinux2014_x86_64" in flags
    assert command[-2 - len(GPU_NODE_WHEELS):] == ["-d", str(tmp_path / ".whl"), *GPU_NODE_WHEELS]
    assert main(["gpu-wheels", "--out", tmp_path / ".whl", "--print"]) == 0
    assert capsys.readouterr().out.strip() == flags

    # which wheel file is which; another version in the folder is refused (two versions stop pip)
    (tmp_path / ".whl").mkdir()
    assert wheel_files(tmp_path / ".whl") == {GPU_NODE_WHEELS[0]: None}
    listed = tmp_path / ".whl" / f"diffusers-{GPU_NODE_WHEELS[0].split('==')[1]}-py3-none-any.whl"
    listed.write_bytes(b"")
    assert wheel_files(tmp_path / ".whl") == {GPU_NODE_WHEELS[0]: listed}
    (tmp_path / ".whl" / "diffusers-0.41.0-py3-none-any.whl").write_bytes(b"")
    with pytest.raises(ValueError, match=r"diffusers-0\.41\.0-py3-none-any\.whl, another version than diffusers=="):
        wheel_files(tmp_path / ".whl")


def carried_wheels() -> dict:
    found = wheel_files(ROOT / ".whl") if (ROOT / ".whl").is_dir() else {w: None for w in GPU_NODE_WHEELS}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.skip(f"{ROOT / '.whl'} lacks {', '.join(missing)} (fetch them with: solar-diffusion gpu-wheels)")
    return found


def test_the_carried_wheels_need_only_what_the_node_has():
    import zipfile

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    carried = {canonicalize_name(w.split("==")[0]) for w in GPU_NODE_WHEELS}
    for path in carried_wheels().values():
        with zipfile.ZipFile(path) as wheel:
            metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
            lines = wheel.read(metadata).decode().splitlines()
        for line in lines:
            if not line.startswith("Requires-Dist:"):
                continue
            requirement = Requirement(line.split(":", 1)[1])
            if requirement.marker and not requirement.marker.evaluate({"python_version": "3.12", "extra": ""}):
                continue
            name = canonicalize_name(requirement.name)
            assert name in NODE_PACKAGES | set(NOT_IMPORTED) | carried, f"{path.name} needs {requirement}"


def tracked_bytes() -> int:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"{ROOT} is not a git checkout: its tracked files are unknown")
    return sum((ROOT / n).stat().st_size for n in names.decode().split("\0") if n and (ROOT / n).is_file())


def test_the_tracked_files_leave_room_for_a_full_pack():
    """``pack`` keeps a pack within --max-mb (25 MB by default): that bound and the tracked files fit."""
    assert tracked_bytes() + DEFAULT_MAX_MB * 1e6 <= TRANSFER_BUDGET, f"{tracked_bytes() / 2**20:.1f} MiB tracked"


def test_the_tracked_files_a_full_pack_and_the_wheels_fit_the_transfer_budget():
    wheels = sum(path.stat().st_size for path in carried_wheels().values())
    total = tracked_bytes() + DEFAULT_MAX_MB * 1e6 + wheels
    assert total <= TRANSFER_BUDGET, f"{total / 2**20:.1f} MiB with {wheels / 2**20:.1f} MiB of wheels"


@pytest.mark.slow
def test_the_2012_training_months_at_128_px_in_three_channels_pack_within_budget(shared_data, real_dataset_of_days,
                                                                                 tmp_path):
    """Builds the real training months (January to June 2012; minutes) and packs them as the GPU run does."""
    days = [f"{m:02d}-{d:02d}" for m in range(1, 7) for d in range(1, 32)]
    data = real_dataset_of_days(shared_data, tmp_path / "ds", days, 128, channels=("171", "131", "94"))
    manifest = write_pack(data, tmp_path / "pack")
    pack_bytes = sum(f["bytes"] for f in manifest["files"].values()) + (tmp_path / "pack" / "manifest.json").stat().st_size
    rows = manifest["splits"]["train"]["rows"]
    print(f"pack: {rows} frames, {pack_bytes / 1e6:.2f} MB, {manifest['encoding']}, {manifest['splits']['train']['error']}")
    assert rows > 2000 and pack_bytes <= DEFAULT_MAX_MB * 1e6
    assert manifest["splits"]["train"]["error"]["rmse"] < 3  # brightness levels of 0-255
    wheels = sum(p.stat().st_size for p in wheel_files(ROOT / ".whl").values() if p) if (ROOT / ".whl").is_dir() else 0
    assert tracked_bytes() + pack_bytes + wheels <= TRANSFER_BUDGET
