"""Training packs: what training needs of a built dataset, compact and self-contained.

``solar-diffusion pack --dataset DIR --out PACK`` writes one Parquet file per split (each frame's
image encoded on its own, the other columns as built) and ``manifest.json``: the build record
(unit, vocabulary, counts, channels, size, median solar radius and time of the training frames),
the frames' disk geometry, the image encoding with its measured error, and a SHA-256 per file.
``solar_diffusion.splits`` reads a pack wherever it reads a dataset folder, with numpy, pyarrow
and Pillow alone, so a pack trains on a node that has no ``datasets``, sunpy or astropy.

Images in DN/s (float32) are stored losslessly (each frame's bytes split by significance, then
zstd). Browse brightness (uint8) is stored losslessly as PNG where the pack fits ``max_mb``, else
as JPEG with a flat quantisation table (the same step at every spatial frequency: for its size,
the least mean squared error, where JPEG's usual tables spend it on what the eye misses), the
finest step that fits. Three channels go into one 4:4:4 colour image, whose colour transform
shares what the channels have in common; other channel counts are stacked into one grey image.

>>> encoding = {"codec": "jpeg", "step": 4, "layout": "stack"}
>>> frame = np.full((1, 16, 16), 100, np.uint8)
>>> int(decode_frame(encode_frame(frame, encoding), encoding, frame.shape, frame.dtype).max())
100
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from solar_diffusion.files import atomic_write, sha256_file

#: The format this module writes and reads (``manifest.json``'s ``format``).
PACK_FORMAT = "solar-diffusion-pack/1"
MANIFEST = "manifest.json"
#: JPEG quantisation steps tried for browse images, finest first, when PNG does not fit.
JPEG_STEPS = (2, 3, 4, 5, 6, 7, 8, 10, 12)
#: Parts of the build record left out of a pack: per-frame lists about the source files.
PER_FRAME_RECORDS = ("rejected", "frame_notes")
DEFAULT_SPLITS = ("train", "validation")
DEFAULT_MAX_MB = 25.0


def is_pack(path) -> bool:
    """Whether ``path`` is a training pack folder (it holds ``manifest.json``).

    >>> is_pack("no/such/folder")
    False
    """
    return (Path(path) / MANIFEST).is_file()


def read_manifest(pack_dir) -> dict:
    """A pack's manifest, checked to be one this module reads."""
    path = Path(pack_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable pack manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path}: format {found!r} is not {PACK_FORMAT!r}: not a solar-diffusion training pack")
    return manifest


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


class ShapeMismatch(ValueError):
    """A frame decodes to another shape than the manifest's channels and size."""


def decode_frame(data: bytes, encoding: dict, shape, dtype) -> np.ndarray:
    """The (C, H, W) image of ``encode_frame``'s bytes; raises ValueError if they do not decode to ``shape``."""
    if encoding["codec"] == "float32-split":
        planes = np.frombuffer(data, np.uint8)
        if planes.size != 4 * math.prod(shape):
            raise ShapeMismatch(f"{planes.size} bytes, not those of a float32 image of {'x'.join(map(str, shape))}")
        return planes.reshape(4, -1).T.copy().view("<f4").reshape(shape).astype(dtype, copy=False)
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image)
    if encoding["layout"] == "rgb":
        pixels = np.moveaxis(pixels, -1, 0) if pixels.ndim == 3 else pixels
    elif pixels.ndim == 2 and pixels.shape == (shape[0] * shape[1], shape[2]):
        pixels = pixels.reshape(shape)
    if pixels.shape != tuple(shape):
        raise ShapeMismatch(f"image is {'x'.join(map(str, pixels.shape))} px, the manifest's channels and size make "
                            f"{'x'.join(map(str, shape))}")
    return pixels.astype(dtype, copy=False)


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
    from solar_diffusion.splits import build_geometry, dataset_info, image_array, split_table

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
            error = _error(images, _decode_all(_read_blobs(path), encoding, images.shape[1:], images.dtype, path))
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
        return path, encoding, _error(images, _decode_all(_read_blobs(path), encoding, images.shape[1:],
                                                          images.dtype, path))
    raise AssertionError("no encoding to try")


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------


