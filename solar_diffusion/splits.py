"""Reading the splits of a dataset made by ``solar-diffusion build-dataset``.

One place for what training, evaluation and the experiments all need: the build record, a split
as numpy columns, and a split as model-space tensors with its label names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from solar_diffusion.pipelines import ClipLogNormalization


def dataset_info(dataset_dir) -> dict:
    """The builder's record (``build_info.json``): config, unit, vocabulary, counts, radius."""
    path = Path(dataset_dir) / "build_info.json"
    if not path.exists():
        raise FileNotFoundError(f"{dataset_dir} has no build_info.json: build it with solar-diffusion build-dataset")
    return json.loads(path.read_text())


def load_split(dataset_dir, split, config_name=None, columns=("image", "flare_class", "peak_flux", "goes_flux_at_obs")):
    """A split of a built dataset as a ``datasets.Dataset`` with numpy ``columns``.

    Reads the folder's own Parquet shards, in memory, every time: no cache that an earlier
    build in a folder of the same name could answer from (``load_dataset(folder)`` caches by
    name). The row count is checked against the build record.
    """
    import datasets
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
    return datasets.Dataset(table).with_format("numpy", columns=list(columns))


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
