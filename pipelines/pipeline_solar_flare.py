# Copyright 2026 The solar-diffusion developers. MIT licence.
"""Conditional DDPM for SDO/AIA full-disk images of chosen GOES flares: ``SolarFlarePipeline``.

This file is the ground floor of ``solar_diffusion`` and stands alone: it imports only the
standard library, numpy, torch and diffusers, so it is also uploaded as the Hub repository's
``pipeline.py`` for ``DiffusionPipeline.from_pretrained(repo, custom_pipeline=repo,
trust_remote_code=True)``. It holds what generation and loading need, nothing more:

* the GOES flare scale (``parse_flare_class``, ``format_flare_class``, ``flare_letter``,
  ``requested_flux``) and the two flux scales (GOES 1-15 era numbers carry the 0.7 SWPC
  scaling, GOES-R science data do not);
* the conditioning: class ids (``QUIET_LABEL``, ``LABEL_ORDER``), the flux input
  (``flux_class_input``), the flare map of each flare's strength and position (``flare_map``,
  appended to the UNet input by ``with_flare_map``) and the classifier-free-guidance null
  condition (``null_condition``);
* classifier-free guidance (``apply_guidance``) and a model's guidance table by requested flux
  (``guidance_by_flux``), decided per call by ``SolarFlarePipeline.guidance_setting``;
* novelty guidance away from the training frames' layouts (``novelty_push``, ``NoveltyGuidance``);
* the invertible normalisation (``ClipLogNormalization``) saved with the model;
* the disk geometry in pixels (``rsun_px``, ``disk_center_px``, ``disk_mask``, ``arcsec_to_pixels``);
* ``SolarFlarePipeline``: ``check_inputs``, ``prepare_conditions``, ``guidance_scales``,
  ``prepare_novelty``, ``prepare_noise``, ``denoise``, ``postprocess``, as diffusers' pipelines.
"""

from __future__ import annotations

import base64
import inspect
import math
import os
import re
import shutil
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
from diffusers import DDPMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

#: The names this module offers (``solar_diffusion.pipelines`` re-exports them).
__all__ = ["FLARE_LETTERS", "LETTER_FLUX", "SWPC_SCALE", "GOES_R_SCALE", "FLUX_SCALES",
    "SWPC_SCALING_FACTOR", "convert_flux_scale", "parse_flare_class", "flare_letter", "format_flare_class",
    "QUIET_LABEL", "LABEL_ORDER", "FLUX_CLASS_INPUT_SCALE", "NULL_FLUX_CLASS_INPUT", "flux_class_input",
    "null_condition", "scheduler_step_kwargs", "requested_flux", "image_center_px", "rsun_px", "rescale_px",
    "disk_center_px", "north_up", "disk_mask", "FLARE_MAP_CHANNELS", "AUGMENTATION_PLANES", "FLARE_MAP_SIGMA_RSUN",
    "with_no_flip_planes",
    "NO_FLARE_CLASS_INPUT", "flare_strength", "flare_class_input", "flare_map", "with_flare_map",
    "apply_guidance", "UPSCALER_NOISE_SCALE", "UPSCALER_NOISE_LEVEL", "upsample", "noise_level_input",
    "upscaler_input", "geometry_at", "arcsec_to_pixels", "FLARE_POSITION_SPREAD_RSUN", "draw_flare_position",
    "ClipLogNormalization", "NOVELTY_TARGET", "NOVELTY_MAX_PUSH", "NOVELTY_UNTIL_TIMESTEP",
    "NOVELTY_POOL_PX", "NOVELTY_FLARE_RADIUS_RSUN", "predicted_x0", "model_output", "layouts_tensor",
    "novelty_push", "DEFAULT_STEPS", "DEFAULT_GUIDANCE", "OUTPUT_TYPES", "guidance_by_flux",
    "check_guidance_table", "Conditions", "NoveltyGuidance", "check_base_unet", "check_upscaler",
    "SolarFlarePipelineOutput", "SolarFlarePipeline"]

# --------------------------------------------------------------------------------------------
# The GOES flare scale
# --------------------------------------------------------------------------------------------

#: GOES class letters, lowest first, and the 1-8 Angstrom flux (W m^-2) at magnitude 1.0.
FLARE_LETTERS = ("A", "B", "C", "M", "X")
LETTER_FLUX = {"A": 1e-8, "B": 1e-7, "C": 1e-6, "M": 1e-5, "X": 1e-4}

#: Flux scales. ``"swpc"``: GOES 1-15 era operational fluxes and every class in HEK and the SWPC
#: event lists, which include NOAA's 0.7 scaling factor. ``"goes-r"``: GOES-16+ science data and
#: re-processed GOES 8-15 science data, without it.
SWPC_SCALE = "swpc"
GOES_R_SCALE = "goes-r"
FLUX_SCALES = (SWPC_SCALE, GOES_R_SCALE)
SWPC_SCALING_FACTOR = 0.7

_CLASS_PATTERN = re.compile(r"^\s*([ABCMX])\s*(\d+(?:\.\d*)?|\.\d+)?\s*$", re.IGNORECASE)


def _check_flux(flux: float) -> float:
    flux = float(flux)
    if not math.isfinite(flux) or flux <= 0:
        raise ValueError(f"GOES 1-8 A flux must be a positive finite number in W m^-2, got {flux!r}")
    return flux


def _check_scale(scale: str) -> str:
    if scale not in FLUX_SCALES:
        raise ValueError(f"unknown GOES flux scale {scale!r}: expected one of {FLUX_SCALES}")
    return scale


def convert_flux_scale(flux: float, from_scale: str, to_scale: str) -> float:
    """Convert a 1-8 A flux between the SWPC (x0.7) and GOES-R (unscaled) scales.

    >>> round(convert_flux_scale(0.7e-5, "swpc", "goes-r"), 12)
    1e-05
    """
    flux = _check_flux(flux)
    if _check_scale(from_scale) == _check_scale(to_scale):
        return flux
    return flux / SWPC_SCALING_FACTOR if from_scale == SWPC_SCALE else flux * SWPC_SCALING_FACTOR


def parse_flare_class(flare_class: str) -> float:
    """Peak 1-8 A flux in W m^-2 of a GOES class, on the scale the class was given on.

    A bare letter means magnitude 1.0.

    >>> parse_flare_class("M2.5")
    2.5e-05
    >>> parse_flare_class("X")
    0.0001
    """
    match = _CLASS_PATTERN.match(str(flare_class))
    if match is None:
        raise ValueError(
            f"{flare_class!r} is not a GOES flare class: expected a letter of "
            f"{', '.join(FLARE_LETTERS)} with an optional magnitude, e.g. 'M2.5'"
        )
    letter, magnitude = match.group(1).upper(), match.group(2)
    magnitude = float(magnitude) if magnitude else 1.0
    if magnitude <= 0:
        raise ValueError(f"GOES class {flare_class!r} has a non-positive magnitude")
    return float(f"{magnitude * LETTER_FLUX[letter]:.6g}")


def flare_letter(flux: float) -> str:
    """GOES letter of a 1-8 A flux (fluxes below B are 'A', above X1 stay 'X').

    >>> flare_letter(2.5e-5)
    'M'
    """
    flux = _check_flux(flux)
    letter = FLARE_LETTERS[0]
    for candidate in FLARE_LETTERS:
        if flux >= LETTER_FLUX[candidate] * (1 - 1e-9):
            letter = candidate
    return letter


def format_flare_class(flux: float, digits: int = 1) -> str:
    """GOES class of a 1-8 A flux, e.g. ``2.5e-5 -> 'M2.5'``.

    >>> format_flare_class(9.3e-4)
    'X9.3'
    """
    letter = flare_letter(flux)
    return f"{letter}{flux / LETTER_FLUX[letter]:.{digits}f}"


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------

#: Label for frames with no flare in progress and no known background flux.
QUIET_LABEL = "quiet"
LABEL_ORDER = (QUIET_LABEL,) + FLARE_LETTERS


#: Continuous conditioning (a UNet with ``class_embed_type="timestep"``): the UNet's class input
#: is ``FLUX_CLASS_INPUT_SCALE * (log10 F + 10)``, F the 1-8 A peak flux in W m^-2 on the GOES-R
#: scale (so A1 -> 200, X1 -> 600); the guidance null value lies outside that range.
FLUX_CLASS_INPUT_SCALE = 100.0
NULL_FLUX_CLASS_INPUT = -100.0


def flux_class_input(log10_flux):
    """UNet input of a flux-conditioned model for log10 of a GOES-R-scale flux (numpy or torch).

    >>> float(flux_class_input(-4.0))
    600.0
    """
    return FLUX_CLASS_INPUT_SCALE * (log10_flux + 10.0)


def null_condition(unet_config) -> int | float:
    """The classifier-free-guidance null condition of a UNet (its ``config``): the last class
    id of a class-conditional UNet (``num_class_embeds - 1``, after the ``label_vocabulary`` ids),
    or ``NULL_FLUX_CLASS_INPUT`` for a flux-conditioned one (``class_embed_type="timestep"``).
    Training drops labels to it and sampling guides away from it: the one definition.

    >>> null_condition({"class_embed_type": None, "num_class_embeds": 5})
    4
    >>> null_condition({"class_embed_type": "timestep", "num_class_embeds": None})
    -100.0
    """
    get = unet_config.get if isinstance(unet_config, dict) else lambda key: getattr(unet_config, key)
    if get("class_embed_type") == "timestep":
        return NULL_FLUX_CLASS_INPUT
    if not get("num_class_embeds"):
        raise ValueError("the UNet is not class-conditional (no num_class_embeds): it has no null condition")
    return int(get("num_class_embeds")) - 1


