"""Train the super-resolution stage of a cascade: a base model's images (64 px) taken to a
dataset's size (256 px), saved with the base model as one pipeline.

The formulation is residual diffusion with noise-augmented conditioning (SR3, Cascaded Diffusion
Models, DeepFloyd IF stage II; the residual as in ResShift and Ramunno et al. 2025): for a
high-resolution frame x, its low-resolution frame is made as the builder makes frames of that
size (``downsample``: each pixel the mean of its footprint, in the data unit, then normalised),
and the UNet diffuses (v-prediction)

    r = (x - upsample(low)) / residual_std

beside ``upsample(low + sigma * eps)`` with sigma ~ U[0, --max-noise-level] per frame (told to
the UNet as its class input, ``noise_level_input``) and, over a flare model, the flare map at the
high resolution (all zeros with probability ``--map-dropout``: no flare information, as for a
real frame). ``residual_std`` is measured once on the training split. ``--objective regression``
trains the same UNet to predict the residual in one pass with an L1 loss (no noisy residual in its
input, timestep 0): the control a diffusion upscaler must beat, saved and run the same way. The UNet is convolution-only
(preset ``upscaler``), so it trains on random ``--crop-px`` crops (the same region of residual,
conditioning and map) and runs on whole frames.

    solar-diffusion train-upscaler --dataset data/aia-browse2012-256-3ch --out runs/upscaler --use-ema
    accelerate launch training/train_upscaler.py ...                          # same flags

The loop is ``train_ddpm``'s: accelerate, EMA, checkpoints that ``--resume-from-checkpoint latest``
continues exactly, ``--max-train-minutes``, several processes. At the end the cascade (the
``--base`` pipeline with the upscaler's EMA weights, sampled with DPM-Solver++) is saved to
``<out>/pipeline`` and the run's numbers to ``<out>/upscaler_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from solar_diffusion.files import atomic_write
from solar_diffusion.pipelines import (FLARE_MAP_SIGMA_RSUN, UPSCALER_NOISE_LEVEL, noise_level_input, rsun_px,
                                       upsample, upscaler_input)
from solar_diffusion.splits import TRAINING_COLUMNS, dataset_argument, dataset_info, downsample, image_dtype, load_split
from solar_diffusion.training.data import Collate
from solar_diffusion.training.train_ddpm import (LoopSettings, RunClock, check_output_dir, check_run_settings,
                                                  end_run, make_accelerator, ranks_hold_identical_weights,
                                                  resume_from_checkpoint, training_loader, training_loop)

#: Training frames (evenly spread over the split) over which ``residual_std`` is measured.
RESIDUAL_STD_FRAMES = 256
#: The arguments a resumed run must share with its start (``check_run_settings``).
RUN_SETTINGS = ("preset", "objective", "crop_px", "max_noise_level", "map_dropout", "train_batch_size",
                "gradient_accumulation_steps", "learning_rate", "lr_scheduler", "lr_warmup_steps",
                "adam_weight_decay", "class_balance", "use_ema", "ema_max_decay", "seed")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    from solar_diffusion.defaults import bundled_model

    p = parser or argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    base = bundled_model()
    p.add_argument("--base", default=None if base is None else str(base), required=base is None,
                   help="the base pipeline to upscale" + (" (default: the bundled model)" if base else ""))
    p.add_argument("--dataset", required=True, type=dataset_argument,
                   help="frames at the output size, in the base model's unit and channels: a folder made by "
                        "build-dataset, a pack, or a Hub dataset id")
    p.add_argument("--config-name", default=None, help="dataset config (default: the dataset's default)")
    p.add_argument("--out", dest="output_dir", required=True, help="output folder of the run")
    p.add_argument("--preset", default="upscaler", help="UNet preset (default upscaler: convolutions only)")
    p.add_argument("--init-from", default=None,
                   help="start from the upscaler of this saved cascade (same preset, sizes and channels; a new "
                        "learning-rate schedule), e.g. to train the bundled one further")
    p.add_argument("--objective", default="diffusion", choices=["diffusion", "regression"],
                   help="diffusion (v-prediction of the noisy residual) or regression (the residual in one pass, "
                        "L1 loss: the control)")
    p.add_argument("--crop-px", type=int, default=64, help="side of the random training crops in pixels")
    p.add_argument("--max-noise-level", type=float, default=0.2,
                   help="noise augmentation of the low-resolution image: its std in model space is drawn "
                        "from U[0, this] per frame")
    p.add_argument("--map-dropout", type=float, default=0.1,
                   help="probability of an empty flare map (no flare information), over a flare model")
    p.add_argument("--sampling-noise-level", type=float, default=UPSCALER_NOISE_LEVEL,
                   help="the saved cascade's default noise augmentation at sampling")
    p.add_argument("--sampling-steps", type=int, default=10, help="the saved cascade's default upscaler steps")
    p.add_argument("--train-batch-size", type=int, default=16, help="crops per batch and process")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1, help="batches per optimiser step")
    p.add_argument("--learning-rate", type=float, default=2e-4, help="AdamW's learning rate after the warmup")
    p.add_argument("--lr-scheduler", default="cosine", help="constant, linear, cosine, ... (diffusers get_scheduler)")
    p.add_argument("--lr-warmup-steps", type=int, default=200, help="steps of linear learning-rate warmup")
    p.add_argument("--max-train-steps", type=int, default=10000, help="optimiser steps of the whole schedule")
    p.add_argument("--stop-at-step", type=int, default=None,
                   help="end this run at this step (checkpointed), keeping the schedule of --max-train-steps")
    p.add_argument("--max-train-minutes", type=float, default=None,
                   help="wall-clock budget of this run: it then checkpoints and saves the cascade")
    p.add_argument("--adam-weight-decay", type=float, default=1e-4, help="AdamW's weight decay")
    p.add_argument("--class-balance", type=float, default=0.0,
                   help="sample frames with weight count(label)^-b: 0 = as in the data, 1 = classes equally often")
    p.add_argument("--use-ema", action="store_true", help="keep an EMA of the weights (saved as the upscaler)")
    p.add_argument("--ema-max-decay", type=float, default=0.9999, help="the EMA's largest decay (it warms up to it)")
    p.add_argument("--mixed-precision", default=None, choices=["no", "fp16", "bf16"],
                   help="autocast precision (accelerate); default: accelerate's config")
    p.add_argument("--checkpointing-steps", type=int, default=500, help="a checkpoint every N steps")
    p.add_argument("--checkpoints-total-limit", type=int, default=2, help="checkpoints kept (the newest)")
    p.add_argument("--resume-from-checkpoint", default=None, help="a checkpoint folder or 'latest'")
    p.add_argument("--logger", default="tensorboard", choices=["tensorboard", "none"], help="where metrics are logged")
    p.add_argument("--logging-steps", type=int, default=10, help="log the loss and crops/s every N steps")
    p.add_argument("--dataloader-num-workers", type=int, default=0, help="loader worker processes")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, the frame draw, noise and crops")
    return p


def check_arguments(args):
    """Refuse values that cannot train before any work."""
    for name in ("train_batch_size", "gradient_accumulation_steps", "max_train_steps", "checkpointing_steps",
                 "logging_steps", "crop_px", "sampling_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("lr_warmup_steps", "dataloader_num_workers"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise ValueError(f"--learning-rate must be a positive number, got {args.learning_rate}")
    if not (math.isfinite(args.max_noise_level) and args.max_noise_level >= 0):
        raise ValueError(f"--max-noise-level must be a number >= 0, got {args.max_noise_level}")
    if not 0 <= args.sampling_noise_level <= args.max_noise_level:
        raise ValueError(f"--sampling-noise-level must be in [0, --max-noise-level {args.max_noise_level:g}] "
                         f"(the levels trained), got {args.sampling_noise_level}")
    if not 0 <= args.map_dropout <= 1:
        raise ValueError(f"--map-dropout must be in [0, 1], got {args.map_dropout}")
    if args.max_train_minutes is not None and not args.max_train_minutes > 0:
        raise ValueError(f"--max-train-minutes must be a positive number, got {args.max_train_minutes}")


def load_base(args):
    """The ``--base`` pipeline, the dataset's build record and the low and high sizes; refuses a
    dataset that an upscaler of the base cannot learn from (another unit, other channels, not a
    whole multiple of its size) and crops that do not fit."""
    from solar_diffusion.generate import load_pipeline

    base_dir, dataset, crop_px = args.base, args.dataset, args.crop_px
    base, info = load_pipeline(base_dir, channels_last=False), dataset_info(dataset)
    if info["unit"] != base.normalization.unit:
        raise ValueError(f"--base {base_dir} makes {base.normalization.unit!r} images, --dataset {dataset} holds "
                         f"{info['unit']!r}: the upscaler learns in its base model's unit")
    wavelengths = [float(c) for c in info["config"]["channels"]]
    base_wavelengths = base.config.geometry.get("wavelengths_angstrom") or [None] * base.unet.config.out_channels
    if wavelengths != [None if w is None else float(w) for w in base_wavelengths]:
        raise ValueError(f"--base {base_dir} makes channels {base_wavelengths}, --dataset {dataset} holds "
                         f"{wavelengths}")
    low, high = base.unet.config.sample_size, info["config"]["size"]
    if high <= low or high % low:
        raise ValueError(f"--dataset {dataset} is {high} px: an upscaler of the {low} px base model needs a "
                         "whole multiple of that (a 256 px build over a 64 px model)")
    if crop_px > high:
        raise ValueError(f"--crop-px {crop_px} is larger than the {high} px frames")
    return base, info, low, high


def measure_residual_std(train_ds, normalization, low_size: int, frames: int = RESIDUAL_STD_FRAMES,
                         chunk: int = 32) -> float:
    """The standard deviation (model space, all pixels and channels) of ``x - upsample(low)`` over
    ``frames`` training frames evenly spread over the split: the scale of the residual the
    upscaler diffuses."""
    picks = np.unique(np.linspace(0, len(train_ds) - 1, min(frames, len(train_ds))).round().astype(int))
    total = squares = count = 0.0
    for start in range(0, len(picks), chunk):
        rows = train_ds[picks[start:start + chunk].tolist()]["image"]
        images = torch.from_numpy(np.asarray(rows, dtype=image_dtype(normalization.unit)))  # as the loader's
        residual = model_space_pair(images, normalization, low_size)[0].double()
        total, squares, count = total + residual.sum(), squares + (residual * residual).sum(), count + residual.numel()
    mean = total / count
    return float(torch.sqrt(squares / count - mean * mean))


def model_space_pair(images: torch.Tensor, normalization, low_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stored high-resolution frames -> (their residual ``x - upsample(low)``, ``low``) in model
    space, ``low`` made by the builder's operator in the data unit (``downsample``)."""
    x = normalization.forward(images.float())
    low = normalization.forward(downsample(images, low_size).float())
    return x - upsample(low, x.shape[-1]), low


