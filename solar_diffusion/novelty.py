"""The training frames' layouts a model keeps for its novelty guidance: ``solar-diffusion novelty``.

    solar-diffusion novelty --model DIR --dataset DIR [--target 2 --max-push 4 --until-timestep 60 --pool-px 8]

A model trained on a few hundred days redraws their active-region layout; the novelty guidance
(``SolarFlarePipeline``'s ``novelty_target``, see ``novelty_push``) steers each image away from
the nearest training frame's layout while the noise is high. This command writes the layouts of
the dataset's training split (its frames averaged over ``pool_px`` cells, 8-bit), their day
distance (the median layout distance from a frame to the nearest frame more than 3 days away)
and the guidance's defaults into the model's ``model_index.json``; ``train`` does the same for the
models it saves. ``--target 0`` keeps the layouts but turns the guidance off by default.
"""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import numpy as np
import torch

from solar_diffusion.hub import model_index, set_model_index
from solar_diffusion.flare_evaluation import nearest_other_days
from solar_diffusion.pipelines import (NOVELTY_MAX_PUSH, NOVELTY_POOL_PX, NOVELTY_TARGET, NOVELTY_UNTIL_TIMESTEP,
                                       ClipLogNormalization)
from solar_diffusion.splits import LabelledImages, dataset_info, load_split, resize


def training_layouts(images, day_distance: float, pool_px: int = NOVELTY_POOL_PX, target: float = NOVELTY_TARGET,
                     max_push: float = NOVELTY_MAX_PUSH, until_timestep: int = NOVELTY_UNTIL_TIMESTEP) -> dict:
    """The ``novelty`` config of a model from its model-space training images (N, C, H, W): their
    layouts (means over ``pool_px`` cells, 8-bit, each stored as its difference from the one before
    and deflated: a third of the plain codes' size for frames in time order), the RMS layout
    distance between days more than 3 days apart (``day_distance``, measured by the caller) and the
    guidance's defaults.

    >>> images = torch.rand(3, 3, 16, 16) * 2 - 1
    >>> novelty = training_layouts(images, day_distance=0.1, pool_px=8)
    >>> from solar_diffusion.pipelines import layouts_tensor
    >>> layouts = layouts_tensor(novelty)
    >>> novelty["shape"], bool((layouts - torch.nn.functional.avg_pool2d(images, 8)).abs().max() < 0.004)
    ([3, 3, 2, 2], True)
    """
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim != 4 or images.shape[-1] % pool_px or images.shape[-2] % pool_px:
        raise ValueError(f"training layouts need (N, C, H, W) images with sides divisible by {pool_px} px, "
                         f"got {tuple(images.shape)}")
    if not day_distance > 0:
        raise ValueError(f"the day distance of the training layouts must be > 0, got {day_distance}")
    cells = torch.nn.functional.avg_pool2d(images, pool_px)
    codes = ((cells.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    deltas = np.diff(codes, axis=0, prepend=np.zeros_like(codes[:1]))  # uint8: modulo 256; frames in time order
    return {"target": float(target), "day_distance": float(day_distance), "max_push": float(max_push),
            "until_timestep": int(until_timestep), "pool_px": int(pool_px), "shape": list(codes.shape),
            "layouts_delta_zlib_base64": base64.b64encode(zlib.compress(deltas.tobytes(), 9)).decode("ascii")}


class TooFewDays(ValueError):
    """A split whose frames span no two days more than 3 days apart: no day distance to measure."""


def split_layouts(dataset, normalization: ClipLogNormalization, image_size: int, split: str = "train",
                  config_name=None, pool_px: int = NOVELTY_POOL_PX, chunk: int = 512, **defaults) -> dict:
    """The ``novelty`` config of a model from a split's frames (read ``chunk`` at a time, in model
    space at ``image_size``); ``defaults`` are ``training_layouts``'s (target, max_push,
    until_timestep)."""
    unit = dataset_info(dataset)["unit"]
    if unit != normalization.unit:
        raise ValueError(f"{dataset} holds {unit!r} images but the model expects {normalization.unit!r}")
    if image_size % pool_px:
        raise ValueError(f"--pool-px {pool_px} does not divide the model's {image_size} px images")
    ds = load_split(dataset, split, config_name, columns=("image", "t_obs"))
    parts = []
    for start in range(0, len(ds), chunk):
        images = torch.from_numpy(np.asarray(ds[start:start + chunk]["image"], dtype=np.float32))
        parts.append(torch.nn.functional.avg_pool2d(resize(normalization.forward(images), image_size), pool_px))
    cells = torch.cat(parts)
    apart = nearest_other_days(LabelledImages(cells, np.array([""] * len(cells), dtype=object), np.asarray(ds["t_obs"])),
                               np.random.default_rng(0))
    if not len(apart):
        raise TooFewDays(f"the {split} split of {dataset} spans no two frames more than 3 days apart: too few days to "
                         "tell a new day's layout from a copy")
    # the chunks are cells already: encode them as they are (1 px cells) and record the real cell size
    return training_layouts(cells, day_distance=float(np.median(apart)), pool_px=1, **defaults) | {"pool_px": int(pool_px)}


def add_layouts(model_dir, dataset, pool_px: int = NOVELTY_POOL_PX, target: float = NOVELTY_TARGET,
                max_push: float = NOVELTY_MAX_PUSH, until_timestep: int = NOVELTY_UNTIL_TIMESTEP,
                config_name=None) -> dict:
    """Write ``split_layouts`` of ``dataset``'s training split into ``model_dir``'s ``model_index.json``
    (replacing any it held); returns the ``novelty`` config without the layouts."""
    config = model_index(model_dir)
    for name, value in (("--target", target), ("--max-push", max_push)):
        if not (value >= 0 and np.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if not 0 <= until_timestep:
        raise ValueError(f"--until-timestep must be >= 0, got {until_timestep}")
    unet = json.loads((Path(model_dir) / "unet" / "config.json").read_text())
    novelty = split_layouts(dataset, ClipLogNormalization.from_dict(config["normalization"]), unet["sample_size"],
                            config_name=config_name, pool_px=pool_px, target=target, max_push=max_push,
                            until_timestep=until_timestep)
    if novelty["shape"][1] != unet["out_channels"]:
        raise ValueError(f"{dataset} has {novelty['shape'][1]} channels, the model in {model_dir} makes "
                         f"{unet['out_channels']}")
    set_model_index(model_dir, novelty=novelty)
    return {k: v for k, v in novelty.items() if not k.startswith("layouts_")}