def scheduler_step_kwargs(scheduler, generator=None) -> dict:
    """Keyword arguments for ``scheduler.step``: the generator for stochastic schedulers only
    (deterministic ones such as UniPC take none), and ``use_clipped_model_output`` where offered
    (DDIM recomputes the noise from the clipped x0 estimate, keeping the update consistent).

    >>> from diffusers import DDIMScheduler, UniPCMultistepScheduler
    >>> sorted(scheduler_step_kwargs(DDIMScheduler())), scheduler_step_kwargs(UniPCMultistepScheduler())
    (['generator', 'use_clipped_model_output'], {})
    """
    accepted = inspect.signature(scheduler.step).parameters
    kwargs = {"generator": generator} if "generator" in accepted else {}
    if "use_clipped_model_output" in accepted:
        kwargs["use_clipped_model_output"] = True
    return kwargs


def requested_flux(flare_class) -> float:
    """GOES-R-scale flux (W m^-2) meant by a request to a flux-conditioned model.

    A class ("M2.5") is read on the SWPC scale of published classes and converted; a bare letter
    ("M") means the geometric centre of its decade (M3.2); a number is a GOES-R flux itself.

    >>> round(requested_flux("M2.5"), 10), round(requested_flux(2.5e-5), 10)
    (3.57143e-05, 2.5e-05)
    """
    if isinstance(flare_class, (float, np.floating)):
        return _check_flux(flare_class)
    text = str(flare_class).strip()
    flux = parse_flare_class(text)
    if len(text) == 1:
        flux *= math.sqrt(10.0)
    return convert_flux_scale(flux, SWPC_SCALE, GOES_R_SCALE)


# --------------------------------------------------------------------------------------------
# Disk geometry in pixels
# --------------------------------------------------------------------------------------------
# A model's ``geometry`` (its config) gives the image size it was trained at, the field of view
# in solar radii and the disk centre (x, y), 0-based pixels; these scale it to any image size.


def image_center_px(image_size: int) -> float:
    """The centre of a ``image_size`` px axis, 0-based (pixel centres at integers).

    >>> image_center_px(64)
    31.5
    """
    return (image_size - 1) / 2


def rsun_px(geometry: dict, image_size: int | None = None) -> float:
    """Solar radius in pixels at ``image_size`` (the geometry's own size by default).

    >>> rsun_px({"image_size": 64, "fov_rsun": 2.0}, 128)
    64.0
    """
    return (image_size or geometry["image_size"]) / geometry["fov_rsun"]


def rescale_px(position, from_size: int, to_size: int):
    """A 0-based pixel coordinate (pixel centres at integers; numpy or float) of a ``from_size``
    image at ``to_size``: the same point of the field of view.

    >>> rescale_px(31.5, 64, 128)
    63.5
    """
    return (position + 0.5) * (to_size / from_size) - 0.5


def disk_center_px(geometry: dict, image_size: int | None = None) -> tuple[float, float]:
    """Disk centre (x, y), 0-based pixels, at ``image_size`` (the geometry's own size by default).

    >>> disk_center_px({"image_size": 64, "disk_center_px": [31.5, 31.5]}, 128)
    (63.5, 63.5)
    """
    size = image_size or geometry["image_size"]
    cx, cy = (rescale_px(c, geometry["image_size"], size) for c in geometry["disk_center_px"])
    return float(cx), float(cy)


def north_up(images: np.ndarray, row_axis: int = -2) -> np.ndarray:
    """Images in FITS row order (row 0 is the south edge: every array this package makes) turned
    north up for display (row 0 the north edge), as PNG and PIL images are shown.

    >>> north_up(np.array([[0, 0], [1, 1]])).tolist()  # the northern row (1s) comes first
    [[1, 1], [0, 0]]
    """
    return np.flip(images, axis=row_axis)


def disk_mask(image_size: int, rsun_px: float, fraction: float = 1.0, center=None) -> np.ndarray:
    """Boolean (size, size) mask of pixels within ``fraction`` of the solar radius of the disk
    centre (x, y; the image centre by default).

    >>> int(disk_mask(8, 3.0).sum())
    32
    """
    c = image_center_px(image_size)
    cx, cy = (c, c) if center is None else center
    yy, xx = np.mgrid[:image_size, :image_size]
    return np.hypot(xx - cx, yy - cy) <= fraction * rsun_px


# --------------------------------------------------------------------------------------------
# Flares: strength and position (the "flare" conditioning)
# --------------------------------------------------------------------------------------------
# A flare model's UNet takes, besides the noisy image, a flare map concatenated to its input (as
# diffusers' upscaler and inpainting pipelines add channels): channel 0 marks every flare in
# progress by a Gaussian of width FLARE_MAP_SIGMA_RSUN at its position, as high as its strength;
# channel 1 is 1 where the model is conditioned and 0 for the guidance null condition. Its class
# input is ``flux_class_input`` of the largest flare's log10 peak flux (``NO_FLARE_CLASS_INPUT``
# without a flare). Several flares per image are allowed; overlapping marks keep the larger.

#: Input channels a flare model's UNet takes besides the image's.
FLARE_MAP_CHANNELS = 2
#: Input planes after the flare map of a model trained with flips (``--augment-flips``): 1 where the
#: training frame was flipped east-west, north-south; sampling sets them to 0 (no flip).
AUGMENTATION_PLANES = 2
#: Width (standard deviation) of a flare's mark on the map, in solar radii (1.4 px at 64 px).
FLARE_MAP_SIGMA_RSUN = 0.05
#: Class input of a flare model for an image with no flare in progress: the flux condition of
#: 1e-9 W m^-2, a decade below A1 (the guidance null value lies below it).
NO_FLARE_CLASS_INPUT = 100.0


def flare_strength(log10_flux):
    """Height of a flare's mark on the flare map for log10 of its GOES-R peak flux: A1 -> 0.33,
    X1 -> 1.0 (numpy or torch).

    >>> float(flare_strength(-4.0)), round(float(flare_strength(-6.0)), 3)
    (1.0, 0.667)
    """
    return (log10_flux + 10.0) / 6.0


def flare_class_input(log10_fluxes) -> float:
    """A flare model's class input for an image's flares in progress (log10 of their GOES-R peak
    fluxes): ``flux_class_input`` of the largest, ``NO_FLARE_CLASS_INPUT`` without any. The one rule
    for sampling and training.

    >>> flare_class_input([-5.0, -4.0]), flare_class_input([])
    (600.0, 100.0)
    """
    fluxes = np.asarray(log10_fluxes, dtype=np.float64).reshape(-1)
    return float(flux_class_input(fluxes.max())) if len(fluxes) else NO_FLARE_CLASS_INPUT


def flare_map(positions_px, log10_fluxes, image_size: int, sigma_px: float) -> np.ndarray:
    """The flare map (FLARE_MAP_CHANNELS, size, size) of one image: a Gaussian of ``sigma_px`` at
    each position (x, y: column, row of the image array, 0-based), as high as ``flare_strength``;
    channel 1 is all ones (conditioned). No flares: channel 0 is zero.

    >>> m = flare_map([(2.0, 5.0)], [-4.0], 8, sigma_px=1.0)
    >>> m.shape, float(m[0, 5, 2]), float(m[1].min())
    ((2, 8, 8), 1.0, 1.0)
    """
    positions = np.asarray(positions_px, dtype=np.float64).reshape(-1, 2)
    out = np.zeros((FLARE_MAP_CHANNELS, image_size, image_size), dtype=np.float32)
    out[1] = 1.0
    if len(positions):
        grid = np.arange(image_size, dtype=np.float64)
        dx = grid[None, None, :] - positions[:, 0, None, None]
        dy = grid[None, :, None] - positions[:, 1, None, None]
        heights = flare_strength(np.asarray(log10_fluxes, dtype=np.float64).reshape(-1))[:, None, None]
        out[0] = (heights * np.exp(-(dx**2 + dy**2) / (2 * sigma_px**2))).max(axis=0)
    return out


def with_flare_map(sample: torch.Tensor, flare_maps: torch.Tensor | None) -> torch.Tensor:
    """A flare model's UNet input: the (noisy) images with their flare maps appended as channels,
    as diffusers' upscaler and inpainting pipelines append theirs; ``sample`` alone without maps.
    The one place the flare map enters a UNet (sampling, training and distillation).

    >>> with_flare_map(torch.zeros(2, 3, 8, 8), torch.ones(2, FLARE_MAP_CHANNELS, 8, 8)).shape
    torch.Size([2, 5, 8, 8])
    """
    return sample if flare_maps is None else torch.cat([sample, flare_maps.to(sample)], dim=1)


def with_no_flip_planes(flare_maps: torch.Tensor, unet) -> torch.Tensor:
    """Flare maps followed by zero augmentation planes (no flip), as many as ``unet`` (trained with
    flips: ``AUGMENTATION_PLANES``) reads beyond its images and maps; unchanged for one without.

    >>> from types import SimpleNamespace
    >>> unet = SimpleNamespace(config=SimpleNamespace(in_channels=7, out_channels=3))
    >>> with_no_flip_planes(torch.ones(2, FLARE_MAP_CHANNELS, 8, 8), unet).shape
    torch.Size([2, 4, 8, 8])
    """
    planes = unet.config.in_channels - unet.config.out_channels - flare_maps.shape[1]
    if planes <= 0:
        return flare_maps
    return torch.cat([flare_maps, flare_maps.new_zeros(len(flare_maps), planes, *flare_maps.shape[2:])], dim=1)