def random_crops(tensors: list, crop_px: int) -> list:
    """The same random ``crop_px`` square of each frame from every (N, *, H, W) tensor of
    ``tensors`` (a region per frame, drawn with the global torch RNG).

    >>> a = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> x, y = random_crops([a, a + 100], 2)
    >>> x.shape, bool((y - x == 100).all())
    (torch.Size([1, 1, 2, 2]), True)
    """
    size = tensors[0].shape[-1]
    corners = torch.randint(0, size - crop_px + 1, (len(tensors[0]), 2)).tolist()
    return [torch.stack([t[i, :, y:y + crop_px, x:x + crop_px] for i, (y, x) in enumerate(corners)])
            for t in tensors]


def upscaler_loss(unet, scheduler, residual, low, max_noise_level: float, crop_px: int, flare_maps=None,
                  map_dropout: float = 0.0, objective: str = "diffusion") -> torch.Tensor:
    """One training loss of the upscaler: the standardised ``residual`` (N, C, H, W), the
    low-resolution frames ``low`` noise-augmented (a level per frame) and upsampled, the flare maps
    dropped to empty with ``map_dropout``, all cropped alike; MSE on v of the noisy residual, or for
    the ``"regression"`` objective L1 on the residual predicted from the conditioning alone."""
    sigma = max_noise_level * torch.rand(len(low), device=low.device)
    cond = upsample(low + sigma.view(-1, 1, 1, 1) * torch.randn_like(low), residual.shape[-1])
    if flare_maps is not None and map_dropout:
        keep = torch.rand(len(low), device=low.device) >= map_dropout
        flare_maps = flare_maps * keep.to(flare_maps.dtype).view(-1, 1, 1, 1)
    residual, cond, *maps = random_crops([residual, cond] + ([] if flare_maps is None else [flare_maps]), crop_px)
    if objective == "regression":
        model_input = upscaler_input(torch.zeros_like(residual), cond, maps[0] if maps else None)
        pred = unet(model_input, 0, class_labels=noise_level_input(sigma)).sample
        return F.l1_loss(pred.float(), residual.float())
    noise = torch.randn_like(residual)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(low),), device=low.device)
    noisy = scheduler.add_noise(residual, noise, t)
    pred = unet(upscaler_input(noisy, cond, maps[0] if maps else None), t, class_labels=noise_level_input(sigma)).sample
    return F.mse_loss(pred.float(), scheduler.get_velocity(residual, noise, t).float())