def _read_blobs(path: Path) -> list:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["image"]).column("image").to_pylist()


def _decode_all(blobs, encoding, shape, dtype, path: Path, t_obs=None) -> np.ndarray:
    images = np.empty((len(blobs), *shape), dtype)
    for i, blob in enumerate(blobs):
        try:
            images[i] = decode_frame(blob, encoding, shape, dtype)
        except (OSError, ValueError, SyntaxError) as err:  # what Pillow raises for bad bytes; ours for a bad shape
            when = f" ({t_obs[i]})" if t_obs is not None else ""
            what = "" if isinstance(err, ShapeMismatch) else "image does not decode: "
            raise ValueError(f"{path} row {i}{when}: {what}{err}") from None
    return images


@dataclass
class ClassNames:
    """The label names of the ``flare_class`` column (as ``datasets.ClassLabel.names``)."""

    names: list


class PackedSplit:
    """A split of a training pack, decoded into memory.

    It answers what the scripts ask of a ``datasets.Dataset``: ``len``, ``split[i]`` (a row of
    numpy values), ``split["column"]`` (a numpy array; ``"image"`` is (N, C, H, W) in the stored
    dtype, uint8 for browse images) and ``split.features["flare_class"].names``; and
    ``__getitems__``, with which a DataLoader fetches a batch in one call.
    """

    def __init__(self, columns: dict, label_names):
        self.columns = columns
        self.features = {"flare_class": ClassNames(list(label_names))}

    @property
    def column_names(self) -> list:
        return list(self.columns)

    def __len__(self):
        return len(next(iter(self.columns.values())))

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.columns[key]
        return {name: values[key] for name, values in self.columns.items()}

    def __getitems__(self, indices):
        return [self[int(i)] for i in indices]


def load_pack_split(pack_dir, split, config_name=None, columns=("image", "flare_class")) -> PackedSplit:
    """A split of a pack with its images decoded, checked against the manifest (hash, rows, shape)."""
    import pyarrow.parquet as pq

    pack_dir = Path(pack_dir)
    manifest = read_manifest(pack_dir)
    if config_name and config_name != manifest["config_name"]:
        raise ValueError(f"{pack_dir}: holds config {manifest['config_name']!r}, not {config_name!r}")
    if split not in manifest["splits"]:
        left = manifest.get("left_out", {}).get(split)
        raise ValueError(f"{pack_dir}: no split {split!r} in this pack (it has: {', '.join(manifest['splits'])})"
                         + (f"; left out when packed: {left}" if left else "; pack it with --splits"))
    entry = manifest["splits"][split]
    path = pack_dir / entry["file"]
    if not path.is_file():
        raise ValueError(f"{path}: missing from the pack")
    expected = manifest["files"][entry["file"]]["sha256"]
    if (found := sha256_file(path)) != expected:
        raise ValueError(f"{path}: SHA-256 {found[:12]}... is not the manifest's {expected[:12]}...: "
                         f"the file is corrupt or from another pack; pack again")
    table = pq.read_table(path)
    if table.num_rows != entry["rows"]:
        raise ValueError(f"{path}: {table.num_rows} rows but the manifest says {entry['rows']}")
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)}")
    info = manifest["build_info"]
    from solar_diffusion.splits import image_dtype

    values = {}
    for name in columns:
        if name == "image":
            shape = (len(info["config"]["channels"]), info["config"]["size"], info["config"]["size"])
            t_obs = table.column("t_obs").to_numpy() if "t_obs" in table.column_names else None
            values[name] = _decode_all(table.column("image").to_pylist(), manifest["encoding"], shape,
                                       image_dtype(info["unit"]), path, t_obs)
        else:
            values[name] = table.column(name).to_numpy(zero_copy_only=False)
    return PackedSplit(values, info["vocabulary"])