def apply_guidance(uncond: torch.Tensor, cond: torch.Tensor, guidance_scale) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): ``uncond + w (cond - uncond)``; ``w`` a number
    or a per-image tensor (N, 1, 1, 1). The one definition (sampling and distillation).

    >>> float(apply_guidance(torch.tensor(1.0), torch.tensor(2.0), 3.0))
    4.0
    """
    return uncond + guidance_scale * (cond - uncond)


# --------------------------------------------------------------------------------------------
# Super-resolution: the cascade's second stage
# --------------------------------------------------------------------------------------------
# An upscaler (a convolution-only UNet) diffuses the residual between the high-resolution image
# and the bilinearly upsampled base image, divided by its spread (``residual_std``), beside the
# upsampled base image with noise added (noise augmentation, whose level it is told as its class
# input, as diffusers' upscaler and DeepFloyd IF stage II do) and a flare model's flare map at the
# high resolution. Trained on crops (``training/train_upscaler.py``), it runs on whole frames.
# An upscaler saved with ``upscaling["objective"] == "regression"`` instead predicts the residual in
# one pass (an L1 regression: the control the diffusion upscaler is judged against, and a fast mode).

#: The upscaler's class input per unit of noise-augmentation level (its std in model space).
UPSCALER_NOISE_SCALE = 1000.0
#: Noise augmentation of the base image at sampling where the model's ``upscaling`` gives none:
#: none. The bundled upscaler, trained with levels in [0, 0.2], did best at 0 on the validation
#: months for real and generated base images alike (``evaluate-cascade``'s sweep; 0.05 before).
UPSCALER_NOISE_LEVEL = 0.0


def upsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear upsampling of (N, C, h, w) images to ``size`` px (pixel centres kept, no antialias):
    the base image the upscaler adds its residual to.

    >>> upsample(torch.ones(1, 3, 4, 4), 8).shape
    torch.Size([1, 3, 8, 8])
    """
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def noise_level_input(noise_level):
    """The upscaler's class input for a noise-augmentation level (numpy, torch or float).

    >>> float(noise_level_input(0.05))
    50.0
    """
    return UPSCALER_NOISE_SCALE * noise_level


def upscaler_input(residual: torch.Tensor, low_upsampled: torch.Tensor, flare_maps: torch.Tensor | None = None):
    """The upscaler's input: the noisy residual, the (noise-augmented) upsampled base image and a
    flare model's flare map at the high resolution, as channels.

    >>> upscaler_input(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 8, 8)).shape
    torch.Size([1, 8, 8, 8])
    """
    return with_flare_map(torch.cat([residual, low_upsampled.to(residual)], dim=1), flare_maps)


def geometry_at(geometry: dict, image_size: int) -> dict:
    """A model's ``geometry`` for the same field of view at ``image_size`` px: the plate scale and
    the disk centre follow.

    >>> geometry_at({"image_size": 64, "plate_scale_arcsec": 34.4, "disk_center_px": [31.5, 31.5]}, 256)
    {'image_size': 256, 'plate_scale_arcsec': 8.6, 'disk_center_px': [127.5, 127.5]}
    """
    if not geometry or geometry.get("image_size") in (None, image_size):
        return dict(geometry)
    out = dict(geometry, image_size=image_size)
    if "plate_scale_arcsec" in geometry:
        out["plate_scale_arcsec"] = geometry["plate_scale_arcsec"] * geometry["image_size"] / image_size
    if "disk_center_px" in geometry:
        out["disk_center_px"] = [float(c) for c in disk_center_px(geometry, image_size)]
    return out


def arcsec_to_pixels(x_arcsec, y_arcsec, geometry: dict, image_size: int | None = None) -> tuple[float, float]:
    """Helioprojective (x, y) in arcsec to the (column, row) of an image of the geometry (rows in
    FITS order: row 0 is the south edge, so the row grows northward); refuses a position off the
    visible disk.

    >>> geometry = {"image_size": 64, "fov_rsun": 2.3, "disk_center_px": [31.5, 31.5], "plate_scale_arcsec": 34.8}
    >>> arcsec_to_pixels(348.0, -174.0, geometry)
    (41.5, 26.5)
    >>> arcsec_to_pixels(1200.0, 0.0, geometry)
    Traceback (most recent call last):
    ...
    ValueError: position (1200, 0) arcsec lies off the visible disk (r = 1200 arcsec > R_sun = 968 arcsec): a flare must be on the disk
    """
    image_size = image_size or geometry["image_size"]
    rsun_arcsec = rsun_px(geometry) * geometry["plate_scale_arcsec"]
    if not (math.isfinite(x_arcsec) and math.isfinite(y_arcsec)):
        raise ValueError(f"position ({x_arcsec}, {y_arcsec}) arcsec is not a pair of finite numbers")
    r = math.hypot(x_arcsec, y_arcsec)
    if r > rsun_arcsec:
        raise ValueError(f"position ({x_arcsec:g}, {y_arcsec:g}) arcsec lies off the visible disk (r = {r:.0f} arcsec > "
                         f"R_sun = {rsun_arcsec:.0f} arcsec): a flare must be on the disk")
    scale = geometry["plate_scale_arcsec"] * geometry["image_size"] / image_size
    cx, cy = disk_center_px(geometry, image_size)
    return float(cx + x_arcsec / scale), float(cy + y_arcsec / scale)


#: Width (standard deviation, solar radii) of the kernel around each training flare position when
#: positions are drawn: the training flares' distribution (the active-region belts), not replays of
#: their exact places, which a flare model can tie to the training frames of those flares.
FLARE_POSITION_SPREAD_RSUN = 0.1


def draw_flare_position(known, geometry: dict, rng: np.random.Generator) -> tuple[float, float]:
    """A helioprojective position (arcsec) drawn from the training flares' distribution: a
    training flare position (``known``) moved by a Gaussian of ``FLARE_POSITION_SPREAD_RSUN``, kept
    on the disk (within 0.95 R_sun; redrawn otherwise).

    >>> geometry = {"image_size": 64, "fov_rsun": 2.3, "disk_center_px": [31.5, 31.5], "plate_scale_arcsec": 34.8}
    >>> x, y = draw_flare_position([[-400.0, 250.0]], geometry, np.random.default_rng(0))
    >>> bool(abs(x + 400) < 400 and abs(y - 250) < 400), (x, y) != (-400.0, 250.0)
    (True, True)
    """
    if not known:
        raise ValueError("this model keeps no training flare positions to draw from: give a position")
    rsun_arcsec = rsun_px(geometry) * geometry["plate_scale_arcsec"]
    for _ in range(100):
        x, y = known[int(rng.integers(len(known)))]
        x, y = (float(v + rng.normal(0.0, FLARE_POSITION_SPREAD_RSUN * rsun_arcsec)) for v in (x, y))
        if math.hypot(x, y) <= 0.95 * rsun_arcsec:
            return x, y
    return tuple(float(v) for v in known[int(rng.integers(len(known)))])


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipLogNormalization:
    """Invertible map from data values to model space [-1, 1]: clip -> log10 (optional) -> scale.

    Defaults follow the paper's lineage for AIA 171 A: clip to [5, 3500] DN/s, then log10.
    ``unit`` records the unit the transform was fitted on ("DN/s" for calibrated data,
    "browse" for 8-bit display-scaled browse images); ``inverse`` returns values in that unit.

    >>> norm = ClipLogNormalization()
    >>> float(norm.forward(np.float32(3500.0)))
    1.0
    >>> round(float(norm.inverse(norm.forward(np.float32(100.0)))), 3)
    100.0
    """

    lo: float = 5.0
    hi: float = 3500.0
    log: bool = True
    unit: str = "DN/s"

    def __post_init__(self):
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.hi > self.lo):
            raise ValueError(f"normalisation needs finite lo < hi, got lo={self.lo}, hi={self.hi}")
        if self.log and self.lo <= 0:
            raise ValueError(f"a log normalisation needs lo > 0, got lo={self.lo}")

    @classmethod
    def for_browse(cls) -> "ClipLogNormalization":
        """Linear map of 8-bit browse brightness [0, 255] (already display-scaled)."""
        return cls(lo=0.0, hi=255.0, log=False, unit="browse")

    @classmethod
    def for_unit(cls, unit: str) -> "ClipLogNormalization":
        """The normalisation for a data unit: clip-log for calibrated "DN/s", linear for "browse".

        >>> ClipLogNormalization.for_unit("browse").hi, ClipLogNormalization.for_unit("DN/s").log
        (255.0, True)
        """
        if unit == "DN/s":
            return cls()
        if unit == "browse":
            return cls.for_browse()
        raise ValueError(f"no normalisation for the data unit {unit!r}: expected 'DN/s' or 'browse'")

    def _bounds(self):
        if self.log:
            return math.log10(self.lo), math.log10(self.hi)
        return self.lo, self.hi

    def forward(self, data):
        """Data values (numpy or torch) -> model space [-1, 1]."""
        lib = torch if isinstance(data, torch.Tensor) else np
        x = lib.clip(data, self.lo, self.hi)
        if self.log:
            x = lib.log10(x)
        a, b = self._bounds()
        return (x - a) * (2.0 / (b - a)) - 1.0

    def inverse(self, model_values):
        """Model space -> data values in ``unit`` (model values are clipped to [-1, 1] first)."""
        lib = torch if isinstance(model_values, torch.Tensor) else np
        a, b = self._bounds()
        x = (lib.clip(model_values, -1.0, 1.0) + 1.0) * ((b - a) / 2.0) + a
        return lib.clip(10.0**x, self.lo, self.hi) if self.log else x

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, config: dict | None) -> "ClipLogNormalization":
        return cls(**config) if config else cls()


# --------------------------------------------------------------------------------------------
# Novelty guidance: steer away from the training frames (anti-memorisation guidance)
# --------------------------------------------------------------------------------------------
# A model trained on a few hundred days redraws their active-region layout. Novelty guidance
# (after the anti-memorisation guidance of Chen, Liu & Xu 2024, CVPR) keeps, in the model's
# config, every training frame averaged over ``pool_px`` cells (8-bit), and how far apart the
# layouts of days more than 3 days apart are (``day_distance``). While the noise is high
# (timestep >= ``until_timestep``), an estimate of the clean image nearer its nearest training
# layout than ``target`` day distances is moved away from it along their difference, to that
# distance (at most ``max_push`` times the difference), on the disk and in the corona apart,
# each keeping its mean brightness and contrast, and away from the requested flares.

#: Defaults of the novelty guidance a model is saved with: the target distance from the nearest
#: training layout (in day distances), the largest push, the last timestep and the cell size.
NOVELTY_TARGET = 2.0
NOVELTY_MAX_PUSH = 4.0
NOVELTY_UNTIL_TIMESTEP = 60
NOVELTY_POOL_PX = 8
#: Radius (solar radii) around each requested flare where the guidance leaves the image alone.
NOVELTY_FLARE_RADIUS_RSUN = 0.15