def upscaler_data(args, base, info: dict, high_size: int, processes: int = 1):
    """The training split and its loader (for ``processes`` processes): frames as stored, with the
    flare maps at the high resolution over a flare model (as the pipeline draws them: the base's
    geometry)."""
    flare_model = base.conditioning == "flare"
    columns = TRAINING_COLUMNS + (("flares",) if flare_model else ())
    train_ds = load_split(args.dataset, "train", args.config_name, columns=columns)
    if len(train_ds) < args.train_batch_size * processes:
        raise ValueError(f"the train split of {args.dataset} has {len(train_ds)} frames, fewer than one batch "
                         f"({args.train_batch_size} x {processes} processes): lower --train-batch-size")
    sigma = FLARE_MAP_SIGMA_RSUN * rsun_px(base.config.geometry, high_size) if flare_model else None
    collate = Collate(base.normalization, high_size, None, raw=True, dtype=image_dtype(info["unit"]),
                      flare_sigma_px=sigma, dataset_size=high_size)
    loader = training_loader(train_ds, train_ds["flare_class"], collate, args.train_batch_size, args.seed,
                             args.class_balance, args.dataloader_num_workers)
    return train_ds, loader


def train_upscaler(args) -> Path:
    """Run the training; returns the saved cascade's folder (``<out>/pipeline``)."""
    start = time.monotonic()
    from diffusers import DDPMScheduler

    from solar_diffusion.hub import model_name
    from solar_diffusion.presets import build_upscaler_unet

    check_arguments(args)
    output_dir = Path(args.output_dir)
    check_output_dir(output_dir, args.resume_from_checkpoint)
    base, info, low_size, high_size = load_base(args)
    accelerator = make_accelerator(output_dir, args.seed, args.gradient_accumulation_steps, args.mixed_precision,
                                   log_with=None if args.logger == "none" else args.logger)
    train_ds, loader = upscaler_data(args, base, info, high_size, accelerator.num_processes)
    residual_std = measure_residual_std(train_ds, base.normalization, low_size)
    accelerator.print(f"{low_size} -> {high_size} px over {args.base}; residual std {residual_std:.4f}")
    unet = build_upscaler_unet(args.preset, high_size, base.unet.config.out_channels, base.conditioning == "flare")
    if args.init_from:
        unet = init_upscaler(unet, args.init_from)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="v_prediction")
    unet, optimizer, loader, lr_scheduler, ema = prepare_training(args, accelerator, unet, loader)
    check_run_settings(output_dir, {k: getattr(args, k) for k in RUN_SETTINGS} | {
        "base": model_name(args.base), "init_from": args.init_from and model_name(args.init_from)},
        args.resume_from_checkpoint, {k: build_parser().get_default(k) for k in RUN_SETTINGS})
    global_step = resume_from_checkpoint(accelerator, output_dir, args.resume_from_checkpoint)

    def batch_loss(batch) -> torch.Tensor:
        """The upscaler's loss of a batch as the loader gives it (stored frames, conditions, flare maps)."""
        images, _, *flare_maps = batch
        residual, low = model_space_pair(images, base.normalization, low_size)
        return upscaler_loss(unet, scheduler, residual / residual_std, low, args.max_noise_level, args.crop_px,
                             flare_maps[0] if flare_maps else None, args.map_dropout, args.objective)

    total_batch = args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
    clock = RunClock(start, args.max_train_minutes, total_batch, global_step)
    settings = LoopSettings(args.max_train_steps, args.checkpointing_steps, args.checkpoints_total_limit,
                            args.logging_steps, stop_at_step=args.stop_at_step, name="upscaler")
    unet.train()
    global_step, stop = training_loop(accelerator, unet, optimizer, lr_scheduler, loader, batch_loss, settings,
                                      output_dir, clock, global_step, ema=ema)
    accelerator.wait_for_everyone()
    identical = ranks_hold_identical_weights(accelerator, unet)
    if accelerator.is_main_process:
        save_run(args, accelerator, unet, ema, base, scheduler, clock.summary(global_step, stop) | {
            "residual_std": residual_std, "low_size": low_size, "high_size": high_size,
            "ranks_hold_identical_weights": identical})
    if not identical:
        raise RuntimeError(f"the {accelerator.num_processes} processes ended with different weights (saved anyway in "
                           f"{output_dir}): the data-parallel run went wrong; do not use it")
    end_run(accelerator)
    return output_dir / "pipeline"


