"""Training packs: what training needs of a built dataset, compact and self-contained.

``solar-diffusion pack --dataset DIR --out PACK`` writes one Parquet file per split (each frame's
image encoded on its own, the other columns as built) and ``manifest.json``: the build record
(unit, vocabulary, counts, channels, size, median solar radius and time of the training frames),
the frames' disk geometry, the image encoding with its measured error, and a SHA-256 per file.
``solar_diffusion.splits`` reads a pack (its ``decode_frame`` undoes ``encode_frame``) wherever
it reads a dataset folder, with numpy, pyarrow and Pillow alone, so a pack trains on a node that
has no ``datasets``, sunpy or astropy.

Images in DN/s (float32) are stored losslessly (each frame's bytes split by significance, then
zstd). Browse brightness (uint8) is stored losslessly as PNG where the pack fits ``max_mb``, else
as JPEG with a flat quantisation table (the same step at every spatial frequency: for its size,
the least mean squared error, where JPEG's usual tables spend it on what the eye misses), the
finest step that fits. Three channels go into one 4:4:4 colour image, whose colour transform
shares what the channels have in common; other channel counts are stacked into one grey image.

>>> from solar_diffusion.splits import decode_frame
>>> encoding = {"codec": "jpeg", "step": 4, "layout": "stack"}
>>> frame = np.full((1, 16, 16), 100, np.uint8)
>>> int(decode_frame(encode_frame(frame, encoding), encoding, frame.shape, frame.dtype).max())
100
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from solar_diffusion.files import atomic_write, sha256_file
from solar_diffusion.splits import (
    MANIFEST,
    PACK_FORMAT,
    build_geometry,
    dataset_info,
    decode_frames,
    image_array,
    is_pack,
    split_table,
)

#: JPEG quantisation steps tried for browse images, finest first, when PNG does not fit.
JPEG_STEPS = (2, 3, 4, 5, 6, 7, 8, 10, 12)
#: Parts of the build record left out of a pack: per-frame lists about the source files.
PER_FRAME_RECORDS = ("rejected", "frame_notes")
DEFAULT_SPLITS = ("train", "validation")
DEFAULT_MAX_MB = 25.0


# ------------------------------------------------------------------------------------------
# one frame's image
# ------------------------------------------------------------------------------------------


def encode_frame(image: np.ndarray, encoding: dict) -> bytes:
    """One (C, H, W) image as bytes in ``encoding`` (``codec`` png, jpeg or float32-split)."""
    if encoding["codec"] == "float32-split":
        return np.ascontiguousarray(image, dtype="<f4").view(np.uint8).reshape(-1, 4).T.tobytes()
    from PIL import Image

    plane = np.moveaxis(image, 0, -1) if encoding["layout"] == "rgb" else image.reshape(-1, image.shape[-1])
    buffer = io.BytesIO()
    if encoding["codec"] == "png":
        Image.fromarray(np.ascontiguousarray(plane)).save(buffer, format="PNG")
    else:
        tables = [[encoding["step"]] * 64] * (2 if encoding["layout"] == "rgb" else 1)
        Image.fromarray(np.ascontiguousarray(plane)).save(buffer, format="JPEG", qtables=tables, subsampling=0,
                                                          optimize=True)
    return buffer.getvalue()


def _layout(n_channels: int) -> str:
    return "rgb" if n_channels == 3 else "stack"


def _candidates(unit: str, n_channels: int, step: int | None, max_mb: float | None) -> list[dict]:
    """Encodings to try, best first."""
    if unit != "browse":
        if step is not None:
            raise ValueError(f"step {step}: {unit} images are packed losslessly; a step applies to browse images")
        return [{"codec": "float32-split"}]
    layout = _layout(n_channels)
    png, jpegs = {"codec": "png", "layout": layout}, [{"codec": "jpeg", "step": s, "layout": layout} for s in JPEG_STEPS]
    if step is not None:
        if not 0 <= step <= 255:
            raise ValueError(f"step {step}: a JPEG quantisation step is 1 to 255 (0 for lossless PNG)")
        return [png if step == 0 else {"codec": "jpeg", "step": int(step), "layout": layout}]
    return [png] if not max_mb else [png, *jpegs]


def describe(encoding: dict) -> str:
    """Words for an encoding.

    >>> describe({"codec": "jpeg", "step": 6, "layout": "rgb"})
    'JPEG, flat quantisation step 6, 3 channels as one 4:4:4 colour image'
    """
    words = {"png": "PNG (lossless)", "float32-split": "float32, bytes split by significance, zstd (lossless)",
             "jpeg": f"JPEG, flat quantisation step {encoding.get('step')}"}[encoding["codec"]]
    if encoding.get("layout") == "rgb":
        words += ", 3 channels as one 4:4:4 colour image"
    elif encoding.get("layout") == "stack":
        words += ", channels stacked in one grey image"
    return words


def _error(images: np.ndarray, decoded: np.ndarray) -> dict:
    diff = decoded.astype(np.float64) - images.astype(np.float64)
    return {"rmse": float(np.sqrt(np.mean(diff ** 2))), "mean_abs": float(np.mean(np.abs(diff))),
            "max_abs": float(np.max(np.abs(diff)))}


# ------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------


def _encoded_table(table, images: np.ndarray, encoding: dict):
    import pyarrow as pa

    blobs = pa.array([encode_frame(image, encoding) for image in images], type=pa.binary())
    return table.drop_columns(["image"]).append_column("image", blobs).replace_schema_metadata(None)


def _write_table(table, path: Path, encoding: dict) -> Path:
    import pyarrow.parquet as pq

    image_codec = "zstd" if encoding["codec"] == "float32-split" else "none"  # PNG and JPEG are compressed already
    codecs = {name: (image_codec if name == "image" else "zstd") for name in table.column_names}
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression=codecs, compression_level=None))


def _prepare_folder(out: Path):
    """Make ``out`` ready for a pack: a new or empty folder, or an earlier pack (its manifest removed
    first, so that an interrupted pack is never taken for a finished one)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not is_pack(out):
        raise ValueError(f"{out}: not empty and holds no pack ({MANIFEST}): choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)


def write_pack(dataset_dir, out, splits=DEFAULT_SPLITS, max_mb: float | None = DEFAULT_MAX_MB, step: int | None = None,
               config_name: str | None = None, log=print) -> dict:
    """Pack ``splits`` of a built dataset into ``out``; returns the manifest.

    The first split sets the encoding (browse: PNG if the pack fits ``max_mb`` MB, else the finest
    JPEG step that fits, or ``step`` if given: 0 for PNG); each further split is added with the
    same encoding while the pack still fits, and named in ``left_out`` otherwise. ``max_mb=None``
    or 0: no size limit (lossless, every split). Files are written atomically, the manifest last.

    >>> write_pack("no/such/dataset", "pack")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no/such/dataset has no build_info.json: build it with solar-diffusion build-dataset
    """
    dataset_dir, out = Path(dataset_dir), Path(out)
    info = dataset_info(dataset_dir)
    if is_pack(dataset_dir):
        raise ValueError(f"{dataset_dir} is a pack already: pack the dataset folder it was made from")
    splits = list(dict.fromkeys(splits))
    if not splits:
        raise ValueError("no splits to pack")
    name = config_name or info["config"].get("config_name", "default")
    build_info = {k: v for k, v in info.items() if k not in PER_FRAME_RECORDS}
    geometry = build_geometry(info)  # needs sunpy: computed here, carried to where training runs
    manifest_bytes = len(json.dumps([build_info, geometry], indent=1, default=str)) + 1024 * (2 + len(splits))
    budget = max_mb * 1e6 - manifest_bytes if max_mb else None  # what the Parquet files may take
    _prepare_folder(out)

    manifest = {"format": PACK_FORMAT, "config_name": name, "build_info": build_info, "geometry": geometry,
                "source": {"dataset": str(dataset_dir.resolve()),
                           "build_info_sha256": sha256_file(dataset_dir / "build_info.json")},
                "splits": {}, "left_out": {}, "files": {}}
    encoding, total = None, 0
    for split in splits:
        if encoding is not None and not sum(info["counts"].get(split, {}).values()):
            manifest["left_out"][split] = "not in the dataset"
            continue
        table = split_table(dataset_dir, split, name)
        images = image_array(table, info)
        if encoding is None:  # the first split chooses the encoding
            candidates = _candidates(info["unit"], images.shape[1], step, max_mb)
            path, encoding, error = _encode_first(table, images, candidates, budget, out / f"{split}.parquet", log)
        else:
            path = _write_table(_encoded_table(table, images, encoding), out / f"{split}.parquet", encoding)
            if budget and total + path.stat().st_size > budget:
                size_mb = (total + path.stat().st_size) / 1e6
                path.unlink()
                manifest["left_out"][split] = f"the pack would be {size_mb:.1f} MB, over {max_mb:g} MB"
                log(f"left out split {split!r}: {manifest['left_out'][split]}")
                continue
            error = _error(images, decode_frames(_read_blobs(path), encoding, images.shape[1:], images.dtype, path))
        total += path.stat().st_size
        ids, n = np.unique(table.column("flare_class").to_numpy(), return_counts=True)
        counts = {info["vocabulary"][i]: int(c) for i, c in zip(ids, n)}
        manifest["splits"][split] = {"file": path.name, "rows": len(images), "counts": counts, "error": error}
        manifest["files"][path.name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        log(f"{split}: {len(images)} frames, {path.stat().st_size / 1e6:.1f} MB, rms error {error['rmse']:.3g}")
    manifest["encoding"] = encoding
    for stale in out.glob("*.parquet"):  # files of an earlier pack in this folder
        if stale.name not in manifest["files"]:
            stale.unlink()
    atomic_write(out / MANIFEST, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1, default=str)))
    return manifest


