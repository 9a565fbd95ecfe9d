"""Reading the splits of a dataset made by ``solar-diffusion build-dataset``, or of its training
pack (``solar-diffusion pack``, which ``solar_diffusion.pack`` writes).

One place for what training, evaluation and the experiments all need: the build record, a split
as numpy columns, a split as model-space tensors with its label names, a frame's flares, and the
disk geometry of the frames. A pack folder works wherever a dataset folder does, and reading one
needs only numpy, pyarrow and Pillow (no ``datasets``, no sunpy), as on an offline GPU node.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from solar_diffusion.files import sha256_file
from solar_diffusion.pipelines import ClipLogNormalization, disk_center_px, flare_class_input, rescale_px

#: The columns training reads (``load_split``'s default).
TRAINING_COLUMNS = ("image", "flare_class", "flare_log10_peak_flux_goes_r", "goes_flux_at_obs")
#: The training-pack format read here and written by ``solar_diffusion.pack`` (``manifest.json``'s ``format``).
PACK_FORMAT = "solar-diffusion-pack/1"
MANIFEST = "manifest.json"


#: A Hub repo id, "owner/name".
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_dataset(value, download=None) -> str:
    """A dataset given as a local folder or a Hub dataset id ("owner/name"), as a local folder:
    a folder that exists is itself; an id is fetched with ``download`` (default
    ``huggingface_hub.snapshot_download``, which answers from the cache when offline).

    >>> resolve_dataset("no/such-folder-or-repo", download=lambda repo_id, repo_type: 1 / 0)
    Traceback (most recent call last):
    ...
    FileNotFoundError: no/such-folder-or-repo: no such folder, and the Hub dataset of that id could not be fetched (ZeroDivisionError: division by zero)
    """
    if Path(value).exists():
        return str(value)
    if not _REPO_ID.match(str(value)):
        raise FileNotFoundError(f"{value}: no such dataset folder")
    if download is None:
        from huggingface_hub import snapshot_download as download
    try:
        return str(download(repo_id=str(value), repo_type="dataset"))
    except Exception as error:  # offline without a cached copy, an unknown repo, no access
        reason = (str(error).strip().splitlines() or [""])[0]
        raise FileNotFoundError(f"{value}: no such folder, and the Hub dataset of that id could not be fetched "
                                f"({type(error).__name__}: {reason})") from None


def hub_dataset_id(folder) -> str | None:
    """The Hub id of a dataset folder that ``resolve_dataset`` fetched (a snapshot in the Hub
    cache, ``.../datasets--owner--name/snapshots/<revision>``), else None (a local build).

    >>> hub_dataset_id("/cache/hub/datasets--sun--aia-2012/snapshots/0a1b"), hub_dataset_id("data/aia")
    ('sun/aia-2012', None)
    """
    parts = Path(folder).parts
    for i, part in enumerate(parts[:-2]):
        if part.startswith("datasets--") and parts[i + 1] == "snapshots":
            return part[len("datasets--"):].replace("--", "/", 1)
    return None


def dataset_argument(value) -> str:
    """``--dataset`` of every command: ``resolve_dataset``, its error as argparse's."""
    import argparse

    try:
        return resolve_dataset(value)
    except FileNotFoundError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def split_sizes(out, name: str, frames: dict) -> dict:
    """A dataset card's ``dataset_info``: the frames (``frames``: split -> count) and Parquet bytes
    of each split of the build in ``out`` (config ``name``). The datasets cache keys a local folder
    by its card, so these keep two builds in folders of the same name apart for ``load_dataset``."""
    sizes = {s: sum(p.stat().st_size for p in (Path(out) / name).glob(f"{s}-*.parquet")) for s in frames}
    return {"config_name": name, "dataset_size": sum(sizes.values()), "download_size": sum(sizes.values()),
            "splits": [{"name": s, "num_examples": int(n), "num_bytes": sizes[s]} for s, n in frames.items()]}