def init_upscaler(unet, cascade_dir):
    """``unet`` with the weights of the upscaler saved in the cascade at ``cascade_dir``; refuses an
    upscaler of another configuration (preset, size, channels) in one line."""
    from diffusers import UNet2DModel

    folder = Path(cascade_dir) / "upscaler"
    if not (folder / "config.json").exists():
        raise ValueError(f"--init-from {cascade_dir} holds no upscaler (no upscaler/config.json)")
    source = UNet2DModel.from_pretrained(str(folder))
    keys = ("sample_size", "in_channels", "out_channels", "block_out_channels", "layers_per_block",
            "down_block_types", "up_block_types", "add_attention", "class_embed_type", "norm_num_groups")
    differ = [k for k in keys if json.dumps(source.config[k]) != json.dumps(unet.config[k])]  # lists and tuples alike
    if differ:
        raise ValueError(f"--init-from {cascade_dir}: its upscaler differs in {', '.join(differ)} "
                         f"({', '.join(f'{source.config[k]} against {unet.config[k]}' for k in differ)})")
    unet.load_state_dict(source.state_dict())
    return unet


def prepare_training(args, accelerator, unet, loader):
    """The optimiser, its warmed-up learning-rate schedule and the EMA (``--use-ema``) of ``unet``,
    prepared by accelerate with the loader (the EMA checkpointed with them); every process then
    draws its own noise, levels and crops; the trackers start. Returns (unet, optimizer, loader,
    lr_scheduler, ema)."""
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate, weight_decay=args.adam_weight_decay)
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=args.lr_warmup_steps,
                                 num_training_steps=args.max_train_steps)
    ema = None
    if args.use_ema:
        ema = EMAModel(unet.parameters(), decay=args.ema_max_decay, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4,
                       model_cls=type(unet), model_config=unet.config)
    unet, optimizer, loader, lr_scheduler = accelerator.prepare(unet, optimizer, loader, lr_scheduler)
    torch.manual_seed(args.seed + accelerator.process_index)
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    if accelerator.is_main_process and args.logger != "none":
        accelerator.init_trackers("solar-diffusion-upscaler", config={
            k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))})
    return unet, optimizer, loader, lr_scheduler, ema