def _encode_first(table, images, candidates, budget, path: Path, log):
    """Write the first split in the first of ``candidates`` that fits ``budget`` (estimated on a
    sample of frames, then checked on the written file); returns (path, encoding, error)."""
    sample = images[:: max(1, len(images) // 200)]
    for k, encoding in enumerate(candidates):
        last = k == len(candidates) - 1
        if budget and not last:
            estimate = sum(len(encode_frame(f, encoding)) for f in sample) * len(images) / len(sample)
            if estimate > 0.98 * budget:
                continue
        _write_table(_encoded_table(table, images, encoding), path, encoding)
        size = path.stat().st_size
        if budget and size > budget:
            if not last:
                continue
            if len(candidates) > 1:  # even the coarsest encoding tried does not fit
                path.unlink()
                raise ValueError(f"split {path.stem!r} takes {size / 1e6:.1f} MB even as {describe(encoding)}, "
                                 f"over the {budget / 1e6:.2f} MB it may have: raise --max-mb")
            log(f"warning: split {path.stem!r} takes {size / 1e6:.1f} MB, over the {budget / 1e6:.2f} MB it may have")
        log(f"encoding: {describe(encoding)}")
        return path, encoding, _error(images, decode_frames(_read_blobs(path), encoding, images.shape[1:],
                                                            images.dtype, path))
    raise AssertionError("no encoding to try")


def _read_blobs(path: Path) -> list:
    """The encoded images of a written pack file (to measure the encoding's error)."""
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["image"]).column("image").to_pylist()
