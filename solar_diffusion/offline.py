"""Training on an offline GPU node, and bringing the model back.

A node with Python and PyTorch but no network gets three things with the job: this checkout
(pip builds and installs it there, offline), a training pack (``solar-diffusion pack``) and the
wheels the node lacks (``GPU_NODE_WHEELS``, fetched here by ``solar-diffusion gpu-wheels``).
``training/offline_gpu.sh`` installs them, trains from the pack under a wall-clock budget and
exports the final pipeline in parts of at most ``DEFAULT_PART_MB`` MB (``export_parts``), small
enough to come back; ``solar-diffusion assemble`` makes a saved pipeline of them again.

>>> " ".join(gpu_wheels_command(".whl")[:6])
'python3 -m pip download --no-deps --only-binary=:all:'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from solar_diffusion.files import atomic_write, sha256_file

#: What a node with Python 3.12 and PyTorch (the nvidia-h200 image) lacks to train from a pack:
#: diffusers. The version is the one tested here (pyproject's range).
GPU_NODE_WHEELS = ("diffusers==0.42.1",)
#: What the training path needs that such a node has (its ``pip list``), diffusers' own needs among them.
NODE_PACKAGES = frozenset({
    "torch", "accelerate", "numpy", "pyarrow", "pillow", "tqdm", "pandas", "jinja2", "packaging", "setuptools",
    "huggingface-hub", "safetensors", "filelock", "regex", "requests", "zipp", "pyyaml", "psutil",
})
#: Needs that wheels declare but that the training path never imports, and why.
NOT_IMPORTED = {
    "importlib-metadata": "diffusers imports the standard library's importlib.metadata on Python >= 3.8",
}
#: The node: CPython 3.12 on x86-64 Linux (manylinux tags, newest first).
NODE_PYTHON = "3.12"
NODE_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                  "manylinux1_x86_64")
DEFAULT_PART_MB = 15.0  # the node's files come back in pieces of at most 16 MB
PARTS_FORMAT = "solar-diffusion-parts/1"
PARTS_MANIFEST = "parts.json"
ARCHIVE = "pipeline.tar"


# ------------------------------------------------------------------------------------------
# wheels for the node
# ------------------------------------------------------------------------------------------


def gpu_wheels_command(out, python: str = "python3", wheels=GPU_NODE_WHEELS) -> list[str]:
    """The ``pip download`` command line that fetches ``wheels`` for the node into ``out``:
    no dependencies (each one the node lacks is listed), binary wheels for CPython 3.12 on
    x86-64 Linux, whatever this machine is.

    >>> gpu_wheels_command(".whl")[-3:]
    ['-d', '.whl', 'diffusers==0.42.1']
    """
    platforms = [flag for tag in NODE_PLATFORMS for flag in ("--platform", tag)]
    return [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", NODE_PYTHON,
            "--implementation", "cp", *platforms, "-d", str(out), *wheels]


def wheel_files(folder, wheels=GPU_NODE_WHEELS) -> dict:
    """The wheel file of each of ``wheels`` ("name==version") in ``folder``, or None where absent.

    Raises ValueError where ``folder`` holds another version of one of them beside it: two
    versions of a project stop the whole install on the node.
    """
    from packaging.utils import canonicalize_name, parse_wheel_filename

    found = {}
    present = []
    for path in sorted(Path(folder).glob("*.whl")):
        name, version, *_ = parse_wheel_filename(path.name)
        present.append((canonicalize_name(name), str(version), path))
    for requirement in wheels:
        name, version = requirement.split("==")
        matches = [(v, p) for n, v, p in present if n == canonicalize_name(name)]
        others = [p.name for v, p in matches if v != version]
        if others:
            raise ValueError(f"{folder}: holds {', '.join(others)}, another version than {requirement}: two "
                             f"versions stop the install on the node; remove it")
        found[requirement] = next((p for v, p in matches if v == version), None)
    return found


def download_gpu_wheels(out, wheels=GPU_NODE_WHEELS, run=subprocess.run) -> dict:
    """Fetch ``wheels`` into ``out`` with pip (``gpu_wheels_command``); returns the wheel file of each."""
    import sys

    Path(out).mkdir(parents=True, exist_ok=True)
    wheel_files(out, wheels)  # refuse a folder holding other versions before downloading
    command = gpu_wheels_command(out, sys.executable, wheels)
    if run(command).returncode:
        raise RuntimeError(f"pip could not fetch the wheels (no network, or no such version?): {' '.join(command)}")
    found = wheel_files(out, wheels)
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise RuntimeError(f"{out}: pip saved no wheel of {', '.join(missing)}")
    return found


# ------------------------------------------------------------------------------------------
# the trained pipeline in parts, and back
# ------------------------------------------------------------------------------------------


def export_parts(model_dir, out, part_mb: float = DEFAULT_PART_MB) -> dict:
    """Write a saved pipeline folder as one tar archive cut into parts of at most ``part_mb`` MB
    (``pipeline.tar.000``, ...) and ``parts.json`` (sizes and SHA-256 of each part and of the
    whole); returns that manifest. ``assemble`` undoes it.

    >>> export_parts("no/such/model", "out")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no/such/model: no saved pipeline (model_index.json) to export
    """
    model_dir, out = Path(model_dir), Path(out)
    if not (model_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no saved pipeline (model_index.json) to export")
    part_bytes = int(part_mb * 1e6)
    if part_bytes < 1:
        raise ValueError(f"part size {part_mb} MB: must be positive")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        archive = Path(tmp) / ARCHIVE
        with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
                tar.add(path, arcname=path.relative_to(model_dir).as_posix())
        manifest = {"format": PARTS_FORMAT, "archive": ARCHIVE, "bytes": archive.stat().st_size,
                    "sha256": sha256_file(archive), "parts": []}
        with open(archive, "rb") as source:
            for k, block in enumerate(iter(lambda: source.read(part_bytes), b"")):
                name = f"{ARCHIVE}.{k:03d}"
                atomic_write(out / name, lambda tmp_path, block=block: Path(tmp_path).write_bytes(block))
                manifest["parts"].append({"file": name, "bytes": len(block),
                                          "sha256": hashlib.sha256(block).hexdigest()})
    atomic_write(out / PARTS_MANIFEST, lambda tmp_path: Path(tmp_path).write_text(json.dumps(manifest, indent=1)))
    return manifest


def assemble(parts_dir, out) -> Path:
    """The saved pipeline of ``export_parts``'s parts in ``parts_dir``, written to ``out`` (a new or
    empty folder); each part and the whole are checked against ``parts.json`` first.

    >>> assemble("no/such/parts", "model")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no/such/parts/parts.json: no parts manifest (made by solar-diffusion export-parts)
    """
    parts_dir, out = Path(parts_dir), Path(out)
    path = parts_dir / PARTS_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no parts manifest (made by solar-diffusion export-parts)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != PARTS_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r} is not {PARTS_FORMAT!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not an empty folder: assemble into a new one")
    for part in manifest["parts"]:
        file = parts_dir / part["file"]
        if not file.is_file():
            raise ValueError(f"{file}: missing ({len(manifest['parts'])} parts in {path})")
        if file.stat().st_size != part["bytes"] or sha256_file(file) != part["sha256"]:
            raise ValueError(f"{file}: {file.stat().st_size} bytes whose SHA-256 is not the manifest's "
                             f"({part['bytes']} bytes): a corrupt or cut-short copy; fetch it again")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        archive = tmp / manifest["archive"]
        with open(archive, "wb") as whole:
            for part in manifest["parts"]:
                with open(parts_dir / part["file"], "rb") as piece:
                    shutil.copyfileobj(piece, whole)
        if sha256_file(archive) != manifest["sha256"]:
            raise ValueError(f"{parts_dir}: the parts put together are not the archive of {path}")
        folder = tmp / "pipeline"
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
        if not (folder / "model_index.json").is_file():
            raise ValueError(f"{parts_dir}: the archive holds no saved pipeline (model_index.json)")
        if out.exists():
            out.rmdir()
        os.replace(folder, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