def save_run(args, accelerator, unet, ema, base, scheduler, summary: dict) -> Path:
    """The end of a run (main process): the EMA weights (if any) into the upscaler, the cascade
    (``save_cascade``) with its model card to ``<out>/pipeline``, the run's ``summary`` (with its
    settings) to ``<out>/upscaler_summary.json``."""
    from solar_diffusion.hub import model_name

    if ema is not None:
        ema.copy_to(accelerator.unwrap_model(unet).parameters())
    upscaler, output_dir = accelerator.unwrap_model(unet).eval(), Path(args.output_dir)
    upscaling = {"residual_std": summary["residual_std"], "noise_level": args.sampling_noise_level,
                 "num_inference_steps": 1 if args.objective == "regression" else args.sampling_steps,
                 "crop_px": args.crop_px}
    if args.objective == "regression":
        upscaling["objective"] = "regression"
    total_batch = summary["total_batch"]
    final = save_cascade(base, upscaler, scheduler, upscaling, output_dir / "pipeline",
                         cascade_card(args, base, summary["high_size"], upscaling, summary["steps"], total_batch))
    summary |= {"upscaling": upscaling, "preset": args.preset, "crop_px": args.crop_px, "processes":
                accelerator.num_processes, "base": model_name(args.base), "dataset": str(args.dataset),
                "torch": torch.__version__}
    atomic_write(output_dir / "upscaler_summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    accelerator.print(f"trained {summary['steps_this_run']} steps in {summary['train_s']:.0f} s "
                      f"({summary['images_per_s']:.1f} crops/s); stopped at {summary['stop']}; cascade in {final}")
    return final


