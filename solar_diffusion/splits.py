"""Reading the splits of a dataset made by ``solar-diffusion build-dataset``, or of its training
pack (``solar-diffusion pack``).

One place for what training, evaluation and the experiments all need: the build record, a split
as numpy columns, a split as model-space tensors with its label names, and the disk geometry of
the frames. A pack folder works wherever a dataset folder does, and reading one needs only numpy,
pyarrow and Pillow (no ``datasets``, no sunpy), as on an offline GPU node.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from solar_diffusion import pack
from solar_diffusion.pipelines import ClipLogNormalization, disk_center_px

#: The columns training reads (``load_split``'s default).
TRAINING_COLUMNS = ("image", "flare_class", "peak_flux", "goes_flux_at_obs")


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


def dataset_info(dataset_dir) -> dict:
    """The builder's record (``build_info.json``): config, unit, vocabulary, counts, radius.

    For a training pack, the record it carries (without the per-frame lists of rejected frames).
    """
    if pack.is_pack(dataset_dir):
        return pack.read_manifest(dataset_dir)["build_info"]
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
    ``pack.PackedSplit`` (its images decoded into memory) for a training pack.

    Both answer ``len``, ``split[i]`` (a row), ``split["column"]`` and
    ``split.features["flare_class"].names``. A dataset folder's own Parquet shards are read, in
    memory, every time: no cache that an earlier build in a folder of the same name could answer
    from (``load_dataset(folder)`` caches by name). The row count is checked against the build
    record; a pack's files against their hashes.
    """
    check_schema(dataset_dir, columns)
    if pack.is_pack(dataset_dir):
        return pack.load_pack_split(dataset_dir, split, config_name, columns)
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
    if pack.is_pack(dataset_dir):
        geometry = pack.read_manifest(dataset_dir)["geometry"]
    else:
        geometry = build_geometry(dataset_info(dataset_dir))
    return geometry_at_size(geometry, image_size or geometry["image_size"])


def build_geometry(info: dict) -> dict:
    """The disk geometry of a build record's frames at its own size (needs sunpy)."""
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


@dataclass
class LabelledImages:
    """Model-space images (N, C, H, W) in [-1, 1] and, per image, its label name and time."""

    images: torch.Tensor
    labels: np.ndarray
    t_obs: np.ndarray

    def __len__(self):
        return len(self.labels)

    def where(self, mask) -> "LabelledImages":
        mask = np.asarray(mask)
        return LabelledImages(self.images[torch.from_numpy(mask)], self.labels[mask], self.t_obs[mask])

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