def dataset_info(dataset_dir) -> dict:
    """The builder's record (``build_info.json``): config, unit, vocabulary, counts, radius.

    For a training pack, the record it carries (without the per-frame lists of rejected frames).
    """
    if is_pack(dataset_dir):
        return read_manifest(dataset_dir)["build_info"]
    path = Path(dataset_dir) / "build_info.json"
    if not path.exists():
        raise FileNotFoundError(f"{dataset_dir} has no build_info.json: build it with solar-diffusion build-dataset")
    return json.loads(path.read_text())


def image_dtype(unit: str) -> np.dtype:
    """How a build stores its images: uint8 browse brightness, else float32 (DN/s).

    >>> image_dtype("browse"), image_dtype("DN/s")
    (dtype('uint8'), dtype('float32'))
    """
    return np.dtype(np.uint8 if unit == "browse" else np.float32)


def split_table(dataset_dir, split, config_name=None):
    """A split of a built dataset folder as one ``pyarrow.Table``: its own Parquet shards, in
    memory, checked against the build record's row count (pyarrow only, no ``datasets``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    info = dataset_info(dataset_dir)
    name = config_name or info["config"].get("config_name", "default")
    files = sorted(p for p in (Path(dataset_dir) / name).glob(f"{split}-*-of-*.parquet") if not p.name.startswith("."))
    if not files:
        raise ValueError(f"{dataset_dir}: no split {split!r} in config {name!r} (it has: "
                         f"{', '.join(s for s, c in info['counts'].items() if sum(c.values())) or 'none'})")
    table = pa.concat_tables([pq.read_table(f) for f in files])
    expected = sum(info["counts"].get(split, {}).values())
    if table.num_rows != expected:
        raise ValueError(f"{dataset_dir}: split {split!r} has {table.num_rows} rows but its build record says "
                         f"{expected}: the folder holds shards of another build; rebuild it into an empty folder")
    return table


def image_array(table, info: dict) -> np.ndarray:
    """The ``image`` column of a built split's table as one (N, C, H, W) array of its stored dtype.

    >>> import pyarrow as pa
    >>> t = pa.table({"image": [[[[1, 2], [3, 4]]]]})
    >>> image_array(t, {"unit": "browse", "config": {"channels": ["171"], "size": 2}}).tolist()
    [[[[1, 2], [3, 4]]]]
    """
    column = table.column("image").combine_chunks()
    values = getattr(column, "storage", column)  # datasets' Array3D extension type, where registered
    for _ in range(3):
        values = values.flatten()
    shape = (len(column), len(info["config"]["channels"]), info["config"]["size"], info["config"]["size"])
    return values.to_numpy(zero_copy_only=False).astype(image_dtype(info["unit"]), copy=False).reshape(shape)


def load_split(dataset_dir, split, config_name=None, columns=TRAINING_COLUMNS):
    """A split with numpy ``columns``: a ``datasets.Dataset`` for a dataset folder, a
    ``PackedSplit`` (its images decoded into memory) for a training pack.

    Both answer ``len``, ``split[i]`` (a row), ``split["column"]`` and
    ``split.features["flare_class"].names``. A dataset folder's own Parquet shards are read, in
    memory, every time: no cache that an earlier build in a folder of the same name could answer
    from (``load_dataset(folder)`` caches by name). The row count is checked against the build
    record; a pack's files against their hashes.
    """
    check_schema(dataset_dir, columns)
    if is_pack(dataset_dir):
        return load_pack_split(dataset_dir, split, config_name, columns)
    import datasets

    return datasets.Dataset(split_table(dataset_dir, split, config_name)).with_format("numpy", columns=list(columns))


#: The dataset schema version that added a column (builds without ``schema_version`` are 1).
COLUMN_SCHEMA = {"flares": 2, "flare_log10_peak_flux_goes_r": 2}


def check_schema(dataset_dir, columns):
    """Refuse, saying to rebuild, a request for columns that the dataset's schema predates."""
    version = dataset_info(dataset_dir).get("schema_version", 1)
    missing = [c for c in columns if COLUMN_SCHEMA.get(c, 1) > version]
    if missing:
        raise ValueError(f"{dataset_dir} was built with dataset schema {version}, which has no {', '.join(missing)} "
                         f"(added in schema {max(COLUMN_SCHEMA[c] for c in missing)}): rebuild it with "
                         "solar-diffusion build-dataset (and pack it again)")