def predicted_x0(output, z, alpha_bar, prediction_type: str) -> torch.Tensor:
    """The model's clean-image estimate from its output at ``z`` (``alpha_bar`` broadcast per frame)."""
    if prediction_type == "v_prediction":
        return alpha_bar.sqrt() * z - (1 - alpha_bar).sqrt() * output
    if prediction_type == "epsilon":
        return (z - (1 - alpha_bar).sqrt() * output) / alpha_bar.sqrt()
    if prediction_type == "sample":
        return output
    raise ValueError(f"prediction type {prediction_type!r} is not supported")


def model_output(x0, z, alpha_bar, prediction_type: str) -> torch.Tensor:
    """The output with which the model estimates ``x0`` at ``z``: the inverse of ``predicted_x0``.

    >>> z, x0, a = torch.randn(1, 1, 2, 2), torch.rand(1, 1, 2, 2), torch.tensor(0.3)
    >>> torch.allclose(predicted_x0(model_output(x0, z, a, "v_prediction"), z, a, "v_prediction"), x0, atol=1e-6)
    True
    """
    if prediction_type == "v_prediction":
        return (alpha_bar.sqrt() * z - x0) / (1 - alpha_bar).sqrt()
    if prediction_type == "epsilon":
        return (z - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
    if prediction_type == "sample":
        return x0
    raise ValueError(f"prediction type {prediction_type!r} is not supported")


def layouts_tensor(novelty: dict) -> torch.Tensor:
    """The training layouts (N, C, h, w) of a ``novelty`` config, in model space: 8-bit codes,
    stored as each layout's difference from the one before (modulo 256), deflated
    (``layouts_delta_zlib_base64``), or plain (``layouts_uint8_base64``, models saved before)."""
    delta = "layouts_delta_zlib_base64" in novelty
    codes = np.frombuffer(zlib.decompress(base64.b64decode(novelty["layouts_delta_zlib_base64"])) if delta
                          else base64.b64decode(novelty["layouts_uint8_base64"]), dtype=np.uint8)
    if codes.size != math.prod(novelty["shape"]):
        raise ValueError(f"the novelty layouts hold {codes.size} values, not the {novelty['shape']} the config says")
    codes = codes.reshape(novelty["shape"])
    if delta:
        codes = np.cumsum(codes, axis=0, dtype=np.uint8)  # wraps modulo 256, as the differences did
    return torch.from_numpy(codes.astype(np.float32) / 127.5 - 1.0)


def novelty_push(x0: torch.Tensor, layouts: torch.Tensor, distance: float, max_push: float, where: torch.Tensor,
                 measured: torch.Tensor | None = None, regions: torch.Tensor | None = None) -> torch.Tensor:
    """``x0`` moved away from its nearest training layout, along their difference (upsampled
    bilinearly, times ``where``: N or 1, 1, H, W), until its layout lies ``distance`` (RMS, model
    space) from it, by at most ``max_push`` times the difference; farther layouts stay. Within
    each of ``regions`` (N or 1, R, H, W masks: the disk and the corona; default one, the whole
    image) the moved pixels keep their mean and their spread (standard deviation) per channel:
    the push moves brightness between places, never the exposure or the contrast. The layout of
    ``x0`` is its mean per cell over the pixels ``measured`` marks (all by default; the requested
    flares are left out, so that neither the search nor the push sees them); a cell with none
    moves not at all.

    >>> layout = torch.tensor([[0.5, -0.5], [-0.5, 0.5]]).view(1, 1, 2, 2)
    >>> x0 = 0.6 * layout + torch.tensor([[0.1, -0.1], [0.1, -0.1]]).view(1, 1, 2, 2)  # 0.22 from the layout
    >>> pushed = novelty_push(x0, layout, 0.3, 4.0, torch.ones(1, 1, 2, 2))
    >>> [round(v, 3) for v in pushed.flatten().tolist()]  # same mean and spread, 0.28 from the layout
    [0.432, -0.432, -0.115, 0.115]
    """
    pool = x0.shape[-1] // layouts.shape[-1]
    measured = torch.ones_like(x0[:, :1]) if measured is None else measured.to(x0).expand(len(x0), 1, *x0.shape[-2:])
    counts = torch.nn.functional.avg_pool2d(measured, pool)
    cells = torch.nn.functional.avg_pool2d(x0 * measured, pool) / counts.clamp(min=1e-6)
    flat = layouts.to(cells).flatten(1)
    seen = (counts > 0).to(cells).expand_as(cells)  # cells without a measured pixel are left out of the search
    nearest = torch.stack([flat[torch.cdist((cells[i] * seen[i]).reshape(1, -1), flat * seen[i].reshape(1, -1)).argmin()]
                           for i in range(len(cells))]).view_as(cells)
    delta = (cells - nearest) * seen
    now = delta.flatten(1).square().mean(dim=1).sqrt()
    push = (distance / now.clamp(min=1e-6) - 1).clamp(min=0, max=max_push).view(-1, 1, 1, 1)
    where = where.to(x0).expand(len(x0), x0.shape[1], *x0.shape[-2:])
    field = torch.nn.functional.interpolate(push * delta, scale_factor=pool, mode="bilinear", align_corners=False)
    moved = x0 + field * where
    regions = torch.ones_like(x0[:, :1]) if regions is None else regions.to(x0)
    for r in range(regions.shape[1]):
        w = where * regions[:, r:r + 1]
        (mean_before, spread_before), (mean_after, spread_after) = _mean_spread(x0, w), _mean_spread(moved, w)
        kept = mean_before + (moved - mean_after) * spread_before / spread_after.clamp(min=1e-6)
        moved = torch.where(w > 0, kept, moved)
    return moved


def _mean_spread(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of ``x`` per image and channel over the pixels ``w`` marks."""
    n = w.sum(dim=(2, 3), keepdim=True).clamp(min=1e-6)
    mean = (x * w).sum(dim=(2, 3), keepdim=True) / n
    return mean, (((x - mean) * w).square().sum(dim=(2, 3), keepdim=True) / n).sqrt()


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------


#: Default sampling settings of ``SolarFlarePipeline.__call__``, for the bundled model's saved
#: scheduler (DPM-Solver++ with steps uniform in log-SNR): at 10 steps its quality equals 1000
#: ancestral DDPM steps within the measured intervals (BENCHMARKS.md, per step count).
DEFAULT_STEPS = 10
DEFAULT_GUIDANCE = 3.0
#: ``SolarFlarePipeline.__call__``'s output types.
OUTPUT_TYPES = ("np", "pt", "pil", "model", "data_unit")


def guidance_by_flux(table: dict, flares_per_image: list) -> list:
    """Each image's guidance scale from a model's ``guidance_by_flux`` table: interpolated in
    log10 of its largest requested GOES-R peak flux (``log10_flux``, ``scale``; clamped at the
    ends), and ``quiet`` for an image without a flare.

    >>> table = {"log10_flux": [-5.5, -4.5], "scale": [1.5, 3.0], "quiet": 3.0}
    >>> guidance_by_flux(table, [[], [{"log10_peak_flux_goes_r": -5.0}], [{"log10_peak_flux_goes_r": -3.0}]])
    [3.0, 2.25, 3.0]
    """
    return [float(table["quiet"]) if not flares else
            float(np.interp(max(f["log10_peak_flux_goes_r"] for f in flares), table["log10_flux"], table["scale"]))
            for flares in flares_per_image]


def check_guidance_table(table: dict) -> None:
    """Refuse a ``guidance_by_flux`` table that is not increasing finite ``log10_flux``, as many
    finite ``scale`` values and a finite ``quiet`` scale.

    >>> check_guidance_table({"log10_flux": [-5.0, -6.0], "scale": [1.0, 2.0], "quiet": 3.0})
    Traceback (most recent call last):
    ...
    ValueError: guidance_by_flux needs increasing finite log10_flux, as many finite scales and a finite quiet scale, got {'log10_flux': [-5.0, -6.0], 'scale': [1.0, 2.0], 'quiet': 3.0}
    """
    xs, ys = list(table.get("log10_flux", [])), list(table.get("scale", []))
    values = xs + ys + [table.get("quiet", float("nan"))]
    if not xs or len(xs) != len(ys) or any(b <= a for a, b in zip(xs, xs[1:])) \
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise ValueError(f"guidance_by_flux needs increasing finite log10_flux, as many finite scales and a "
                         f"finite quiet scale, got {table}")


@dataclass
class Conditions:
    """What the UNet is conditioned on, per image: its class inputs (N), a flare model's flare
    maps (N, FLARE_MAP_CHANNELS, H, W; else None), each image's name and a flare model's
    requested flares (``flare_request``'s dicts; else None)."""

    class_inputs: torch.Tensor
    flare_maps: torch.Tensor | None
    names: list
    flares: list | None

    def __len__(self) -> int:
        return len(self.class_inputs)


@dataclass
class NoveltyGuidance:
    """Novelty guidance of one call (``novelty_push``): while ``timestep >= until_timestep`` the
    clean-image estimate is moved to ``distance`` (RMS, model space) from its nearest training
    ``layouts``, by at most ``max_push``, within ``regions`` and away from the requested flares
    (``off_flares``)."""

    target: float
    layouts: torch.Tensor
    distance: float
    max_push: float
    until_timestep: int
    regions: torch.Tensor
    off_flares: torch.Tensor

    def __call__(self, prediction, sample, t, alphas_cumprod, prediction_type: str) -> torch.Tensor:
        """The UNet's (guided) ``prediction`` at ``sample`` after the push (unchanged below the
        last timestep)."""
        if int(t) < self.until_timestep:
            return prediction
        alpha_bar = alphas_cumprod[int(t)].to(sample)
        x0 = novelty_push(predicted_x0(prediction, sample, alpha_bar, prediction_type), self.layouts, self.distance,
                          self.max_push, self.off_flares, self.off_flares, self.regions)
        return model_output(x0, sample, alpha_bar, prediction_type)


def check_base_unet(unet, id2label) -> dict[int, str]:
    """Refuse a base UNet whose channels or class embedding do not fit its conditioning; returns
    ``id2label`` checked (the GOES letters by default for a class-conditional UNet)."""
    flux_model = unet.config.class_embed_type == "timestep"
    extra = unet.config.in_channels - (unet.config.out_channels or unet.config.in_channels)
    if extra not in (0, FLARE_MAP_CHANNELS, FLARE_MAP_CHANNELS + AUGMENTATION_PLANES) or (extra and not flux_model):
        raise ValueError(f"the UNet takes {unet.config.in_channels} input and {unet.config.out_channels} output "
                         f"channels: a flare model takes {FLARE_MAP_CHANNELS} more (the flare map; "
                         f"{FLARE_MAP_CHANNELS + AUGMENTATION_PLANES} with flip augmentation planes) and the flux")
    if id2label is None:
        id2label = {} if flux_model else {i: label for i, label in enumerate(FLARE_LETTERS)}
    id2label = {int(k): str(v) for k, v in id2label.items()}
    if sorted(id2label) != list(range(len(id2label))):
        raise ValueError(f"id2label keys must be 0..{len(id2label) - 1}, got {sorted(id2label)}")
    if flux_model and id2label:
        raise ValueError("a flux-conditioned UNet (class_embed_type='timestep') takes no id2label")
    if not flux_model and unet.config.num_class_embeds != len(id2label) + 1:
        raise ValueError(f"the UNet has num_class_embeds={unet.config.num_class_embeds}, but {len(id2label)} labels "
                         f"plus the null class need {len(id2label) + 1}")
    return id2label


def check_upscaler(unet, upscaler, upscaler_scheduler, upscaling: dict | None):
    """Refuse an upscaler that does not fit its base UNet: it takes the noisy residual and the
    upsampled base image (and a flare model's flare map), both of the base's channels, the
    noise-augmentation level as its class input (``class_embed_type="timestep"``), a larger size,
    a scheduler, and ``upscaling`` with a positive ``residual_std``."""
    channels = unet.config.out_channels or unet.config.in_channels
    maps = FLARE_MAP_CHANNELS if unet.config.in_channels > channels else 0  # a base's flip planes stay with it
    wanted = 2 * channels + maps
    if upscaler.config.in_channels != wanted or upscaler.config.out_channels != channels:
        raise ValueError(f"the upscaler takes {upscaler.config.in_channels} input and {upscaler.config.out_channels} "
                         f"output channels: over this base model it needs {wanted} and {channels}")
    if upscaler.config.class_embed_type != "timestep" or upscaler.config.sample_size <= unet.config.sample_size:
        raise ValueError("the upscaler needs class_embed_type='timestep' (its noise level) and a sample_size larger "
                         f"than the base model's {unet.config.sample_size} px")
    if upscaler_scheduler is None or not (upscaling or {}).get("residual_std", 0) > 0:
        raise ValueError("an upscaler needs its scheduler and upscaling={'residual_std': > 0, ...}")


@dataclass
class SolarFlarePipelineOutput(ImagePipelineOutput):
    """Generated images and, per image, its metadata (label, seed, unit, geometry)."""

    metadata: list[dict] | None = None


class SolarFlarePipeline(DiffusionPipeline):
    r"""Generate full-disk solar images of chosen GOES flare classes with classifier-free guidance.

    Parameters:
        unet ([`UNet2DModel`]): class-conditional UNet with ``num_class_embeds = len(id2label) + 1``
            (the last embedding is the null class of classifier-free guidance), or, for continuous
            conditioning on the peak flux, ``class_embed_type="timestep"`` (see ``flux_class_input``).
        scheduler ([`SchedulerMixin`]): ``DDPMScheduler``, ``DDIMScheduler``,
            ``DPMSolverMultistepScheduler`` or any diffusers scheduler (they swap with ``from_config``).
        id2label (`dict`): label of each class id, lowest first, e.g. ``{0: "quiet", 1: "C"}``
            (empty for a flux-conditioned model).
        normalization (`dict`): ``ClipLogNormalization`` fields; its ``unit`` is the data unit.
        geometry (`dict`, optional): the images' geometry (wavelength, field of view in solar
            radii, plate scale, disk centre, nominal date), passed on in each image's metadata.
        distillation (`dict`, optional): set for a distilled student (``training/distill.py``):
            ``guidance_scale`` is distilled into the UNet (one call per step, no other guidance
            possible) and ``num_inference_steps`` is its default number of steps.
        novelty (`dict`, optional): the training frames' layouts and the defaults of the novelty
            guidance that steers away from them (``training_layouts``; empty: none).
        guidance_by_flux (`dict`, optional): a flare model's default guidance scale per image, by
            its largest requested flux (``guidance_by_flux``; empty: ``DEFAULT_GUIDANCE`` for all).
        forecast (`dict`, optional): set for a forecast model, one trained on frames labelled by the
            flares that peak in the ``horizon_hours`` after them (``label_rule``): a request for an
            M flare draws the Sun in the hours before one, its region where the flare will be; each
            image's metadata carries it (empty: the flares asked for are in progress).
    """

    model_cpu_offload_seq = "unet->upscaler"
    _optional_components = ["upscaler", "upscaler_scheduler"]

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: DDPMScheduler,
        id2label: dict | None = None,
        normalization: dict | None = None,
        geometry: dict | None = None,
        flare_positions: list | None = None,
        distillation: dict | None = None,
        novelty: dict | None = None,
        guidance_by_flux: dict | None = None,
        upscaler: UNet2DModel | None = None,
        upscaler_scheduler: DDPMScheduler | None = None,
        upscaling: dict | None = None,
        forecast: dict | None = None,
    ):
        super().__init__()
        id2label = check_base_unet(unet, id2label)
        if novelty:
            shape, size = list(novelty["shape"]), unet.config.sample_size
            cells = [unet.config.out_channels or unet.config.in_channels, size // novelty["pool_px"], size // novelty["pool_px"]]
            if shape[1:] != cells or size % novelty["pool_px"]:
                raise ValueError(f"the novelty layouts are {shape[1:]} (channels, cells), but this UNet's {size} px "
                                 f"images in {novelty['pool_px']} px cells are {cells}")
        if guidance_by_flux:
            check_guidance_table(guidance_by_flux)
        if upscaler is not None:
            check_upscaler(unet, upscaler, upscaler_scheduler, upscaling)
        self.register_modules(unet=unet, scheduler=scheduler, upscaler=upscaler, upscaler_scheduler=upscaler_scheduler)
        self.register_to_config(
            id2label={str(k): v for k, v in id2label.items()},
            normalization=ClipLogNormalization.from_dict(normalization).to_dict(),
            geometry=dict(geometry or {}),
            flare_positions=[[float(x), float(y)] for x, y in (flare_positions or [])],
            distillation=dict(distillation or {}),
            novelty=dict(novelty or {}),
            guidance_by_flux=dict(guidance_by_flux or {}),
            upscaling=dict(upscaling or {}) if upscaler is not None else {},
            forecast=dict(forecast or {}),
        )

    #: What a saved folder carries besides the weights and configs: the model card and the
    #: evaluation encoder the model's figures were measured with (those of the folder it was loaded from).
    FOLDER_EXTRAS = ("README.md", "evaluation_encoder")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """``DiffusionPipeline.from_pretrained``, remembering a local folder it was loaded from
        (``source_folder``), so that ``save_pretrained`` carries its ``FOLDER_EXTRAS`` along."""
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        folder = os.fspath(pretrained_model_name_or_path)
        pipe.source_folder = folder if os.path.isdir(folder) else None
        return pipe

    def save_pretrained(self, save_directory, *args, push_to_hub: bool = False, **kwargs):
        """``DiffusionPipeline.save_pretrained``, plus this file as ``pipeline.py`` beside
        ``model_index.json``, the model card (``README.md``) and evaluation encoder of the folder
        it was loaded from (a card made from its config where it has none): the folder (and a repo
        made from it, also by diffusers' ``push_to_hub``, which saves through here) loads without
        solar_diffusion installed, with ``DiffusionPipeline.from_pretrained(folder,
        custom_pipeline=folder, trust_remote_code=True)``, and reaches the Hub with its card."""
        super().save_pretrained(save_directory, *args, **kwargs)
        source = inspect.getsourcefile(type(self)) or __file__
        target = os.path.join(save_directory, "pipeline.py")
        if not os.path.exists(target) or not os.path.samefile(source, target):
            shutil.copyfile(source, target)
        for name in self.FOLDER_EXTRAS if getattr(self, "source_folder", None) else ():
            kept, copy = os.path.join(self.source_folder, name), os.path.join(save_directory, name)
            if os.path.exists(kept) and not os.path.exists(copy):
                (shutil.copytree if os.path.isdir(kept) else shutil.copyfile)(kept, copy)
        card = os.path.join(save_directory, "README.md")
        if not os.path.exists(card):
            with open(card, "w", encoding="utf-8") as handle:
                handle.write(self.model_card())
        if push_to_hub:  # after pipeline.py is in the folder
            repo_id = kwargs.pop("repo_id", None) or os.path.basename(os.path.normpath(save_directory))
            keys = ("commit_message", "private", "token", "create_pr")
            self.push_to_hub(repo_id, **{k: kwargs[k] for k in keys if k in kwargs})

    def model_card(self) -> str:
        """A short model card from the pipeline's config, for a folder saved without one."""
        channels = self.config.geometry.get("wavelengths_angstrom") or []
        return (f"---\nlibrary_name: diffusers\ntags: [solar-physics, sdo-aia, diffusion, synthetic]\n---\n"
                f"# SolarFlarePipeline\n\nSynthetic SDO/AIA full-disk images"
                f"{' (' + ', '.join(f'{int(w)}' for w in channels) + ' Angstrom)' if channels else ''}, "
                f"{self.conditioning}-conditioned, {self.unet.config.sample_size} px, data unit "
                f"{self.normalization.unit}.\n\n```python\nfrom diffusers import DiffusionPipeline\n"
                f"pipe = DiffusionPipeline.from_pretrained(REPO, custom_pipeline=REPO, trust_remote_code=True)\n"
                f"image = pipe(\"M2.5\").images[0]\n```\n")

    @property
    def id2label(self) -> dict[int, str]:
        """The label of each class id of a class-conditional model (empty for a flux or flare model)."""
        return {int(k): v for k, v in self.config.id2label.items()}

    @property
    def conditioning(self) -> str:
        """``"class"`` (GOES labels), ``"flux"`` (continuous log10 peak flux) or ``"flare"`` (peak flux
        and position of each flare: a flare map beside the image, see ``flare_map``)."""
        if self.unet.config.class_embed_type != "timestep":
            return "class"
        return "flare" if self.unet.config.in_channels > self.unet.config.out_channels else "flux"

    def flare_request(self, flares, image_size: int, rng: np.random.Generator) -> list[dict]:
        """One image's flares for a flare model: ``flares`` is a list of ``(flare_class, position)``
        pairs, ``position`` in helioprojective arcsec ``(x, y)``, in pixels of the model's images
        ``("px", x, y)`` (column, row; row 0 is the south edge), or None to draw one of the
        training flares' positions with ``rng``; ``("quiet", None)`` alone means no flare. Each
        dict holds the class, log10 of the GOES-R peak flux, and the position in arcsec (None if
        given in pixels) and in pixels."""
        image = []
        for flare_class, position in flares:
            if str(flare_class).strip().lower() == QUIET_LABEL:
                if position is not None:
                    raise ValueError(f"a position was given for 'quiet' ({position!r}): a quiet Sun has no flare to place")
                continue
            flux = requested_flux(flare_class)
            arcsec = None
            if position is None:
                position = draw_flare_position(self.config.flare_positions, self.config.geometry, rng)
            if isinstance(position[0], str):
                if position[0] != "px" or len(position) != 3:
                    raise ValueError(f"a position in pixels is ('px', x, y), got {position!r}")
                x, y = float(position[1]), float(position[2])
                if not (0 <= x <= image_size - 1 and 0 <= y <= image_size - 1):
                    raise ValueError(f"pixel position ({x:g}, {y:g}) lies outside the {image_size} px image")
            else:
                arcsec = [float(position[0]), float(position[1])]
                x, y = arcsec_to_pixels(*arcsec, self.config.geometry, image_size)
            image.append({"flare_class": format_flare_class(convert_flux_scale(flux, GOES_R_SCALE, SWPC_SCALE)),
                          "log10_peak_flux_goes_r": math.log10(flux), "position_arcsec": arcsec,
                          "position_px": [x, y]})
        return image

    def flare_inputs(self, per_image: list[list[dict]], image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A flare model's class inputs (``flare_class_input``) and flare maps (N, FLARE_MAP_CHANNELS, size, size),
        followed by zero augmentation planes (no flip) where the UNet was trained with flips."""
        sigma = FLARE_MAP_SIGMA_RSUN * rsun_px(self.config.geometry, image_size)
        labels = [flare_class_input([f["log10_peak_flux_goes_r"] for f in flares]) for flares in per_image]
        maps = np.stack([flare_map([f["position_px"] for f in flares], [f["log10_peak_flux_goes_r"] for f in flares],
                                   image_size, sigma) for flares in per_image])
        return torch.tensor(labels, dtype=torch.float32), with_no_flip_planes(torch.from_numpy(maps), self.unet)

    def class_inputs(self, flare_class) -> tuple[torch.Tensor, list[str]]:
        """UNet class inputs and their labels for a request (see ``__call__``'s ``flare_class``)."""
        if self.conditioning == "class":
            ids = self.label_ids(flare_class)
            return torch.tensor(ids, dtype=torch.long), [self.id2label[i] for i in ids]
        if isinstance(flare_class, (str, float, np.floating)):
            flare_class = [flare_class]
        fluxes = []
        for item in flare_class:
            try:
                fluxes.append(requested_flux(item))
            except ValueError:
                raise ValueError(
                    f"this model is conditioned on the GOES peak flux: ask for a class such as 'M2.5' or 'X', "
                    f"or a GOES-R flux in W m^-2, not {item!r}"
                ) from None
        values = flux_class_input(torch.log10(torch.tensor(fluxes, dtype=torch.float64))).float()
        return values, [format_flare_class(convert_flux_scale(f, GOES_R_SCALE, SWPC_SCALE)) for f in fluxes]

    @property
    def normalization(self) -> ClipLogNormalization:
        """The model's invertible normalisation (its ``unit`` is the data unit of ``"data_unit"`` output)."""
        return ClipLogNormalization.from_dict(self.config.normalization)

    def label_ids(self, flare_class) -> list[int]:
        """Class ids for a label ("X", "quiet"), a full class ("M2.5" -> "M"), an id, or a list.

        Raises ``ValueError`` naming the labels the model knows if one is unknown.
        """
        if isinstance(flare_class, (str, int, np.integer)):
            flare_class = [flare_class]
        label2id = {label: i for i, label in self.id2label.items()}
        ids = []
        for item in flare_class:
            if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                if item not in self.id2label:
                    raise ValueError(f"class id {item} is not one of {sorted(self.id2label)} ({self._known()})")
                ids.append(int(item))
                continue
            label = str(item).strip()
            if label.lower() == QUIET_LABEL:
                label = QUIET_LABEL
            elif label not in label2id:
                try:
                    label = flare_letter(parse_flare_class(label))
                except ValueError:
                    pass
            if label not in label2id:
                raise ValueError(f"this model does not know the flare class {item!r}; {self._known()}")
            ids.append(label2id[label])
        return ids

    def _known(self) -> str:
        return "it knows: " + ", ".join(self.id2label.values())

    @property
    def is_distilled(self) -> bool:
        """A distilled student (``training/distill.py``): its guidance is built into one UNet call."""
        return (self.config.get("distillation") or {}).get("guidance_scale") is not None

    def guidance_setting(self, guidance_scale: float | None = None, by_flux: bool = True) -> float | None:
        """The one guidance decision: the scale of a call, or None where each image's scale comes
        from the model's ``guidance_by_flux`` table.

        The scale given; else a distilled student's own (a student refuses another); else None
        for a flare model with a table (unless ``by_flux`` is False: one scale for every request,
        as distillation builds in); else ``DEFAULT_GUIDANCE``.

        >>> from diffusers import DDPMScheduler, UNet2DModel
        >>> unet = UNet2DModel(sample_size=8, block_out_channels=(8, 8), norm_num_groups=4, num_class_embeds=2,
        ...                    down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
        >>> pipe = SolarFlarePipeline(unet, DDPMScheduler(), id2label={0: "X"})
        >>> pipe.guidance_setting(), pipe.guidance_setting(1.5)
        (3.0, 1.5)
        """
        if guidance_scale is not None and not math.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale}")
        distillation = self.config.get("distillation") or {}
        built_in = distillation.get("guidance_scale")
        if guidance_scale is not None and built_in is not None and not math.isclose(guidance_scale, built_in):
            raise ValueError(f"this distilled model has guidance {built_in:g} built in, so it cannot sample with "
                             f"guidance {guidance_scale:g}: leave the guidance out or use its teacher "
                             f"({distillation.get('teacher', 'the model it was distilled from')})")
        if guidance_scale is None and built_in is None and by_flux and self.config.get("guidance_by_flux") \
                and self.conditioning == "flare":
            return None
        return float(next(s for s in (guidance_scale, built_in, DEFAULT_GUIDANCE) if s is not None))

    def guidance_scales(self, guidance_scale: float | None = None, flares_per_image: list | None = None,
                        batch_size: int = 1) -> list[float]:
        """Each image's guidance scale under ``guidance_setting``: from the model's table by each
        image's requested flares (``flares_per_image``), else one scale for every image. Without
        ``flares_per_image``: ``batch_size`` copies of the one scale distillation builds in.

        >>> from diffusers import DDPMScheduler, UNet2DModel
        >>> unet = UNet2DModel(sample_size=8, block_out_channels=(8, 8), norm_num_groups=4, num_class_embeds=2,
        ...                    down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
        >>> SolarFlarePipeline(unet, DDPMScheduler(), id2label={0: "X"}).guidance_scales(1.5, batch_size=2)
        [1.5, 1.5]
        """
        setting = self.guidance_setting(guidance_scale, by_flux=flares_per_image is not None)
        if setting is None:
            return guidance_by_flux(self.config.guidance_by_flux, flares_per_image)
        return [setting] * (batch_size if flares_per_image is None else len(flares_per_image))

    def inference_steps(self, num_inference_steps: int | None = None) -> int:
        """The number of denoising steps a call makes: the one given, else a distilled student's
        own, else ``DEFAULT_STEPS``."""
        if num_inference_steps is not None and num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        distillation = self.config.get("distillation") or {}
        return int(num_inference_steps or distillation.get("num_inference_steps") or DEFAULT_STEPS)

    @torch.no_grad()
    def __call__(
        self,
        flare_class="X",
        num_images_per_class: int = 1,
        guidance_scale: float | None = None,
        num_inference_steps: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        flare_position=None,
        flares=None,
        novelty_target: float | None = None,
        image_size: int | None = None,
    ) -> SolarFlarePipelineOutput | tuple:
        r"""Generate images of the given flare class(es).

        Args:
            flare_class: a label ("X", "quiet"), a full class ("M2.5" means its letter), a class
                id, or a list of these; each gets ``num_images_per_class`` images, in order. For a
                flux-conditioned model: a class ("M2.5", SWPC scale; a bare letter is the centre
                of its decade) or a GOES-R flux in W m^-2 (see ``requested_flux``).
            num_images_per_class: images per entry of ``flare_class``.
            guidance_scale: classifier-free guidance weight; 1 is the plain conditional model,
                0 the unconditional one. Guided steps make one batched UNet call. Default: the
                model's own, per image (``guidance_scales``).
            num_inference_steps: denoising steps of the scheduler (default: ``inference_steps``).
            generator: a ``torch.Generator``, or one per image (image i is then reproducible on
                its own from its generator's seed).
            output_type: as in diffusers, ``"pil"`` (the default: 8-bit preview images, north up),
                ``"np"`` (NHWC float32 in [0, 1]) or ``"pt"`` (NCHW tensor in [0, 1]); and
                ``"model"`` (NCHW tensor in model space [-1, 1], what the UNet works in) or
                ``"data_unit"`` (NCHW float32 numpy in the data unit, the inverse normalisation:
                DN/s, or 8-bit browse brightness). Every array output is in FITS row order (row 0
                is the south edge); only ``"pil"`` is flipped north up, like the CLI's PNG files.
            return_dict: return a ``SolarFlarePipelineOutput`` rather than ``(images, metadata)``.
            flare_position: for a flare model (``conditioning == "flare"``), where the flare of
                each ``flare_class`` entry is: helioprojective ``(x, y)`` in arcsec, ``("px", x, y)``
                in pixels, or a NOAA location ("S15W01") or ``SkyCoord``, seen from Earth at the
                model's nominal date (these two need the solar-diffusion package: see
                ``prepare_position``); None draws a training flare's position per image; a list of
                these, one per ``flare_class`` entry.
            flares: for a flare model, several flares in each image instead: a list of
                ``(flare_class, position)`` pairs (see ``flare_request``).
            novelty_target: how far the novelty guidance keeps the image's layout from the
                nearest training frame's while the noise is high, in day distances (see
                ``novelty_push``); 0 turns it off. Default: the model's own (``novelty_setting``).
            image_size: the output size: the base model's, or a cascade's upscaler's (the default
                of a model with an upscaler: the base image is then super-resolved, ``super_resolve``).

        Example:

        ```py
        >>> import torch
        >>> from solar_diffusion import SolarFlarePipeline, build_unet
        >>> from diffusers import DDPMScheduler
        >>> pipe = SolarFlarePipeline(build_unet("tiny", sample_size=16, num_labels=2),
        ...                           DDPMScheduler(), id2label={0: "C", 1: "X"})
        >>> pipe.set_progress_bar_config(disable=True)
        >>> out = pipe("X", num_images_per_class=2, num_inference_steps=2,
        ...            generator=torch.Generator().manual_seed(0), output_type="data_unit")
        >>> out.images.shape, out.metadata[0]["flare_class"], out.metadata[0]["unit"]
        ((2, 1, 16, 16), 'X', 'DN/s')

        ```
        """
        # 1. check the inputs and settle the defaults
        self.check_inputs(output_type, num_images_per_class, flare_position, flares, image_size)
        num_inference_steps = self.inference_steps(num_inference_steps)
        novelty_target = self.novelty_setting(novelty_target)
        device = self._execution_device

        # 2. the conditions: class inputs, flare maps and names of every image
        conditions = self.prepare_conditions(flare_class, num_images_per_class, flare_position, flares, generator)
        conditions.class_inputs = conditions.class_inputs.to(device)
        if conditions.flare_maps is not None:
            conditions.flare_maps = conditions.flare_maps.to(device)

        # 3. each image's guidance scale, and the novelty guidance
        scales = self.guidance_scales(guidance_scale, conditions.flares, len(conditions))
        novelty = self.prepare_novelty(novelty_target, conditions.flares, len(conditions), device)

        # 4. Gaussian noise, then the denoising loop
        image = self.prepare_noise(len(conditions), generator, device)
        image = self.denoise(image, conditions, scales, novelty, num_inference_steps, generator)

        # 5. a cascade's super-resolution stage (a forecast model's flares are still to come, none is
        # in progress: the upscaler's flare maps are empty), then postprocess
        if self.output_size(image_size) != image.shape[-1]:
            flares = conditions.flares
            if self.config.get("forecast") and flares is not None:
                flares = [[] for _ in flares]
            image = self.super_resolve(image, flares, generator)
        images = self.postprocess(image, output_type, scales)
        metadata = self._metadata(conditions, scales, novelty_target, generator, output_type, image.shape[-1])
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, metadata
        return SolarFlarePipelineOutput(images=images, metadata=metadata)

    def output_size(self, image_size: int | None = None) -> int:
        """The size of a call's images: the one asked for (the base model's or its upscaler's),
        else the model's default: ``upscaling["default_image_size"]`` where set, else the upscaler's
        where the model has one (a cascade), else the base model's."""
        sizes = [self.unet.config.sample_size] + ([self.upscaler.config.sample_size] if self.upscaler else [])
        if image_size is not None and image_size not in sizes:
            raise ValueError(f"this model makes {' or '.join(map(str, sizes))} px images, not {image_size} px")
        default = (self.config.get("upscaling") or {}).get("default_image_size", sizes[-1])
        return default if image_size is None else image_size

    @torch.no_grad()
    def super_resolve(self, low: torch.Tensor, flares: list | None = None, generator=None,
                      noise_level: float | None = None, num_inference_steps: int | None = None) -> torch.Tensor:
        """Model-space images (N, C, h, w) at the base model's size (generated, or real frames
        normalised), taken to the upscaler's size: the residual sampled from noise (predicted in one
        pass by a regression upscaler, ``upscaling["objective"] == "regression"``) beside the
        upsampled image with ``noise_level`` of noise added (default: the model's ``upscaling``),
        and a flare model's flares (``flare_request`` dicts per image; None: no flare information).
        A further stage chains the same way: the next pipeline's ``super_resolve`` of this output.
        """
        if self.upscaler is None:
            raise ValueError("this model has no upscaler: it makes only "
                             f"{self.unet.config.sample_size} px images")
        settings, size = self.config.upscaling, self.upscaler.config.sample_size
        noise_level = float(settings.get("noise_level", UPSCALER_NOISE_LEVEL) if noise_level is None else noise_level)
        low = low.float()
        augmented = low + noise_level * randn_tensor(low.shape, generator=generator, device=low.device, dtype=low.dtype)
        maps = self.upscaler_maps(flares, len(low), low.shape[-1], low.device)
        levels = torch.full((len(low),), float(noise_level_input(noise_level)), device=low.device)
        shape = (len(low), low.shape[1], size, size)
        with torch.inference_mode():
            if settings.get("objective") == "regression":
                model_input = upscaler_input(torch.zeros(shape, device=low.device), upsample(augmented, size), maps)
                residual = self.upscaler(model_input.to(self.upscaler.dtype), 0, class_labels=levels).sample.float()
            else:
                residual = self.sample_residual(shape, upsample(augmented, size), maps, levels, generator,
                                                num_inference_steps or settings.get("num_inference_steps"))
        return (upsample(low, size) + float(settings["residual_std"]) * residual).clamp(-1.0, 1.0)

    def sample_residual(self, shape, low_upsampled, maps, levels, generator, num_inference_steps: int | None):
        """The upscaler's reverse process: the standardised residual, from noise, beside the
        (noise-augmented) upsampled base image and the flare maps."""
        scheduler = self.upscaler_scheduler
        residual = randn_tensor(shape, generator=generator, device=low_upsampled.device,
                                dtype=torch.float32) * scheduler.init_noise_sigma
        scheduler.set_timesteps(num_inference_steps or DEFAULT_STEPS, device=low_upsampled.device)
        step_kwargs = scheduler_step_kwargs(scheduler, generator)
        for t in self.progress_bar(scheduler.timesteps):
            model_input = upscaler_input(scheduler.scale_model_input(residual, t), low_upsampled, maps)
            prediction = self.upscaler(model_input.to(self.upscaler.dtype), t, class_labels=levels).sample.float()
            residual = scheduler.step(prediction, t, residual, **step_kwargs).prev_sample
        return residual

    def upscaler_maps(self, flares, batch_size: int, low_size: int, device) -> torch.Tensor | None:
        """A flare model's flare maps at the upscaler's size: each image's flares (positions in
        pixels of ``low_size``), or all zeros (no flare information) without ``flares``."""
        if self.upscaler.config.in_channels == 2 * self.upscaler.config.out_channels:
            return None
        size = self.upscaler.config.sample_size
        if flares is None:
            return torch.zeros(batch_size, FLARE_MAP_CHANNELS, size, size, device=device)
        sigma = FLARE_MAP_SIGMA_RSUN * rsun_px(self.config.geometry, size)
        maps = [flare_map([rescale_px(np.asarray(f["position_px"]), low_size, size) for f in image_flares],
                          [f["log10_peak_flux_goes_r"] for f in image_flares], size, sigma) for image_flares in flares]
        return torch.from_numpy(np.stack(maps)).to(device)

    def check_inputs(self, output_type: str, num_images_per_class: int, flare_position=None, flares=None,
                     image_size: int | None = None):
        """Refuse a request this pipeline cannot make, before any work, with a one-line error."""
        self.output_size(image_size)
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(map(repr, OUTPUT_TYPES))}, got {output_type!r}")
        if num_images_per_class < 1:
            raise ValueError(f"num_images_per_class must be >= 1, got {num_images_per_class}")
        if self.conditioning != "flare" and (flare_position is not None or flares is not None):
            raise ValueError(f"this model is {self.conditioning}-conditioned: it takes no flare positions")

    def prepare_conditions(self, flare_class, num_images_per_class: int = 1, flare_position=None, flares=None,
                           generator=None) -> Conditions:
        """Every image's conditions (see ``__call__`` for the arguments), in order: a flare model's
        flares are placed (positions drawn from each image's generator where none is given) and
        drawn as flare maps; a class or flux model's requests become class inputs."""
        if self.conditioning != "flare":
            class_inputs, names = self.class_inputs(flare_class)
            class_inputs = class_inputs.repeat_interleave(num_images_per_class)
            self._check_generators(generator, len(class_inputs))
            return Conditions(class_inputs, None, [n for n in names for _ in range(num_images_per_class)], None)
        entries = [flare_class] if isinstance(flare_class, (str, float, np.floating)) else list(flare_class)
        per_entry = (isinstance(flare_position, list) and len(flare_position) == len(entries)
                     and all(p is None or isinstance(p, (tuple, list, str)) or hasattr(p, "frame")
                             for p in flare_position))
        positions = flare_position if per_entry else [flare_position] * len(entries)
        requests = [list(flares)] if flares is not None else [[(e, p)] for e, p in zip(entries, positions)]
        requests = [[(c, self.prepare_position(p)) for c, p in request] for request in requests]  # once per request
        batch_size = len(requests) * num_images_per_class
        self._check_generators(generator, batch_size)
        rngs = ([np.random.default_rng(g.initial_seed()) for g in generator] if isinstance(generator, list)
                else [np.random.default_rng(None if generator is None else generator.initial_seed())] * batch_size)
        size = self.unet.config.sample_size
        size = size if isinstance(size, int) else size[-1]
        per_image = [self.flare_request(request, size, rngs[k * num_images_per_class + i])
                     for k, request in enumerate(requests) for i in range(num_images_per_class)]
        class_inputs, maps = self.flare_inputs(per_image, size)
        names = [", ".join(f["flare_class"] for f in image_flares) or QUIET_LABEL for image_flares in per_image]
        return Conditions(class_inputs, maps, names, per_image)

    def prepare_position(self, position):
        """A flare position as ``flare_request`` takes it: helioprojective ``(x, y)`` arcsec,
        ``("px", x, y)`` and None pass as they are; a NOAA location ("S15W01"), text as
        ``--flare-position`` writes it or a ``SkyCoord`` is converted by the solar-diffusion
        package's one sunpy conversion (``solar_diffusion.positions.model_position``), seen from
        Earth at the model's nominal date. This file alone (a Hub ``pipeline.py`` without the
        package) takes arcsec and pixels only."""
        if not (isinstance(position, str) or hasattr(position, "frame")):
            return position
        try:  # the one import of the package from this file: sunpy, only for these positions
            from solar_diffusion.positions import model_position
        except ImportError:
            described = " ".join(repr(position).split())  # a SkyCoord's repr spans lines
            raise ValueError(f"a flare position given as a NOAA location or SkyCoord ({described}) "
                             "needs the solar-diffusion package (sunpy): install it, or pass helioprojective arcsec "
                             "(x, y) or ('px', x, y)") from None
        return model_position(position, self.config.geometry)

    def prepare_novelty(self, novelty_target: float, flares_per_image, batch_size: int, device) -> NoveltyGuidance | None:
        """The novelty guidance of a call (None when ``novelty_target`` is 0)."""
        if not novelty_target:
            return None
        novelty = self.config.novelty
        size = self.unet.config.sample_size
        regions, off_flares = (torch.from_numpy(w).to(device) for w in self._novelty_weights(
            flares_per_image, batch_size, size if isinstance(size, int) else size[-1]))
        return NoveltyGuidance(novelty_target, layouts_tensor(novelty).to(device),
                               novelty_target * float(novelty["day_distance"]), float(novelty["max_push"]),
                               int(novelty["until_timestep"]), regions, off_flares)

    def prepare_noise(self, batch_size: int, generator, device) -> torch.Tensor:
        """The starting Gaussian noise (float32 whatever the UNet's dtype: the latents and the
        scheduler's arithmetic stay float32 under bf16/fp16)."""
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        shape = (batch_size, self.unet.config.out_channels or self.unet.config.in_channels, *size)
        return randn_tensor(shape, generator=generator, device=device, dtype=torch.float32) * self.scheduler.init_noise_sigma

    def denoise(self, image, conditions: Conditions, scales: list, novelty: NoveltyGuidance | None,
                num_inference_steps: int, generator=None) -> torch.Tensor:
        """The denoising loop from noise ``image``: classifier-free guidance batched into one UNet
        call per step (the null condition's flare map is all zeros: no flare, "not conditioned");
        a distilled student's one conditional call holds its guidance."""
        do_guidance = any(g != 1.0 for g in scales) and not self.is_distilled
        class_inputs, maps = conditions.class_inputs, conditions.flare_maps
        if do_guidance:
            class_inputs = torch.cat([torch.full_like(class_inputs, null_condition(self.unet.config)), class_inputs])
            maps = None if maps is None else torch.cat([torch.zeros_like(maps), maps])
        guidance = torch.tensor(scales, device=image.device).view(-1, 1, 1, 1)
        self.scheduler.set_timesteps(num_inference_steps, device=image.device)
        step_kwargs = scheduler_step_kwargs(self.scheduler, generator)
        with torch.inference_mode():
            for t in self.progress_bar(self.scheduler.timesteps):
                model_input = self.scheduler.scale_model_input(torch.cat([image] * 2) if do_guidance else image, t)
                model_input = with_flare_map(model_input, maps).to(self.unet.dtype)
                prediction = self.unet(model_input, t, class_labels=class_inputs).sample.float()
                if do_guidance:
                    prediction = apply_guidance(*prediction.chunk(2), guidance)
                if novelty is not None:
                    prediction = novelty(prediction, image, t, self.scheduler.alphas_cumprod,
                                         self.scheduler.config.prediction_type)
                image = self.scheduler.step(prediction, t, image, **step_kwargs).prev_sample
        return image

    def postprocess(self, image: torch.Tensor, output_type: str, scales: list):
        """Model-space images (N, C, H, W) as ``output_type`` (outside inference mode: ordinary
        tensors, usable in training); a NaN or Inf image is an error, never an output."""
        bad = (~torch.isfinite(image)).flatten(1).any(dim=1)
        if bad.any():  # never hand on a NaN image: clamping would keep the NaN, a PNG would show it black
            raise RuntimeError(f"{int(bad.sum())} of {len(image)} generated images hold NaN or Inf values: the UNet's "
                               f"weights may be corrupt (reload or re-download the model) or its precision too low "
                               f"for guidance up to {max(scales):g}")
        image = image.float().clamp(-1.0, 1.0).contiguous()
        if output_type == "model":
            return image
        if output_type == "pt":
            return image / 2 + 0.5
        if output_type == "data_unit":
            return self.normalization.inverse(image).cpu().numpy().astype(np.float32)
        images = image.cpu().permute(0, 2, 3, 1).numpy() / 2 + 0.5  # NHWC in [0, 1]
        return self.numpy_to_pil(north_up(images, row_axis=1)) if output_type == "pil" else images

    @staticmethod
    def _check_generators(generator, batch_size: int):
        """Refuse a list of generators that is not one per image."""
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"got {len(generator)} generators for {batch_size} images: give one per image")

    def novelty_setting(self, novelty_target) -> float:
        """The novelty guidance a call uses: the one given, else the model's default where the
        model keeps training layouts and the scheduler's sample is the noisy image (else 0)."""
        novelty = self.config.get("novelty") or {}
        supported = hasattr(self.scheduler, "alphas_cumprod") and float(self.scheduler.init_noise_sigma) == 1.0
        if novelty_target is None:
            return float(novelty.get("target", 0.0)) if novelty and supported else 0.0
        if not math.isfinite(novelty_target) or novelty_target < 0:
            raise ValueError(f"novelty_target must be a finite number >= 0, got {novelty_target}")
        if novelty_target and not novelty:
            raise ValueError("this model keeps no training layouts, so it has no novelty guidance: add them with "
                             "`solar-diffusion novelty --model DIR --dataset DIR`, or leave novelty_target out")
        if novelty_target and not supported:
            raise ValueError(f"novelty guidance needs a scheduler whose sample is the noisy image (DDPM, DDIM, "
                             f"DPM-Solver, UniPC), not {type(self.scheduler).__name__}")
        return float(novelty_target)

    def _novelty_weights(self, per_image_flares, batch_size: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The masks of the novelty guidance: its regions (1, R, size, size: the solar disk to 1.02
        R_sun and the corona beyond it; one region, the whole image, without a geometry), and
        (N, 1, size, size) the image less ``NOVELTY_FLARE_RADIUS_RSUN`` around each requested flare."""
        geometry = self.config.geometry
        off_flares = np.ones((batch_size, 1, size, size), dtype=np.float32)
        if not geometry or "fov_rsun" not in geometry:
            return np.ones((1, 1, size, size), dtype=np.float32), off_flares
        radius, center = rsun_px(geometry, size), disk_center_px(geometry, size)
        disk = disk_mask(size, radius, 1.02, center).astype(np.float32)
        yy, xx = np.mgrid[:size, :size]
        for k, flares in enumerate(per_image_flares or []):
            for flare in flares:
                x, y = flare["position_px"]
                off_flares[k, 0][np.hypot(xx - x, yy - y) <= NOVELTY_FLARE_RADIUS_RSUN * radius] = 0.0
        return np.stack([disk, 1.0 - disk])[None], off_flares

    def _metadata(self, conditions: Conditions, scales: list, novelty_target: float, generator,
                  output_type: str, size: int) -> list[dict]:
        """Each image's record: its name, conditioning and class input, seed, unit, geometry, the
        guidance it was made with and a flare model's flares."""
        generators = generator if isinstance(generator, list) else [generator] * len(conditions)
        unit = {"data_unit": self.normalization.unit, "model": "model space [-1, 1]"}.get(output_type, "preview [0, 1]")
        records = [
            {
                "flare_class": name,
                "conditioning": self.conditioning,
                "class_input": class_input,
                "seed": None if g is None else int(g.initial_seed()),
                "per_image_seed": isinstance(generator, list),
                "unit": unit,
                "geometry": geometry_at(self.config.geometry, size),
                "novelty_target": novelty_target,
                "guidance_scale": float(scale),
            }
            for name, class_input, g, scale in zip(conditions.names, conditions.class_inputs.tolist(), generators, scales)
        ]
        if self.config.get("forecast"):  # the flares asked for peak within the horizon after the image
            for record in records:
                record["forecast"] = dict(self.config.forecast)
        base = self.unet.config.sample_size
        for record, image_flares in zip(records, conditions.flares or []):  # positions in pixels of the output
            record["flares"] = image_flares if size == base else [
                dict(f, position_px=[float(rescale_px(p, base, size)) for p in f["position_px"]]) for f in image_flares]
        return records