def save_cascade(base, upscaler, scheduler, upscaling: dict, folder: Path, card: str) -> Path:
    """Save the ``base`` pipeline with ``upscaler`` as one pipeline in ``folder``: the base's UNet,
    sampler, labels, normalisation, geometry and guidance, the upscaler sampled with DPM-Solver++
    (second order) on its training schedule."""
    from diffusers import DPMSolverMultistepScheduler

    from solar_diffusion import SolarFlarePipeline
    from solar_diffusion.hub import save_pipeline

    config = base.config
    sampler = DPMSolverMultistepScheduler.from_config(scheduler.config, algorithm_type="dpmsolver++", solver_order=2,
                                                      use_lu_lambdas=True)
    pipe = SolarFlarePipeline(base.unet, base.scheduler, id2label=base.id2label, normalization=config.normalization,
                              geometry=config.geometry, flare_positions=config.flare_positions,
                              distillation=config.get("distillation"), novelty=config.get("novelty"),
                              guidance_by_flux=config.get("guidance_by_flux"), upscaler=upscaler,
                              upscaler_scheduler=sampler, upscaling=upscaling, forecast=config.get("forecast"))
    return save_pipeline(pipe, folder, card)


def cascade_card(args, base, high: int, upscaling: dict, steps: int, total_batch: int) -> str:
    """The cascade's model card: its two stages, how the upscaler was trained, how to call it."""
    from solar_diffusion.hub import model_name

    low = base.unet.config.sample_size
    regression = upscaling.get("objective") == "regression"
    how = "predicts in one pass (an L1 regression, the control of a diffusion upscaler)" if regression else "diffuses"
    steps_text = "in one pass" if regression else f"in {upscaling['num_inference_steps']} DPM-Solver++ steps by default"
    return f"""---
library_name: diffusers
tags: [solar-physics, sdo-aia, diffusion, super-resolution, cascade]
base_model: {model_name(args.base)}
---
# {model_name(args.base)} with a {low} -> {high} px super-resolution stage

The base model draws {low} px full disks as before ({base.conditioning} conditioning, its own
sampler and defaults); a convolution-only upscaler (preset `{args.preset}`) then adds the fine
structure at {high} px: it {how} the residual between the {high} px image and the bilinearly
upsampled base image (divided by its standard deviation {upscaling['residual_std']:.4g}), beside the
upsampled base image with noise of std {upscaling['noise_level']:g} added (model space), {steps_text}.

Upscaler trained for {steps} steps, batch {total_batch} of {args.crop_px} px crops, learning rate
{args.learning_rate:g}, noise augmentation U[0, {args.max_noise_level:g}], flare-map dropout
{args.map_dropout:g}, EMA: {args.use_ema}, on {model_name(args.dataset)}.

```python
from solar_diffusion import SolarFlarePipeline
pipe = SolarFlarePipeline.from_pretrained("path/or/hub-id")
images = pipe("M5", num_images_per_class=4).images   # {high} px
```
"""


def main(argv=None) -> Path:
    return train_upscaler(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