def dataset_geometry(dataset_dir, image_size: int | None = None) -> dict:
    """The disk geometry of a dataset's frames (a model's ``geometry`` config) at ``image_size``
    (default: the dataset's own size): the median solar radius of the training frames, the disk
    at the image centre, the plate scale at the training frames' median time.

    A pack carries the geometry at its own size (computed with sunpy when packing); a dataset
    folder's is computed from its build record. Either is scaled to ``image_size`` the same way.
    """
    if is_pack(dataset_dir):
        geometry = read_manifest(dataset_dir)["geometry"]
    else:
        geometry = build_geometry(dataset_info(dataset_dir))
    return geometry_at_size(geometry, image_size or geometry["image_size"])


def build_geometry(info: dict) -> dict:
    """The disk geometry of a build record's frames at its own size (needs sunpy)."""
    # here, not at the top: sunpy and astropy take about 2.5 s to import, and a pack is read without them
    from solar_diffusion.maps import disk_geometry

    return disk_geometry(info["config"]["size"], info["rsun_px_median"],
                         date_obs=info["t_obs_median_train"].split(".")[0].replace(" ", "T"),
                         wavelengths_angstrom=[float(c) for c in info["config"]["channels"]])


def geometry_at_size(geometry: dict, image_size: int) -> dict:
    """A geometry scaled to ``image_size`` px: same field of view, disk centre and plate scale zoomed.

    >>> g = {"image_size": 64, "fov_rsun": 2.3, "disk_center_px": [31.5, 31.5], "plate_scale_arcsec": 34.0}
    >>> g2 = geometry_at_size(g, 128)
    >>> g2["disk_center_px"], g2["plate_scale_arcsec"], g2["fov_rsun"]
    ([63.5, 63.5], 17.0, 2.3)
    """
    zoom = image_size / geometry["image_size"]
    cx, cy = disk_center_px(geometry, image_size)
    return dict(geometry, image_size=int(image_size), disk_center_px=[float(cx), float(cy)],
                plate_scale_arcsec=float(geometry["plate_scale_arcsec"] / zoom))


