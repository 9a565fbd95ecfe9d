"""Train the class-conditional DDPM of SolarFlarePipeline on a dataset made by ``build-dataset``.

Launch with accelerate (one CPU, GPUs, nodes; see ``training/accelerate_configs``)::

    accelerate launch training/train_ddpm.py --dataset data/aia171-64 --out runs/ddpm
    solar-diffusion train --dataset data/aia171-64 --out runs/ddpm      # same flags

Labels drop to the null class with probability ``--label-dropout`` for classifier-free guidance.
Checkpoints (``checkpoint-<step>``) hold model, EMA, optimiser, LR schedule and RNG states, so
``--resume-from-checkpoint latest`` continues exactly as an uninterrupted run would. The end
result is a saved pipeline (``save_pretrained`` + ``pipeline.py`` + model card) with its
normalisation, data unit, geometry and ``id2label``.

The UNet predicts v (``--prediction-type v_prediction``) by default, not the paper's noise
(epsilon). At the noisiest steps sqrt(alpha_bar) is about 0.006 with T = 1000 linear betas, so an
epsilon model's x0 estimate divides its error by 0.006: a tiny error in the predicted noise's
mean becomes the image's mean brightness, which nothing later corrects. Full-disk images, two
thirds dark sky around one bright disk, show it at once: the bundled model's epsilon version
drew 94% of its images with a mean brightness outside the range of 99% of real frames after
5,500 steps; 250 steps of v-prediction fine-tuning from it brought them into that range.

Augmentations are opt-in and never leak into the images: small rotations about disk centre
(``--augment-rotation`` degrees, like the P-angle and roll uncertainty), small brightness
changes (``--augment-brightness``, like exposure and degradation differences), and flips
(``--augment-flips``). A flip alone would teach the model a Sun that rotates the wrong way (an
east-west flip reverses the leading/trailing order of active regions; a north-south flip swaps
the hemispheres and the visible pole), so each flip is given to the UNet as
``AUGMENTATION_PLANES`` input planes and sampling asks for none (``random_flips``). A flare
model can also swap hemispheres (``--augment-hemispheres``): a frame keeps the hemisphere with its
flares and takes the other from a flare-free frame of the batch, a Sun that could have been seen
(the hemispheres' activity is close to independent), so 181 days give many more layouts to learn
and fewer whole days to redraw (``random_hemisphere_swap``). It can also see a frame up to two
days earlier or later (``--augment-solar-rotation``): the disk turned by the Sun's
differential rotation and the flare map with it, so a flare's position no longer names its
training day (``random_solar_rotation``).

``--dataset`` takes a training pack (``solar-diffusion pack``) too, which needs neither
``datasets`` nor sunpy: the way onto an offline GPU node (``training/offline_gpu.sh``). Batches
leave the loader as stored (uint8 for browse frames; pinned on a GPU) and are normalised on the
accelerator; on CUDA the UNet and batches are channels-last; ``--mixed-precision bf16`` autocasts,
``--compile`` compiles, ``--scale-lr`` scales the learning rate to the total batch.
``--max-train-minutes`` is a wall-clock budget: the run stops in time, checkpointed, with its
pipeline saved. Images/s is logged and written, with the run's other numbers, to
``train_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from solar_diffusion import null_condition
from solar_diffusion.files import atomic_write, fault_point
from solar_diffusion.pipelines import (AUGMENTATION_PLANES, FLARE_MAP_SIGMA_RSUN, NOVELTY_POOL_PX, disk_center_px, rsun_px,
                                      with_flare_map)
from solar_diffusion.splits import (TRAINING_COLUMNS, dataset_argument, dataset_geometry, dataset_info, image_dtype,
                                    load_split)
from solar_diffusion.training.data import (BalancedSampler, Collate, random_flips, random_hemisphere_swap,
                                           random_solar_rotation)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, type=dataset_argument,
                   help="folder made by solar-diffusion build-dataset, or a training pack (solar-diffusion pack)")
    p.add_argument("--config-name", default=None, help="dataset config (default: the dataset's default)")
    p.add_argument("--out", dest="output_dir", required=True, help="output folder of the run")
    p.add_argument("--preset", default="small", help="UNet preset: tiny, small or paper")
    p.add_argument("--conditioning", default="class", choices=["class", "flux", "flare"],
                   help="GOES labels (class), or the continuous log10 peak flux (flux: the flare's peak flux, "
                        "else the XRS flux at the frame's time, else the null value)")
    p.add_argument("--init-from", default=None,
                   help="start from the UNet of a saved pipeline (fine-tuning, or continuing from bundled weights)")
    p.add_argument("--upscaler-from", default=None, metavar="CASCADE",
                   help="the saved model takes this cascade's super-resolution stage (upscaler, its sampler and "
                        "settings) and makes its sizes: a forecast model on the bundled upscaler")
    p.add_argument("--size", dest="size", type=int, default=None,
                   help="image size in pixels to train at (default: the dataset's)")
    p.add_argument("--norm-lo", type=float, default=None, help="normalisation clip low (default 5 DN/s; 0 for browse)")
    p.add_argument("--norm-hi", type=float, default=None, help="normalisation clip high (default 3500 DN/s; 255)")
    p.add_argument("--train-batch-size", type=int, default=16, help="frames per batch on each process")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1, help="batches per optimiser step")
    p.add_argument("--learning-rate", type=float, default=2e-4, help="at a total batch of 16 if --scale-lr is given")
    p.add_argument("--scale-lr", nargs="?", const="sqrt", default="none", choices=["none", "sqrt", "linear"],
                   help="scale --learning-rate to the total batch B (per device x accumulation x processes): sqrt "
                        "(the flag alone) multiplies by sqrt(B/16), Adam's square-root rule; linear by B/16")
    p.add_argument("--lr-scheduler", default="cosine", help="constant, linear, cosine, ... (diffusers get_scheduler)")
    p.add_argument("--lr-warmup-steps", type=int, default=200, help="optimiser steps of linear learning-rate warm-up")
    p.add_argument("--max-train-steps", type=int, default=10000, help="optimiser steps of the whole run")
    p.add_argument("--stop-at-step", type=int, default=None,
                   help="end this run at this step (checkpointed), keeping the schedule of --max-train-steps")
    p.add_argument("--max-train-minutes", type=float, default=None,
                   help="wall-clock budget of this run, counted from its start: no step starts that would end after "
                        "it; the run then checkpoints and writes the final pipeline as at --max-train-steps")
    p.add_argument("--adam-weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    p.add_argument("--label-dropout", type=float, default=0.1, help="probability of the null class (guidance)")
    p.add_argument("--class-balance", type=float, default=0.0,
                   help="sample frames with weight count(label)^-b: 0 = as in the data, 1 = classes equally often")
    p.add_argument("--num-train-timesteps", type=int, default=1000, help="timesteps of the training noise schedule")
    p.add_argument("--beta-schedule", default="linear", help="linear (the paper), scaled_linear, squaredcos_cap_v2")
    p.add_argument("--prediction-type", default="v_prediction", choices=["epsilon", "v_prediction"],
                   help="v_prediction (default) or epsilon (the paper's; leaves each image's mean brightness "
                        "uncontrolled on full-disk images, see the module docstring)")
    p.add_argument("--snr-gamma", type=float, default=None, help="min-SNR loss weighting gamma (e.g. 5)")
    p.add_argument("--use-ema", action="store_true", help="keep an EMA of the weights (saved as the model)")
    p.add_argument("--ema-max-decay", type=float, default=0.9999, help="largest decay of the exponential moving average of the weights")
    p.add_argument("--mixed-precision", default=None, choices=["no", "fp16", "bf16"],
                   help="autocast precision (accelerate); bf16 on a GPU that has it (default: accelerate's config)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the UNet (accelerate's inductor backend): a slow first step, faster ones after")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="UNet weights and batches in channels-last memory format (default: on a CUDA GPU)")
    p.add_argument("--checkpointing-steps", type=int, default=500, help="save a checkpoint every this many optimiser steps")
    p.add_argument("--checkpoints-total-limit", type=int, default=2, help="checkpoints kept (the oldest are removed)")
    p.add_argument("--resume-from-checkpoint", default=None, help="a checkpoint folder or 'latest'")
    p.add_argument("--validation-steps", type=int, default=500, help="validation loss every N steps (0: never)")
    p.add_argument("--sample-steps", type=int, default=1000, help="per-class sample grid every N steps (0: never)")
    p.add_argument("--logger", default="tensorboard", choices=["tensorboard", "none"], help="where the losses are logged besides losses.jsonl")
    p.add_argument("--dataloader-num-workers", type=int, default=0,
                   help="loader worker processes (0: batches made in the training process; a pack's frames are "
                        "decoded in memory and batched as stored, so few are needed)")
    p.add_argument("--logging-steps", type=int, default=10,
                   help="log loss, learning rate and images/s every N steps (every step's loss goes to losses.jsonl; "
                        "reading it only every N steps lets a GPU run ahead)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout in the UNet's residual blocks while training (0: none): a regulariser against "
                        "redrawing the training frames, which a few hundred days invite")
    p.add_argument("--augment-rotation", type=float, default=0.0, help="max rotation about disk centre, degrees")
    p.add_argument("--augment-brightness", type=float, default=0.0, help="max relative brightness change")
    p.add_argument("--augment-flips", type=float, default=0.0,
                   help="probability of an east-west and of a north-south flip of a frame and its flare map, "
                        "given to the UNet as a condition that sampling sets to 'no flip' (0: no flips)")
    p.add_argument("--augment-hemispheres", type=float, default=0.0,
                   help="probability that a frame's hemisphere without its flares is replaced by that of a "
                        "flare-free frame of the batch (a flare model only; 0: never): new layouts, fewer copied days")
    p.add_argument("--augment-solar-rotation", type=float, default=0.0,
                   help="probability that a frame is seen up to 2 days earlier or later: its disk turned by "
                        "differential rotation, its flare map with it (a flare model only; 0: never)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, the batches and the noise")
    p.add_argument("--push-to-hub", action="store_true", help="push the trained pipeline to the Hub (needs a token)")
    p.add_argument("--hub-model-id", default=None, help="the Hub repo to push to, owner/name (default: the output folder's name)")
    p.add_argument("--hub-private", action="store_true", help="make the Hub repo private")
    return p


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------


def diffusion_loss(unet, scheduler, x0, labels, prediction_type, null=None, label_dropout=0.0, snr_gamma=None,
                   flare_maps=None, augmentation=None):
    """One DDPM training loss: noise, label dropout to the ``null`` condition (``null_condition``;
    a flare model's ``flare_maps`` drop to the empty map with it), (min-SNR weighted) MSE. The
    ``augmentation`` planes (``random_flips``) follow the maps and never drop: the unconditional
    model is told of the flips too."""
    from diffusers.training_utils import compute_snr

    noise = torch.randn_like(x0)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
    if label_dropout:
        drop = torch.rand(labels.shape, device=labels.device) < label_dropout
        labels = torch.where(drop, torch.full_like(labels, null), labels)
        if flare_maps is not None:  # the null condition's map is empty
            flare_maps = flare_maps * (~drop).to(flare_maps.dtype)[:, None, None, None]
    noisy = scheduler.add_noise(x0, noise, t)
    target = noise if prediction_type == "epsilon" else scheduler.get_velocity(x0, noise, t)
    if augmentation is not None:
        flare_maps = augmentation if flare_maps is None else torch.cat([flare_maps, augmentation], dim=1)
    pred = unet(with_flare_map(noisy, flare_maps), t, class_labels=labels).sample
    if snr_gamma is None:
        return F.mse_loss(pred.float(), target.float())
    snr = compute_snr(scheduler, t)
    weight = torch.clamp(snr, max=snr_gamma) / (snr if prediction_type == "epsilon" else snr + 1)
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * weight).mean()


def init_from_pipeline(unet, pipeline_dir, id2label, wavelengths=None):
    """Load the UNet weights of a saved pipeline into ``unet``.

    Same preset, size, labels and channels: the weights as saved (fine-tuning, continuing). A
    different conditioning or channel set of the same preset and size (a 171 Å class model into a
    171/131/94 Å flare model): a warm start that computes, at step 0, what the source computes for
    its shared channels with the guidance null class (``transfer_unet_weights``).
    """
    from diffusers import UNet2DModel

    from solar_diffusion import SolarFlarePipeline

    source = Path(pipeline_dir)
    config = SolarFlarePipeline.load_config(str(source))
    pretrained = UNet2DModel.from_pretrained(str(source), subfolder="unet")

    def plain(config, drop=()):  # dropout is training's, not the weights'
        return json.loads(json.dumps({k: v for k, v in config.items()
                                      if not k.startswith("_") and k not in drop and k != "dropout"}))

    labels = {int(k): v for k, v in config.get("id2label", {}).items()}
    same = plain(pretrained.config) == plain(unet.config)
    if labels != id2label and (same or (labels and id2label)):  # class ids must mean the same classes
        raise ValueError(f"{source} was trained on labels {labels}, this dataset has {id2label}")
    if same:
        unet.load_state_dict(pretrained.state_dict())
        return unet
    conditioning_keys = ("in_channels", "out_channels", "num_class_embeds", "class_embed_type")
    if plain(pretrained.config, conditioning_keys) != plain(unet.config, conditioning_keys):
        raise ValueError(f"the UNet in {source} differs from preset/size asked for: compare its unet/config.json")
    source_wavelengths = config.get("geometry", {}).get("wavelengths_angstrom") or [None] * pretrained.config.out_channels
    return transfer_unet_weights(pretrained, unet, source_wavelengths, wavelengths or [None] * unet.config.out_channels)


def transfer_unet_weights(source, unet, source_wavelengths, wavelengths):
    """Warm-start ``unet`` from ``source`` of the same architecture but other channels or conditioning.

    Every tensor of the same name and shape is copied. An image channel of ``unet`` that the source
    has (same wavelength) takes its input and output weights; a new channel reads nothing at first
    (zero input weights) and predicts what the source predicts for its first channel (the disk, the
    limb and the sky are where they are in every EUV channel); extra inputs (a flare map) start at
    zero, unless the source has them too (a flare model warm-starting a flare model with augmentation
    planes keeps its flare map weights). A class embedding of another kind starts at zero weight with the source's null class as its
    bias, so the warm-started model at step 0 is the source's unconditional model on the shared channels.

    >>> from solar_diffusion import build_unet
    >>> src = build_unet("tiny", 16, 5)
    >>> dst = transfer_unet_weights(src, build_unet("tiny", 16, 0, 3, "flare"), [171.0], [171.0, 131.0, 94.0])
    >>> bool((dst.conv_in.weight[:, 0] == src.conv_in.weight[:, 0]).all()), float(dst.conv_in.weight[:, 1:].detach().abs().max())
    (True, 0.0)
    """
    state = unet.state_dict()
    source_state = source.state_dict()
    for name, value in source_state.items():
        if name in state and state[name].shape == value.shape:
            state[name] = value.clone()
    where = {float(w) if w is not None else None: i for i, w in enumerate(source_wavelengths)}
    picks = [where.get(float(w) if w is not None else None) for w in wavelengths]
    if not any(p is not None for p in picks):
        picks[0] = 0  # nothing shared by wavelength: the first channels stand for each other
    state["conv_in.weight"] = torch.zeros_like(state["conv_in.weight"])
    for channel, pick in enumerate(picks):
        if pick is not None:
            state["conv_in.weight"][:, channel] = source_state["conv_in.weight"][:, pick]
        state["conv_out.weight"][channel] = source_state["conv_out.weight"][0 if pick is None else pick]
        state["conv_out.bias"][channel] = source_state["conv_out.bias"][0 if pick is None else pick]
    source_extra = source.config.in_channels - source.config.out_channels  # its flare map (and augmentation planes)
    extra = unet.config.in_channels - unet.config.out_channels
    if 0 < source_extra <= extra:  # the same inputs after the images, in the same order; more start at zero
        state["conv_in.weight"][:, unet.config.out_channels:unet.config.out_channels + source_extra] = \
            source_state["conv_in.weight"][:, source.config.out_channels:]
    state["conv_in.bias"] = source_state["conv_in.bias"].clone()
    if source.config.class_embed_type != unet.config.class_embed_type and unet.config.class_embed_type == "timestep":
        null_vector = source_state["class_embedding.weight"][-1] if source.config.num_class_embeds else 0.0
        state["class_embedding.linear_2.weight"] = torch.zeros_like(state["class_embedding.linear_2.weight"])
        state["class_embedding.linear_2.bias"] = torch.zeros_like(state["class_embedding.linear_2.bias"]) + null_vector
    unet.load_state_dict(state)
    return unet


def check_arguments(args):
    """Refuse values that cannot train before any work: counts below 1, rates and probabilities
    out of range or not finite."""
    for name in ("train_batch_size", "gradient_accumulation_steps", "max_train_steps", "checkpointing_steps",
                 "logging_steps", "num_train_timesteps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("validation_steps", "sample_steps", "lr_warmup_steps", "dataloader_num_workers"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise ValueError(f"--learning-rate must be a positive number, got {args.learning_rate}")
    for name in ("label_dropout",):
        if not 0 <= getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(args, name)}")
    for name in ("augment_flips", "augment_hemispheres", "augment_solar_rotation"):
        if not 0 <= getattr(args, name) <= 1:
            raise ValueError(f"--{name.replace('_', '-')} is a probability in [0, 1], got {getattr(args, name)}")
    if args.augment_solar_rotation and args.conditioning != "flare":
        raise ValueError("--augment-solar-rotation needs --conditioning flare: it fills the limb's ring from "
                         "flare-free frames, which only a flare model's class inputs say")
    if args.augment_hemispheres and args.conditioning != "flare":
        raise ValueError("--augment-hemispheres needs --conditioning flare: it keeps the hemisphere that holds the "
                         "frame's flares, which only a flare model's maps say")
    if args.size is not None and args.size < 8:
        raise ValueError(f"--size must be at least 8 pixels, got {args.size}")
    if args.max_train_minutes is not None and not args.max_train_minutes > 0:
        raise ValueError(f"--max-train-minutes must be a positive number, got {args.max_train_minutes}")


def check_output_dir(output_dir: Path, resume: str | None):
    """A new run never writes over another run's files: a folder holding checkpoints or a saved
    pipeline is continued only with ``--resume-from-checkpoint``, refused otherwise."""
    if resume or not output_dir.exists():
        return
    earlier = sorted(p.name for p in output_dir.iterdir()
                     if p.name.startswith("checkpoint-") or p.name in ("pipeline", "losses.jsonl", "train_summary.json"))
    if earlier:
        raise ValueError(f"--out {output_dir} holds an earlier run ({', '.join(earlier[:3])}): pass "
                         "--resume-from-checkpoint latest to continue it, or choose another --out")


#: The arguments a resumed run must share with its start (``check_run_settings``).
RUN_SETTINGS = ("preset", "conditioning", "size", "norm_lo", "norm_hi", "train_batch_size",
                "gradient_accumulation_steps", "learning_rate", "scale_lr", "lr_scheduler", "lr_warmup_steps",
                "adam_weight_decay", "label_dropout", "class_balance", "num_train_timesteps", "beta_schedule",
                "prediction_type", "snr_gamma", "use_ema", "ema_max_decay", "augment_rotation", "augment_brightness",
                "augment_flips", "augment_hemispheres", "augment_solar_rotation", "dropout", "seed")


def check_run_settings(output_dir: Path, settings: dict, resume: str | None, defaults: dict | None = None) -> None:
    """A resumed run keeps what its checkpoints learnt with: ``settings`` (the arguments that shape
    the model, its data or its optimisation) are written to ``run_settings.json`` when a run starts
    and compared when it resumes; a difference is refused, naming the setting (a run resumed with
    another learning rate or teacher would be neither run). A setting the file lacks (the run
    started before the option existed) was the option's value in ``defaults`` (the parser's);
    without one there it is not compared. Budgets (steps, minutes, checkpointing) may change.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> check_run_settings(out, {"learning_rate": 1e-4}, None)
    >>> check_run_settings(out, {"learning_rate": 2e-4}, "latest")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: --resume-from-checkpoint: the run in ... was made with --learning-rate 0.0001, not 0.0002: resume with the same settings or start another --out
    >>> check_run_settings(out, {"learning_rate": 1e-4, "dropout": 0.1}, "latest", {"dropout": 0.0})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: --resume-from-checkpoint: the run in ... was made with --dropout 0.0, not 0.1: resume with the same settings or start another --out
    """
    path = output_dir / "run_settings.json"
    settings = json.loads(json.dumps(settings))  # as the file holds them (tuples become lists)
    if resume and path.exists():
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise RuntimeError(f"{path} cannot be read ({error}): restore it, or start another --out") from None
        before = json.loads(json.dumps({k: v for k, v in (defaults or {}).items() if k in settings})) | before
        changed = [k for k in settings if k in before and before[k] != settings[k]]
        if changed:
            raise ValueError(f"--resume-from-checkpoint: the run in {output_dir} was made with "
                             + ", ".join(f"--{k.replace('_', '-')} {before[k]}, not {settings[k]}" for k in changed)
                             + ": resume with the same settings or start another --out")
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=1)))


def _checkpoints(output_dir: Path) -> list[Path]:
    return sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def resume_from_checkpoint(accelerator, output_dir: Path, resume: str | None) -> int:
    """Load ``--resume-from-checkpoint`` ("latest" or a checkpoint folder) into the prepared
    objects; returns the step it was saved at (0 with nothing to resume). A checkpoint that cannot
    be read is named with what to do; the losses logged after it are dropped (``trim_losses``)."""
    if not resume:
        return 0
    latest = _checkpoints(output_dir)[-1:] if resume == "latest" else [Path(resume)]
    step = 0
    if not latest:
        accelerator.print("no checkpoint to resume from: starting afresh")
    else:
        path = latest[0]
        try:
            accelerator.load_state(str(path))
        except Exception as error:  # a truncated or corrupt file: name it and what to do
            reason = (str(error).strip().splitlines() or [""])[0]
            raise RuntimeError(f"{path}: the checkpoint cannot be read ({type(error).__name__}: {reason}); "
                               "remove it to resume from the one before, or start afresh in another --out") from None
        step = int(path.name.split("-")[1])
        accelerator.print(f"resumed from {path} at step {step}")
    if accelerator.is_main_process:
        trim_losses(output_dir / "losses.jsonl", step)
    return step


def scaled_learning_rate(learning_rate: float, rule: str, total_batch: int, reference_batch: int = 16) -> float:
    """``--scale-lr``: the learning rate for a total batch, given the one for ``reference_batch``.

    "sqrt" multiplies by sqrt(batch / 16), the square-root rule for Adam-type optimisers (Malladi
    et al. 2022, NeurIPS); "linear" by batch / 16, the rule for SGD (Goyal et al. 2017) that
    diffusers' examples use with ``--scale_lr``; "none" keeps it. 16 is the batch the CPU runs used.

    >>> scaled_learning_rate(2e-4, "sqrt", 256), scaled_learning_rate(2e-4, "linear", 64)
    (0.0008, 0.0008)
    """
    factors = {"none": 1.0, "sqrt": math.sqrt(total_batch / reference_batch), "linear": total_batch / reference_batch}
    if rule not in factors:
        raise ValueError(f"--scale-lr is one of {sorted(factors)}, got {rule!r}")
    return learning_rate * factors[rule]


def train(args, hub_api=None) -> Path:
    """Run training; returns the folder of the saved pipeline (``output_dir/pipeline``)."""
    start = time.monotonic()
    from accelerate import __version__ as accelerate_version
    from diffusers import DDPMScheduler
    from diffusers import __version__ as diffusers_version
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    from solar_diffusion import ClipLogNormalization, SolarFlarePipeline, build_unet, label_vocabulary
    from solar_diffusion.generate import use_scheduler
    from solar_diffusion.hub import model_name, push_to_hub, save_pipeline
    from solar_diffusion.novelty import TooFewDays, split_layouts

    output_dir = Path(args.output_dir)
    check_arguments(args)
    check_output_dir(output_dir, args.resume_from_checkpoint)
    accelerator = make_accelerator(output_dir, args.seed, args.gradient_accumulation_steps, args.mixed_precision,
                                   log_with=None if args.logger == "none" else args.logger, compile_model=args.compile)
    on_gpu = accelerator.device.type == "cuda"
    channels_last = on_gpu if args.channels_last is None else args.channels_last
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    total_batch = args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
    learning_rate = scaled_learning_rate(args.learning_rate, args.scale_lr, total_batch)
    accelerator.print(f"{accelerator.num_processes} x {torch.cuda.get_device_name() if on_gpu else accelerator.device}"
                      f", {accelerator.mixed_precision} precision, total batch {total_batch}, lr {learning_rate:.3g}; "
                      f"torch {torch.__version__}, diffusers {diffusers_version}, accelerate {accelerate_version}")

    # data: the label vocabulary is that of the training split
    info = dataset_info(args.dataset)
    columns = TRAINING_COLUMNS + (("flares",) if args.conditioning == "flare" else ())
    train_ds = load_split(args.dataset, "train", args.config_name, columns=columns)
    names = train_ds.features["flare_class"].names
    present = sorted(set(int(i) for i in train_ds["flare_class"]))
    id2label = label_vocabulary([names[i] for i in present])
    label2id = {v: k for k, v in id2label.items()}
    id_map = {i: label2id[names[i]] for i in present}
    sample_labels = list(id2label.values())
    if args.conditioning in ("flux", "flare"):
        sample_labels = [label for label in id2label.values() if label != "quiet" or args.conditioning == "flare"]
        id2label, id_map = {}, None
    unit = info["unit"]
    default_norm = ClipLogNormalization.for_unit(unit)
    normalization = ClipLogNormalization(
        lo=default_norm.lo if args.norm_lo is None else args.norm_lo,
        hi=default_norm.hi if args.norm_hi is None else args.norm_hi,
        log=default_norm.log, unit=unit,
    )
    image_size = args.size or info["config"]["size"]
    channels = info["config"]["channels"]
    geometry = dataset_geometry(args.dataset, image_size)
    # batches leave the loader as stored (uint8 browse frames: a quarter of float32's bytes to pin and
    # copy) and become model space on the accelerator (collate.to_model_space in the loop)
    flare_sigma = FLARE_MAP_SIGMA_RSUN * rsun_px(geometry) if args.conditioning == "flare" else None
    disk = rsun_px(geometry), disk_center_px(geometry)  # the hemisphere swap's and the solar rotation's
    collate = Collate(normalization, image_size, id_map, args.augment_rotation, args.augment_brightness, raw=True,
                      dtype=image_dtype(unit), flare_sigma_px=flare_sigma, dataset_size=info["config"]["size"])
    flare_positions = training_flare_positions(train_ds, geometry) if args.conditioning == "flare" else None
    forecast = ({"horizon_hours": info["config"]["forecast_hours"], "label_rule": info["label_rule"]}
                if info["config"].get("forecast_hours") else None)  # a dataset of forecast labels (build --forecast-hours)
    if len(train_ds) < args.train_batch_size * accelerator.num_processes:
        raise ValueError(f"the train split of {args.dataset} has {len(train_ds)} frames, fewer than one batch "
                         f"({args.train_batch_size} x {accelerator.num_processes} processes): lower --train-batch-size")
    loader = training_loader(train_ds, train_ds["flare_class"], collate, args.train_batch_size, args.seed,
                             args.class_balance, args.dataloader_num_workers, pin_memory=on_gpu)
    val_batch = None
    if args.validation_steps:
        try:
            val_ds = load_split(args.dataset, "validation", args.config_name, columns=columns)
            keep = [i for i, c in enumerate(val_ds["flare_class"]) if id_map is None or int(c) in id_map][:64]
            if keep:
                images, *conditions = collate([val_ds[i] for i in keep])
                val_batch = (collate.to_model_space(images, augment=False), *conditions)
        except ValueError as error:  # only a missing split is skipped; a corrupt or mismatched one stops the run
            if "no split" not in str(error):
                raise
            accelerator.print(f"no validation split: validation loss skipped ({error})")

    # model
    unet = build_unet(args.preset, image_size, len(id2label), in_channels=len(channels),
                      conditioning=args.conditioning, augmentation_planes=AUGMENTATION_PLANES if args.augment_flips else 0,
                      dropout=args.dropout)
    if args.init_from:
        unet = init_from_pipeline(unet, args.init_from, id2label, channels)
    upscaling_stage = {}
    if args.upscaler_from:  # checked against this UNet before any step
        from solar_diffusion.generate import super_resolution_stage
        from solar_diffusion.pipelines import check_upscaler

        upscaling_stage = super_resolution_stage(args.upscaler_from)
        check_upscaler(unet, **upscaling_stage)
    unet = unet.to(memory_format=memory_format)
    noise_scheduler = DDPMScheduler(num_train_timesteps=args.num_train_timesteps, beta_schedule=args.beta_schedule,
                                    prediction_type=args.prediction_type)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=learning_rate, weight_decay=args.adam_weight_decay)
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=args.lr_warmup_steps,
                                 num_training_steps=args.max_train_steps)
    ema = None
    if args.use_ema:
        ema = EMAModel(unet.parameters(), decay=args.ema_max_decay, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4,
                       foreach=on_gpu, model_cls=type(unet), model_config=unet.config)
    unet, optimizer, loader, lr_scheduler = accelerator.prepare(unet, optimizer, loader, lr_scheduler)
    # each process its own noise, timesteps and dropout (the frame draw was seeded alike at prepare)
    torch.manual_seed(args.seed + accelerator.process_index)
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    null = null_condition(accelerator.unwrap_model(unet).config)

    # resume
    check_run_settings(output_dir, {k: getattr(args, k) for k in RUN_SETTINGS} | {
        "init_from": args.init_from and model_name(args.init_from)}, args.resume_from_checkpoint,
        {k: build_parser().get_default(k) for k in RUN_SETTINGS})
    global_step = resume_from_checkpoint(accelerator, output_dir, args.resume_from_checkpoint)
    run_args = argparse.Namespace(**{**vars(args), "learning_rate": learning_rate})  # the rate used, scaled
    if accelerator.is_main_process and args.logger != "none":
        accelerator.init_trackers("solar-diffusion-ddpm", config={k: v for k, v in vars(run_args).items()
                                                                  if isinstance(v, (int, float, str, bool))})

    # the training frames' layouts for the saved model's novelty guidance (steering away from them)
    novelty = None
    try:
        if image_size % NOVELTY_POOL_PX == 0:
            novelty = split_layouts(args.dataset, normalization, image_size, config_name=args.config_name)
    except TooFewDays as error:
        accelerator.print(f"the saved model gets no novelty guidance: {error}")

    def make_pipeline():
        model = accelerator.unwrap_model(unet)
        pipe = SolarFlarePipeline(model, noise_scheduler, id2label=id2label, normalization=normalization.to_dict(),
                                  geometry=geometry, flare_positions=flare_positions, novelty=novelty, forecast=forecast,
                                  **upscaling_stage)
        pipe.set_progress_bar_config(disable=True)
        return use_scheduler(pipe, "dpm")  # the saved pipeline samples with DPM-Solver++

    def batch_loss(batch) -> torch.Tensor:
        """The diffusion loss of a batch as the loader gives it (stored frames, conditions, flare maps)."""
        images, labels, *flare_maps = batch
        x0 = collate.to_model_space(images).contiguous(memory_format=memory_format)
        maps, planes = (flare_maps or [None])[0], None
        if args.augment_solar_rotation:  # before the swap: it keeps each latitude, so the swap's hemispheres
            x0, maps = random_solar_rotation(x0, labels, maps, args.augment_solar_rotation, *disk)
        if args.augment_hemispheres:  # before the flips: a flip condition describes the whole frame
            x0, maps = random_hemisphere_swap(x0, labels, maps, args.augment_hemispheres, disk[0], disk[1][1])
        if args.augment_flips:
            x0, maps, planes = random_flips(x0, maps, args.augment_flips)
        return diffusion_loss(unet, noise_scheduler, x0, labels, args.prediction_type, null, args.label_dropout,
                              args.snr_gamma, maps, planes)

    def after_step(step: int):
        """The validation loss and the sample grid at their steps."""
        if args.validation_steps and val_batch is not None and step % args.validation_steps == 0:
            accelerator.log({"validation_loss": validation_loss(unet, noise_scheduler, val_batch, accelerator, args)},
                            step=step)
        if args.sample_steps and step % args.sample_steps == 0 and accelerator.is_main_process:
            sample_grid(make_pipeline(), ema, unet, sample_labels, output_dir / "samples" / f"step-{step:07d}.png")

    clock = RunClock(start, args.max_train_minutes, total_batch, global_step)
    settings = LoopSettings(args.max_train_steps, args.checkpointing_steps, args.checkpoints_total_limit,
                            args.logging_steps, stop_at_step=args.stop_at_step)
    unet.train()
    global_step, stop = training_loop(accelerator, unet, optimizer, lr_scheduler, loader, batch_loss, settings,
                                      output_dir, clock, global_step, ema=ema, after_step=after_step)

    accelerator.wait_for_everyone()
    identical = ranks_hold_identical_weights(accelerator, unet)  # checked after the run is saved
    final = output_dir / "pipeline"
    if accelerator.is_main_process:
        if ema is not None:
            ema.copy_to(accelerator.unwrap_model(unet).parameters())
        pipe = make_pipeline()
        card = _model_card(run_args, info, pipe, global_step)
        save_pipeline(pipe, final, card)
        summary = clock.summary(global_step, stop) | {
            "device": torch.cuda.get_device_name(accelerator.device) if on_gpu else accelerator.device.type,
            "processes": accelerator.num_processes, "ranks_hold_identical_weights": identical,
            "per_device_batch": args.train_batch_size,
            "mixed_precision": accelerator.mixed_precision, "compile": args.compile, "channels_last": channels_last,
            "learning_rate": learning_rate, "preset": args.preset, "image_size": image_size,
            "dataset": str(args.dataset), "torch": torch.__version__}
        atomic_write(output_dir / "train_summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
        accelerator.print(f"trained {summary['steps_this_run']} steps ({summary['images_this_run']} images) in "
                          f"{summary['train_s']:.0f} s: {summary['images_per_s']:.1f} images/s; stopped at "
                          f"{summary['stop']}; total {summary['wall_s']:.0f} s with the final save")
        if args.push_to_hub and identical:
            push_to_hub(pipe, args.hub_model_id or output_dir.name, card, api=hub_api, private=args.hub_private)
    if not identical:
        raise RuntimeError(f"the {accelerator.num_processes} processes ended with different weights (saved anyway in "
                           f"{final}, with train_summary.json): the data-parallel run went wrong; do not use it")
    end_run(accelerator)
    return final


class RunClock:
    """The wall clock of a run: its ``--max-train-minutes`` budget and its throughput.

    The budget counts from ``start`` (the run's start: data loading and model set-up included);
    images/s from the end of the run's first step (compilation and warm-up left out), or over that
    step where it is the only one.

    >>> clock = RunClock(time.monotonic(), max_minutes=None, total_batch=16, first_step=0)
    >>> clock.step(1); clock.step(3)
    >>> clock.images_per_s() > 0, clock.out_of_time(None)
    (True, False)
    """

    def __init__(self, start: float, max_minutes: float | None, total_batch: int, first_step: int):
        self.start, self.budget_s = start, (max_minutes * 60 if max_minutes else None)
        self.total_batch, self.first_step = total_batch, first_step
        self.loop_start = time.monotonic()
        self.timed_from = self.last = None  # (time, step)

    def step(self, step: int):
        """Note that ``step`` has ended (the first call starts the throughput clock)."""
        self.last = (time.monotonic(), step)
        if self.timed_from is None:
            self.timed_from = self.last

    def images_per_s(self) -> float | None:
        """Images per second from the end of the run's first step (over that step where it is the only one)."""
        if self.last is None:
            return None
        since, first = self.timed_from if self.last[1] > self.timed_from[1] else (self.loop_start, self.first_step)
        return (self.last[1] - first) * self.total_batch / max(self.last[0] - since, 1e-9)

    def out_of_time(self, accelerator) -> bool:
        """Whether the next step would end after the budget (the same answer on every process)."""
        if self.budget_s is None:
            return False
        now = time.monotonic()
        per_step = (now - self.loop_start) / max(1, self.last[1] - self.first_step)
        out = now - self.start + per_step > self.budget_s
        if accelerator.num_processes > 1:
            out = bool(accelerator.gather(torch.tensor([float(out)], device=accelerator.device)).max().item())
        return out

    def summary(self, step: int, stop: str) -> dict:
        """The run's numbers: steps, images, seconds, images/s and why it stopped."""
        steps = step - self.first_step
        return {"steps": step, "steps_this_run": steps, "images_this_run": steps * self.total_batch,
                "total_batch": self.total_batch, "images_per_s": self.images_per_s() or 0.0,
                "train_s": (self.last[0] if self.last else self.loop_start) - self.loop_start,
                "wall_s": time.monotonic() - self.start, "max_train_minutes": self.budget_s and self.budget_s / 60,
                "stop": stop}


@dataclass(frozen=True)
class LoopSettings:
    """When ``training_loop`` stops, checkpoints and logs, and the name of its progress bar and
    fault point (``<name>:step``).

    A stop by ``stop_at_step`` or by the clock checkpoints its last step; the end at
    ``max_train_steps`` does so only with ``checkpoint_last_step`` (a constant learning rate, as a
    distillation's, can go on to more steps from it; a decayed schedule ends with the saved model).
    """

    max_train_steps: int
    checkpointing_steps: int
    checkpoints_total_limit: int | None
    logging_steps: int
    stop_at_step: int | None = None
    checkpoint_last_step: bool = False
    name: str = "train"


class LossLog:
    """Each optimiser step's loss (mean over processes), kept on the device until read: a read waits
    for the device, so it is done every few steps (a GPU runs ahead meanwhile); written, appended
    to ``losses.jsonl`` by the main process, with each checkpoint and at the end.

    >>> log = LossLog(Path("losses.jsonl"), main_process=False)
    >>> log.add(1, torch.tensor(0.5)); log.add(2, torch.tensor(0.25)); log.read()
    [0.5, 0.25]
    """

    def __init__(self, path: Path, main_process: bool):
        self.path, self.main_process = path, main_process
        self.pending, self.rows = [], []  # pending: (step, loss on the device); rows: read, not yet written

    def add(self, step: int, loss: torch.Tensor):
        """Keep ``step``'s loss, unread."""
        self.pending.append((step, loss))

    def read(self) -> list[float]:
        """Read the pending losses (one wait for the device); returns their values."""
        values = torch.stack([value for _, value in self.pending]).tolist() if self.pending else []
        self.rows.extend({"step": step, "loss": value} for (step, _), value in zip(self.pending, values))
        self.pending.clear()
        return values

    def write(self):
        """Append every loss so far to the file (main process) and forget them."""
        self.read()
        if self.main_process and self.rows:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as handle:
                handle.writelines(json.dumps(row) + "\n" for row in self.rows)
        self.rows.clear()


def training_loop(accelerator, model, optimizer, lr_scheduler, loader, batch_loss, settings: LoopSettings,
                  output_dir: Path, clock: RunClock, step: int, ema=None, after_step=None) -> tuple[int, str]:
    """Train the prepared ``model`` from ``step`` (0, or the checkpoint resumed from) until a stop;
    returns the last step and why it stopped ("stop_at_step", "max_train_steps", "max_train_minutes").

    Each batch's ``batch_loss(batch)`` makes an optimiser step (``optimiser_step``). After each
    step: the ``ema`` steps, the loss is logged (``report_step``; ``losses.jsonl``), a checkpoint is
    saved every ``settings.checkpointing_steps``, then ``after_step(step)`` runs (validation,
    samples). Every epoch draws anew (``epoch_batches``): a resumed run sees the batches, and makes
    the steps, an uninterrupted one would.
    """
    from tqdm.auto import tqdm

    log = LossLog(output_dir / "losses.jsonl", accelerator.is_main_process)
    progress = tqdm(total=settings.max_train_steps, initial=step, desc=settings.name,
                    disable=not accelerator.is_local_main_process)
    stop = "stop_at_step" if settings.stop_at_step and step >= settings.stop_at_step else None  # resumed there
    while step < settings.max_train_steps and not stop:
        for batch in epoch_batches(accelerator, loader, step):
            loss = optimiser_step(accelerator, model, optimizer, lr_scheduler, batch_loss, batch)
            if not accelerator.sync_gradients:
                continue
            if ema is not None:
                ema.step(model.parameters())
            step += 1
            log.add(step, accelerator.gather(loss.detach()).mean())
            report_step(accelerator, log, clock, progress, lr_scheduler, ema, step, settings)
            fault_point(f"{settings.name}:step")
            if step % settings.checkpointing_steps == 0:
                log.write()  # the losses up to a checkpoint are kept with it: a killed run loses none of them
                save_checkpoint(accelerator, output_dir, step, settings.checkpoints_total_limit)
            if after_step is not None:
                after_step(step)
            stop = stop_reason(settings, step, clock, accelerator)
            if stop:
                if log.pending:
                    log.read()
                    clock.step(step)  # the run's time up to its last loss read
                if (stop != "max_train_steps" or settings.checkpoint_last_step) and step % settings.checkpointing_steps:
                    log.write()
                    save_checkpoint(accelerator, output_dir, step, settings.checkpoints_total_limit)
                break
    progress.close()
    log.write()
    return step, stop or "max_train_steps"


def epoch_batches(accelerator, loader, step: int):
    """The batches left of the epoch that ``step`` falls in: the loader's draw for that epoch
    (``set_epoch``), less those of the epoch's steps already made (a resumed run)."""
    steps_per_epoch = math.ceil(len(loader) / accelerator.gradient_accumulation_steps)
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(step // steps_per_epoch)
    skip = (step % steps_per_epoch) * accelerator.gradient_accumulation_steps
    return accelerator.skip_first_batches(loader, skip) if skip else loader


def optimiser_step(accelerator, model, optimizer, lr_scheduler, batch_loss, batch) -> torch.Tensor:
    """Back-propagate ``batch_loss(batch)`` and step (with gradient accumulation: on the last batch
    of the accumulation), the gradients clipped to norm 1; returns the loss."""
    with accelerator.accumulate(model):
        loss = batch_loss(batch)
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
    return loss


def report_step(accelerator, log: LossLog, clock: RunClock, progress, lr_scheduler, ema, step: int,
                settings: LoopSettings):
    """Note that ``step`` has ended on the clock and the progress bar; every ``logging_steps``, and at
    a run's first and last step, read the losses and log their mean, the learning rate, images/s
    (and the EMA decay) to the trackers."""
    flush = step % settings.logging_steps == 0 or step == clock.first_step + 1 or step >= settings.max_train_steps
    values = log.read() if flush else None
    clock.step(step)
    if flush:
        logs = {"loss": float(np.mean(values)), "lr": lr_scheduler.get_last_lr()[0]}
        if clock.images_per_s():
            logs["images_per_s"] = clock.images_per_s()
        if ema is not None:
            logs["ema_decay"] = ema.cur_decay_value
        progress.set_postfix(loss=f"{values[-1]:.4g}", img_s=f"{clock.images_per_s() or 0:.1f}")
        accelerator.log(logs, step=step)
    progress.update(1)


def stop_reason(settings: LoopSettings, step: int, clock: RunClock, accelerator) -> str | None:
    """Why the run stops after ``step``, or None: ``stop_at_step``, ``max_train_steps`` or the clock's
    budget (``max_train_minutes``, asked of every process alike)."""
    if settings.stop_at_step and step >= settings.stop_at_step:
        return "stop_at_step"
    if step >= settings.max_train_steps:
        return "max_train_steps"
    return "max_train_minutes" if clock.out_of_time(accelerator) else None


def make_accelerator(output_dir: Path, seed: int, gradient_accumulation_steps: int = 1,
                     mixed_precision: str | None = None, log_with: str | None = None, compile_model: bool = False):
    """The run's ``Accelerator`` (trackers ``log_with``, logs in ``output_dir/logs``; ``compile_model``:
    torch.compile through its inductor backend), every process seeded with ``seed``.

    Launched as several processes on a machine without a GPU (the ``multi_cpu.yaml`` config), it
    trains them data parallel over gloo: accelerate's own MULTI_CPU launch needs mpirun, so its
    multi-process launcher starts them and ``cpu=True`` makes them a CPU process group."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

    has_accelerator = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    accelerator = Accelerator(
        cpu=several and not has_accelerator,
        gradient_accumulation_steps=gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, non_blocking=True),
        dynamo_backend="inductor" if compile_model else None,
    )
    set_seed(seed)  # every process the same: the same weights and the same draw of frames
    return accelerator


TEARDOWN_GRACE_S = 60.0


def end_run(accelerator, grace_s: float = TEARDOWN_GRACE_S):
    """End a run whose results are saved: the processes meet, trackers finish, the process group goes.

    With several processes, a teardown still running ``grace_s`` after they met ends the process
    with exit status 0 and a line on stderr saying where it hung: gloo's destroy_process_group can
    hang now and then (pytorch issue 75097), and a saved run must not leave its job waiting forever.
    A training script's last step, on every process: ``end_run(accelerator)``.
    """
    accelerator.wait_for_everyone()
    watchdog = None
    if accelerator.num_processes > 1:
        watchdog = threading.Timer(grace_s, _leave_hung_teardown, args=(grace_s, threading.main_thread().ident))
        watchdog.daemon = True
        watchdog.start()
    accelerator.end_training()
    if watchdog is not None:
        watchdog.cancel()


def _leave_hung_teardown(grace_s: float, thread_id: int):
    """Say where the teardown hangs, then leave (the run's results are already saved)."""
    stack = "".join(traceback.format_stack(sys._current_frames()[thread_id])[-3:])
    print(f"the process group's teardown hung for {grace_s:.0f} s after the run was saved; leaving it. "
          f"It was at:\n{stack}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(0)


def training_loader(dataset, labels, collate, batch_size: int, seed: int, class_balance: float = 0.0,
                    num_workers: int = 0, pin_memory: bool = False):
    """The training ``DataLoader``: frames drawn with replacement by ``BalancedSampler`` with
    ``class_balance`` (0: shuffled), per epoch from ``seed``; full batches only. Prepared by
    accelerate, each process takes its own batches of the same draw (rank r: batches r, r + N, ...)."""
    sampler = BalancedSampler(labels, class_balance, seed) if class_balance else None
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                                       collate_fn=collate, num_workers=num_workers, pin_memory=pin_memory,
                                       persistent_workers=num_workers > 0, drop_last=True,
                                       generator=torch.Generator().manual_seed(seed))


def training_flare_positions(train_ds, geometry: dict, limit: int = 2000) -> list:
    """Helioprojective (x, y) arcsec of the training frames' flares with a usable position that lie
    on the disk of the model's geometry (the solar radius changes over the year), at most
    ``limit`` of them (evenly spread), for a flare model to draw positions from when none is given."""
    radius = rsun_px(geometry) * geometry["plate_scale_arcsec"]
    positions = sorted({(float(x), float(y)) for flares in train_ds["flares"]
                        for x, y, usable in zip(flares["hpc_x"], flares["hpc_y"], flares["on_disk"])
                        if usable and np.hypot(x, y) <= radius})
    step = max(1, len(positions) // limit)
    return [list(p) for p in positions[::step][:limit]]


def ranks_hold_identical_weights(accelerator, unet) -> bool:
    """Whether every process holds the same weights (data parallel training keeps them equal; a
    difference means the ranks drifted apart): a fingerprint of the weights, gathered."""
    weights = [p.detach().double().flatten() for p in accelerator.unwrap_model(unet).parameters()]
    flat = torch.cat(weights)
    fingerprint = torch.stack([flat.sum(), (flat * flat).sum(), (flat * torch.arange(len(flat), dtype=flat.dtype)).sum()])
    gathered = accelerator.gather(fingerprint.to(accelerator.device)[None]).cpu()
    return bool(torch.equal(gathered.min(dim=0).values, gathered.max(dim=0).values))


def trim_losses(path: Path, step: int):
    """Keep the losses of steps up to ``step`` (the checkpoint resumed from): a run killed after
    writing losses but before its checkpoint was complete would otherwise log those steps twice
    (a line cut short by the kill is dropped too).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "losses.jsonl"
    >>> _ = path.write_text('{"step": 1, "loss": 0.5}\\n{"step": 2, "loss": 0.4}\\n{"step": 3, "lo')
    >>> trim_losses(path, 1); path.read_text()
    '{"step": 1, "loss": 0.5}\\n'
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("step", 0) <= step:
            kept.append(json.dumps(row) + "\n")
    atomic_write(path, lambda tmp: Path(tmp).write_text("".join(kept)))


def save_checkpoint(accelerator, output_dir: Path, step: int, total_limit: int | None):
    """``accelerator.save_state`` into ``checkpoint-<step>`` (every process: each saves its RNG
    state), then, once it is complete, remove the oldest beyond ``total_limit``: a kill at any
    moment leaves the last complete checkpoint."""
    tmp = output_dir / f".checkpoint-{step}.tmp"
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        fault_point("checkpoint:saved")
        tmp.rename(output_dir / f"checkpoint-{step}")
        fault_point("checkpoint:renamed")
        if total_limit:
            existing = _checkpoints(output_dir)
            for old in existing[: max(0, len(existing) - total_limit)]:
                shutil.rmtree(old)
                fault_point("checkpoint:old-removed")
    accelerator.wait_for_everyone()


@torch.no_grad()
def validation_loss(unet, scheduler, batch, accelerator, args) -> float:
    """Loss on a fixed validation batch with fixed noise and timesteps (comparable over time)."""
    x0, labels, *flare_maps = (b.to(accelerator.device) for b in batch)
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the training's random streams (CPU and GPU) go on untouched
        torch.manual_seed(1234)
        unet.eval()
        planes = torch.zeros(len(x0), AUGMENTATION_PLANES, *x0.shape[-2:], device=x0.device) \
            if args.augment_flips else None  # as sampling asks: no flip
        loss = diffusion_loss(unet, scheduler, x0, labels, args.prediction_type,
                              flare_maps=flare_maps[0] if flare_maps else None, augmentation=planes)
        unet.train()
    return loss.item()


@torch.no_grad()
def sample_grid(pipe, ema, unet, labels, path: Path):
    """One image per class with the EMA weights (if any), 20 DPM-Solver++ steps, as a PNG grid."""
    from solar_diffusion.generate import write_contact_sheet

    state = torch.random.get_rng_state()
    if ema is not None:
        ema.store(unet.parameters())
        ema.copy_to(unet.parameters())
    pipe.unet.eval()
    out = pipe(labels, generator=[torch.Generator().manual_seed(i) for i in range(len(labels))],
               num_inference_steps=20, output_type="model")
    pipe.unet.train()
    if ema is not None:
        ema.restore(unet.parameters())
    torch.random.set_rng_state(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_contact_sheet(path, out.images.cpu().numpy(), labels, [f"seed {i}" for i in range(len(labels))],
                        title=path.stem)


def _model_card(args, info, pipe, steps) -> str:
    from solar_diffusion.training.model_card import render_model_card

    return render_model_card(args=vars(args), dataset_info=info, pipe=pipe, steps=steps)


def main(argv=None, hub_api=None) -> Path:
    args = build_parser().parse_args(argv)
    return train(args, hub_api=hub_api)


if __name__ == "__main__":
    main()