def resize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Antialiased bilinear resize of (N, C, H, W) to ``image_size`` x ``image_size`` (no-op at that size)."""
    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images
    return F.interpolate(images, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)


def downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """Whole frames (N, C, H, H) in their data unit taken to ``size`` px as the builder makes
    frames of that size: each output pixel the mean of the pixels of its footprint (what the
    builder's ``crop_and_resize`` does on its much finer source grid). uint8 (browse) frames come
    back rounded and clipped to 0..255 as the builder stores them, float frames (DN/s) as float32.

    On the real frames of 2012-03-07 built at 256 and 64 px, the 256 px frames taken to 64 px
    differ from the 64 px build by 0.8 (rms, browse 0..255; max 8); ``crop_and_resize``'s blur and
    sampling applied to the 256 px frames by 3.7 (max 34): on a coarse grid its box, of an even
    width, is half an input pixel off centre, and it blurs what the build has already blurred.

    >>> frames = torch.tensor([[[[0, 10, 20, 31]] * 4]], dtype=torch.uint8)
    >>> small = downsample(frames, 2)
    >>> small.dtype, small[0, 0].tolist()
    (torch.uint8, [[5, 26], [5, 26]])
    """
    factor = images.shape[-1] // size
    if factor * size != images.shape[-1] or images.shape[-2] != images.shape[-1]:
        raise ValueError(f"frames of {images.shape[-2]} x {images.shape[-1]} px are not square, or not a whole "
                         f"multiple of {size} px")
    x = F.avg_pool2d(images.float(), factor) if factor > 1 else images.float()
    return x.round().clamp(0, 255).to(torch.uint8) if images.dtype == torch.uint8 else x


@dataclass
class LabelledImages:
    """Model-space images (N, C, H, W) in [-1, 1] and, per image, its label name and time; and
    optionally numbers a classifier reads beside each image (``covariates``, (N, K) float32)."""

    images: torch.Tensor
    labels: np.ndarray
    t_obs: np.ndarray
    covariates: np.ndarray | None = None

    def __len__(self):
        return len(self.labels)

    def where(self, mask) -> "LabelledImages":
        mask = np.asarray(mask)
        return LabelledImages(self.images[torch.from_numpy(mask)], self.labels[mask], self.t_obs[mask],
                              None if self.covariates is None else self.covariates[mask])

    def counts(self) -> dict:
        names, counts = np.unique(self.labels, return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts)}


def model_space_split(dataset_dir, split, normalization: ClipLogNormalization, image_size: int,
                      config_name=None) -> LabelledImages:
    """A split normalised with ``normalization`` and resized to ``image_size``, with its label names.

    The normalisation's unit must be the dataset's: a model trained on browse brightness cannot
    judge DN/s images.
    """
    unit = dataset_info(dataset_dir)["unit"]
    if unit != normalization.unit:
        raise ValueError(f"{dataset_dir} holds {unit!r} images but the model expects {normalization.unit!r}")
    ds = load_split(dataset_dir, split, config_name, columns=("image", "flare_class", "t_obs"))
    names = ds.features["flare_class"].names
    images = normalization.forward(torch.from_numpy(np.asarray(ds["image"], dtype=np.float32)))
    labels = np.array([names[i] for i in ds["flare_class"]], dtype=object)
    return LabelledImages(resize(images, image_size), labels, np.asarray(ds["t_obs"]))


def frame_flare_inputs(row, dataset_size: int, image_size: int) -> tuple[float, list, list]:
    """A frame's inputs to a flare model, from its ``flares`` column (dataset schema 2): its class
    input (``flare_class_input`` of its flares in progress), and the pixel positions (at ``image_size``) and log10 peak fluxes of its flares with a
    usable position (``on_disk``).

    >>> flares = {"log10_peak_flux_goes_r": [-5.0, -4.0], "on_disk": [True, False], "x_px": [10.0, 0.0],
    ...           "y_px": [20.0, 0.0]}
    >>> class_input, positions, fluxes = frame_flare_inputs({"flares": flares}, 128, 64)
    >>> class_input == flare_class_input([-4.0]), len(positions), [float(f) for f in fluxes]
    (True, 1, [-5.0])
    """
    flares = row["flares"]
    fluxes = np.asarray(flares["log10_peak_flux_goes_r"], dtype=np.float64)
    if not len(fluxes):
        return flare_class_input(fluxes), [], []
    keep = np.asarray(flares["on_disk"], dtype=bool)
    xs = rescale_px(np.asarray(flares["x_px"], dtype=np.float64)[keep], dataset_size, image_size)
    ys = rescale_px(np.asarray(flares["y_px"], dtype=np.float64)[keep], dataset_size, image_size)
    return flare_class_input(fluxes), list(zip(xs, ys)), list(fluxes[keep])


# ------------------------------------------------------------------------------------------
# a training pack
# ------------------------------------------------------------------------------------------


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


class ShapeMismatch(ValueError):
    """A frame decodes to another shape than the manifest's channels and size."""


def decode_frame(data: bytes, encoding: dict, shape, dtype) -> np.ndarray:
    """The (C, H, W) image of ``pack.encode_frame``'s bytes; raises ValueError if they do not decode to ``shape``."""
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


def decode_frames(blobs, encoding, shape, dtype, path: Path, t_obs=None) -> np.ndarray:
    """``decode_frame`` of each of a pack file's ``blobs``, as one array; an error names the file,
    the row and (given ``t_obs``) the frame's time."""
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
    values = {}
    for name in columns:
        if name == "image":
            shape = (len(info["config"]["channels"]), info["config"]["size"], info["config"]["size"])
            t_obs = table.column("t_obs").to_numpy() if "t_obs" in table.column_names else None
            values[name] = decode_frames(table.column("image").to_pylist(), manifest["encoding"], shape,
                                         image_dtype(info["unit"]), path, t_obs)
        else:
            values[name] = table.column(name).to_numpy(zero_copy_only=False)
    return PackedSplit(values, info["vocabulary"])
