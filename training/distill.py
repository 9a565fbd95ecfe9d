"""Distil a SolarFlarePipeline's classifier-free guidance into a student: one UNet call per step.

The method is the first stage of guided distillation (Meng et al. 2023, "On distillation of
guided diffusion models", CVPR): the student, a copy of the teacher's UNet, learns to output in
one call what the teacher outputs with guidance,

    target(x_t, t, c) = u + w (c - u),   c = teacher(x_t, t, condition), u = teacher(x_t, t, null),

at noisy training frames x_t (the dataset's own frames, their class, flux and flare map as in
training; every timestep of the teacher's schedule). Guidance is linear in the teacher's output,
so the target holds for noise or v prediction alike. The student is saved as a pipeline whose
``distillation`` config names the guidance ``w`` built in (the pipeline then makes one call per
step and refuses another scale) and its default number of steps; it samples with the teacher's
scheduler (DPM-Solver++ multistep), so the same seeds make comparable images.

``--method progressive`` is the second stage (progressive distillation, Salimans & Ho 2022, as
Meng et al. apply it to a guidance-distilled model): the student samples on a grid of
``--student-steps`` first-order steps (DDIM in its data-prediction form, as DPM-Solver++ of order
1 with trailing timesteps, x0 clipped to the data range as the teacher's sampler does), and one of
its steps learns what ``--teacher-substeps`` of the teacher's make between the same two grid
times. The target is the x0 with which one DDIM step lands where the teacher's steps did,

    x0* = (z_s - (sigma_s / sigma_t) z_t) / (alpha_s - (sigma_s / sigma_t) alpha_t),

given to the student in its own parametrisation (v or noise). The teacher is a guidance-distilled
student (one call per substep) or an undistilled model (guided calls); a progressive student can
be the teacher of the next halving.

    solar-diffusion distill --teacher solar_diffusion/models/default \\
        --dataset data/aia-browse2012-64-3ch --out runs/distill --max-train-steps 2000
    solar-diffusion distill --method progressive --teacher runs/distill/pipeline \\
        --dataset data/aia-browse2012-64-3ch --out runs/distill-4 --student-steps 4 --teacher-substeps 4
    accelerate launch training/distill.py ...                            # same flags

Checkpoints (``checkpoint-<step>``: student, optimiser, LR schedule and RNG states) resume
exactly with ``--resume-from-checkpoint latest``, as in ``train_ddpm``; a used ``--out`` is
refused without it. ``--max-train-minutes`` stops in time, checkpointed, with the student saved.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from solar_diffusion.files import atomic_write
from solar_diffusion.pipelines import (FLARE_MAP_SIGMA_RSUN, apply_guidance, model_output, predicted_x0, rsun_px,
                                       with_flare_map, with_no_flip_planes)
from solar_diffusion.splits import TRAINING_COLUMNS, dataset_argument, dataset_info, image_dtype, load_split
from solar_diffusion.training.data import Collate
from solar_diffusion.training.train_ddpm import (LoopSettings, RunClock, check_output_dir, check_run_settings, end_run,
                                                  make_accelerator, resume_from_checkpoint, training_loader, training_loop)

#: Steps the student samples with by default (DPM-Solver++): the fewest at which the release student
#: matched its teacher's defaults within every margin (BENCHMARKS.md; fewer are faster, not equivalent).
DEFAULT_STUDENT_STEPS = 10
#: A progressive student's grid by default: the few-step sampler's.
DEFAULT_PROGRESSIVE_STEPS = 4
#: The arguments a resumed distillation must share with its start (``check_run_settings``).
RUN_SETTINGS = ("method", "guidance", "student_steps", "teacher_substeps", "train_batch_size",
                "gradient_accumulation_steps", "learning_rate", "lr_warmup_steps", "class_balance", "seed")
METHODS = {"guidance": "guidance distillation (Meng et al. 2023, stage 1)",
           "progressive": "progressive distillation (Salimans & Ho 2022; Meng et al. 2023, stage 2)"}


def method_of(distillation: dict) -> str:
    """The ``--method`` a student was made with, read from its pipeline's ``distillation`` config.

    >>> method_of({"method": METHODS["progressive"]})
    'progressive'
    """
    for key, text in METHODS.items():
        if text == distillation.get("method"):
            return key
    raise ValueError(f"unknown distillation method {distillation.get('method')!r}")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    from solar_diffusion.defaults import bundled_model

    p = parser or argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    teacher = bundled_model()
    p.add_argument("--teacher", default=None if teacher is None else str(teacher), required=teacher is None,
                   help="the pipeline folder to distil" + (" (default: the bundled model)" if teacher else ""))
    p.add_argument("--dataset", required=True, type=dataset_argument,
                   help="its training data: a folder made by build-dataset, a pack, or a Hub dataset id")
    p.add_argument("--out", dest="output_dir", required=True, help="the run's folder")
    p.add_argument("--config-name", default="default", help="the dataset's configuration")
    p.add_argument("--guidance", type=float, default=None,
                   help="the guidance scale built into the student (default: the teacher's default)")
    p.add_argument("--method", choices=sorted(METHODS), default="guidance",
                   help="guidance: one call per step (stage 1, default); progressive: fewer steps (stage 2)")
    p.add_argument("--student-steps", type=int, default=None,
                   help=f"the student's sampling steps (default {DEFAULT_STUDENT_STEPS}; progressive: its grid, "
                        f"default {DEFAULT_PROGRESSIVE_STEPS})")
    p.add_argument("--teacher-substeps", type=int, default=2,
                   help="progressive: the teacher's steps per student step (default 2, a halving)")
    p.add_argument("--train-batch-size", type=int, default=16, help="frames per batch on each process")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1, help="batches per optimiser step")
    p.add_argument("--learning-rate", type=float, default=2e-5, help="AdamW learning rate")
    p.add_argument("--lr-warmup-steps", type=int, default=50, help="optimiser steps of linear learning-rate warm-up")
    p.add_argument("--max-train-steps", type=int, default=2000, help="optimiser steps of the whole run")
    p.add_argument("--max-train-minutes", type=float, default=None, help="wall-clock budget (stops checkpointed)")
    p.add_argument("--class-balance", type=float, default=0.5,
                   help="draw frames with class weights count^-balance (0: as they come; default 0.5)")
    p.add_argument("--checkpointing-steps", type=int, default=250, help="save a checkpoint every this many optimiser steps")
    p.add_argument("--checkpoints-total-limit", type=int, default=2, help="checkpoints kept (the oldest are removed)")
    p.add_argument("--resume-from-checkpoint", default=None, help="'latest' or a checkpoint folder")
    p.add_argument("--logging-steps", type=int, default=10, help="log the loss every this many optimiser steps")
    p.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no", help="autocast precision of the UNet calls (no: float32)")
    p.add_argument("--dataloader-num-workers", type=int, default=0, help="processes decoding the batches (0: in the training process)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, the batches and the noise")
    return p


def check_arguments(args):
    """Refuse values that cannot distil before any work."""
    if args.student_steps is None:
        args.student_steps = DEFAULT_PROGRESSIVE_STEPS if args.method == "progressive" else DEFAULT_STUDENT_STEPS
    for name in ("train_batch_size", "gradient_accumulation_steps", "max_train_steps", "checkpointing_steps",
                 "logging_steps", "student_steps", "teacher_substeps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise ValueError(f"--learning-rate must be a positive number, got {args.learning_rate}")
    if args.guidance is not None and not math.isfinite(args.guidance):
        raise ValueError(f"--guidance must be a finite number, got {args.guidance}")
    if args.max_train_minutes is not None and not args.max_train_minutes > 0:
        raise ValueError(f"--max-train-minutes must be a positive number, got {args.max_train_minutes}")
    if not 0 <= args.class_balance <= 1:
        raise ValueError(f"--class-balance must be in [0, 1], got {args.class_balance}")


@torch.no_grad()
def guided_target(teacher, x_t, t, labels, null, guidance: float | None, flare_maps=None) -> torch.Tensor:
    """The teacher's guided output ``u + w (c - u)`` at ``x_t``: the conditional and the null
    condition in one batched call (a flare model's null map is empty), as the pipeline samples.
    ``guidance=None``: a distilled teacher, whose one conditional call holds its guidance.

    >>> from solar_diffusion import build_unet
    >>> unet = build_unet("tiny", sample_size=8, num_labels=2).eval()
    >>> x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 500])
    >>> out = guided_target(unet, x, t, torch.tensor([0, 1]), 2, 1.0)  # w = 1: the conditional model
    >>> torch.allclose(out, unet(x, t, class_labels=torch.tensor([0, 1])).sample, atol=1e-5)
    True
    """
    if guidance is None:
        return teacher(with_flare_map(x_t, flare_maps), t, class_labels=labels).sample.float()
    both = with_flare_map(torch.cat([x_t, x_t]),
                          torch.cat([torch.zeros_like(flare_maps), flare_maps]) if flare_maps is not None else None)
    conditions = torch.cat([torch.full_like(labels, null), labels])
    uncond, cond = teacher(both, torch.cat([t, t]), class_labels=conditions).sample.float().chunk(2)
    return apply_guidance(uncond, cond, guidance)


def distillation_loss(student, teacher, scheduler, x0, labels, null, guidance: float, flare_maps=None):
    """MSE between the student's one call and the teacher's guided output at a noisy frame (a
    random timestep of the training schedule per frame)."""
    noise = torch.randn_like(x0)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
    x_t = scheduler.add_noise(x0, noise, t)
    target = guided_target(teacher, x_t, t, labels, null, guidance, flare_maps)
    return F.mse_loss(student(with_flare_map(x_t, flare_maps), t, class_labels=labels).sample.float(), target)


def student_scheduler(teacher_scheduler):
    """The progressive student's sampler: first-order DPM-Solver++ (DDIM in data prediction) on
    trailing timesteps (the grid starts at the last training timestep), thresholded as the teacher's.

    >>> from diffusers import DDPMScheduler
    >>> s = student_scheduler(DDPMScheduler(prediction_type="v_prediction"))
    >>> s.set_timesteps(4); s.timesteps.tolist()
    [999, 749, 499, 249]
    """
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler.from_config(
        teacher_scheduler.config, algorithm_type="dpmsolver++", solver_order=1, timestep_spacing="trailing",
        use_lu_lambdas=False, use_karras_sigmas=False, final_sigmas_type="zero", thresholding=True,
        sample_max_value=1.0, lower_order_final=True)


def ddim_step(x0, z, alpha_bar_t, alpha_bar_s) -> torch.Tensor:
    """One deterministic DDIM step from time t to s given the clean estimate ``x0`` (data
    prediction: the noise is the one ``x0`` implies), as first-order DPM-Solver++ steps."""
    noise = (z - alpha_bar_t.sqrt() * x0) / (1 - alpha_bar_t).sqrt()
    return alpha_bar_s.sqrt() * x0 + (1 - alpha_bar_s).sqrt() * noise


def progressive_loss(student, teacher, alphas_cumprod, grid, substeps: int, x0, labels, null,
                     guidance: float | None, prediction_type: str, flare_maps=None):
    """MSE between the student's one step on its ``grid`` and the teacher's ``substeps`` steps
    between the same grid times, in the student's parametrisation (one grid step per frame).

    ``grid``: the student's timesteps, highest first; after the last comes the clean image
    (alpha_bar = 1). The teacher's substeps are evenly spaced in t and clip x0 to [-1, 1].
    """
    n, device = len(grid), x0.device
    times = torch.cat([torch.as_tensor(grid, dtype=torch.float64), torch.tensor([-1.0], dtype=torch.float64)])
    i = torch.randint(0, n, (x0.shape[0],))
    abar = torch.cat([alphas_cumprod.double(), torch.ones(1, dtype=torch.float64)])  # index -1: the clean image

    def alpha_bar(t):
        return abar[t.long()].float().view(-1, 1, 1, 1).to(device)

    t, s = times[i], times[i + 1]
    a_t, a_s = alpha_bar(t), alpha_bar(s)
    z_t = a_t.sqrt() * x0 + (1 - a_t).sqrt() * torch.randn_like(x0)
    with torch.no_grad():
        z = z_t
        points = [torch.round(t + (s - t) * j / substeps) for j in range(substeps + 1)]  # t ... s
        for tj, tk in zip(points, points[1:]):
            out = guided_target(teacher, z, tj.long().to(device), labels, null, guidance, flare_maps)
            estimate = predicted_x0(out, z, alpha_bar(tj), prediction_type).clamp(-1, 1)
            z = ddim_step(estimate, z, alpha_bar(tj), alpha_bar(tk))
        ratio = (1 - a_s).sqrt() / (1 - a_t).sqrt()
        target = model_output((z - ratio * z_t) / (a_s.sqrt() - ratio * a_t.sqrt()), z_t, a_t, prediction_type)
    return F.mse_loss(student(with_flare_map(z_t, flare_maps), t.long().to(device), class_labels=labels).sample.float(),
                      target)


def distill(args) -> Path:
    """Run the distillation; returns the student's pipeline folder (``<out>/pipeline``)."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler

    from solar_diffusion import null_condition
    from solar_diffusion.generate import load_pipeline
    from solar_diffusion.hub import model_name

    start = time.monotonic()
    check_arguments(args)
    output_dir = Path(args.output_dir)
    check_output_dir(output_dir, args.resume_from_checkpoint)
    teacher_pipe = load_pipeline(args.teacher)
    progressive = args.method == "progressive"
    if teacher_pipe.is_distilled and not progressive:
        raise ValueError(f"{args.teacher} is already a distilled student: distil its teacher instead, or make "
                         "fewer steps of it with --method progressive")
    guidance = teacher_pipe.guidance_scales(args.guidance)[0]  # one scale to build in, not the teacher's table
    teacher_guidance = None if teacher_pipe.is_distilled else guidance  # a student's one call holds its guidance
    accelerator = make_accelerator(output_dir, args.seed, args.gradient_accumulation_steps, args.mixed_precision)
    collate, loader = teacher_data(args, teacher_pipe)

    teacher = teacher_pipe.unet.eval().requires_grad_(False)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    scheduler = DDPMScheduler.from_config(teacher_pipe.scheduler.config)  # the training schedule's noise
    sampler = student_scheduler(teacher_pipe.scheduler) if progressive else teacher_pipe.scheduler
    if progressive:
        sampler.set_timesteps(args.student_steps)
        grid = sampler.timesteps.tolist()
        prediction_type = scheduler.config.prediction_type
    null = null_condition(teacher.config)
    optimizer = torch.optim.AdamW(student.parameters(), lr=args.learning_rate, weight_decay=0.0)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=args.lr_warmup_steps)
    student, optimizer, loader, lr_scheduler = accelerator.prepare(student, optimizer, loader, lr_scheduler)
    teacher.to(accelerator.device)
    torch.manual_seed(args.seed + accelerator.process_index)

    check_run_settings(output_dir, {k: getattr(args, k) for k in RUN_SETTINGS} | {
        "teacher": model_name(args.teacher)}, args.resume_from_checkpoint,
        {k: build_parser().get_default(k) for k in RUN_SETTINGS})
    global_step = resume_from_checkpoint(accelerator, output_dir, args.resume_from_checkpoint)
    output_dir.mkdir(parents=True, exist_ok=True)

    def batch_loss(batch) -> torch.Tensor:
        """The distillation loss of a batch as the loader gives it (stored frames, conditions, flare maps)."""
        images, labels, *flare_maps = batch
        x0 = collate.to_model_space(images)
        maps = with_no_flip_planes(flare_maps[0], teacher) if flare_maps else None  # a flip-trained teacher: no flip
        if progressive:
            return progressive_loss(student, teacher, scheduler.alphas_cumprod, grid, args.teacher_substeps, x0,
                                    labels, null, teacher_guidance, prediction_type, maps)
        return distillation_loss(student, teacher, scheduler, x0, labels, null, guidance, maps)

    total_batch = args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
    clock = RunClock(start, args.max_train_minutes, total_batch, global_step)
    settings = LoopSettings(args.max_train_steps, args.checkpointing_steps, args.checkpoints_total_limit,
                            args.logging_steps, checkpoint_last_step=True, name="distill")
    global_step, stop = training_loop(accelerator, student, optimizer, lr_scheduler, loader, batch_loss, settings,
                                      output_dir, clock, global_step)

    final = output_dir / "pipeline"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        distillation = distillation_config(args, guidance, global_step, total_batch)
        save_student(accelerator.unwrap_model(student).eval(), sampler, teacher_pipe, distillation, final)
        summary = clock.summary(global_step, stop) | {"distillation": distillation, "torch": torch.__version__}
        atomic_write(output_dir / "distill_summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
        accelerator.print(f"distilled {summary['steps_this_run']} steps in {summary['train_s']:.0f} s "
                          f"({summary['images_per_s']:.1f} frames/s); student in {final}")
    end_run(accelerator)
    return final


def teacher_data(args, teacher_pipe):
    """The training frames as the teacher was trained on them (its data unit, normalisation, size,
    class ids and flare maps): the batch maker (``Collate``, batches as stored) and the loader."""
    info = dataset_info(args.dataset)
    unit = teacher_pipe.normalization.unit
    if info["unit"] != unit:
        raise ValueError(f"{args.teacher} makes {unit!r} images, {args.dataset} holds {info['unit']!r}")
    flare_model = teacher_pipe.conditioning == "flare"
    columns = TRAINING_COLUMNS + (("flares",) if flare_model else ())
    train_ds = load_split(args.dataset, "train", args.config_name, columns=columns)
    if len(train_ds) < args.train_batch_size:
        raise ValueError(f"the train split of {args.dataset} has {len(train_ds)} frames, fewer than one batch "
                         f"({args.train_batch_size}): lower --train-batch-size")
    names = train_ds.features["flare_class"].names
    label2id = {v: k for k, v in teacher_pipe.id2label.items()}
    id_map = None if teacher_pipe.conditioning != "class" else \
        {i: label2id[n] for i, n in enumerate(names) if n in label2id}
    image_size = teacher_pipe.unet.config.sample_size
    geometry = teacher_pipe.config.geometry
    collate = Collate(teacher_pipe.normalization, image_size, id_map, raw=True, dtype=image_dtype(unit),
                      flare_sigma_px=FLARE_MAP_SIGMA_RSUN * rsun_px(geometry, image_size) if flare_model else None,
                      dataset_size=info["config"]["size"])
    loader = training_loader(train_ds, train_ds["flare_class"], collate, args.train_batch_size, args.seed,
                             args.class_balance, args.dataloader_num_workers)
    return collate, loader


def distillation_config(args, guidance: float, steps: int, total_batch: int) -> dict:
    """The student pipeline's ``distillation`` config: how it was made and how it samples."""
    from solar_diffusion.hub import model_name

    distillation = {"method": METHODS[args.method], "teacher": model_name(args.teacher),
                    "guidance_scale": guidance, "num_inference_steps": args.student_steps, "steps": steps,
                    "train_batch_size": total_batch, "learning_rate": args.learning_rate,
                    "dataset": model_name(args.dataset)}
    if args.method == "progressive":
        distillation["teacher_steps"] = args.student_steps * args.teacher_substeps
    return distillation


def save_student(unet, sampler, teacher_pipe, distillation: dict, folder: Path):
    """Save the student as a pipeline in ``folder``: its UNet and sampler, its ``distillation``
    config and model card, and its teacher's labels, normalisation, geometry, flare positions and
    novelty guidance."""
    from solar_diffusion import SolarFlarePipeline
    from solar_diffusion.hub import save_pipeline

    pipe = SolarFlarePipeline(unet, sampler, id2label=teacher_pipe.id2label,
                              normalization=teacher_pipe.config.normalization, geometry=teacher_pipe.config.geometry,
                              flare_positions=teacher_pipe.config.flare_positions, distillation=distillation,
                              novelty=teacher_pipe.config.get("novelty"))
    save_pipeline(pipe, folder, student_card(distillation, teacher_pipe, sampler))


def student_card(distillation: dict, teacher_pipe, sampler) -> str:
    """The student's model card: what it is, how it was made and how to call it."""
    teacher = distillation["teacher"]
    return f"""---
library_name: diffusers
tags: [solar-physics, sdo-aia, diffusion, distillation]
base_model: {teacher}
---
# {"Progressive" if method_of(distillation) == "progressive" else "Guidance-distilled"} student of {teacher}

One UNet call per sampling step: classifier-free guidance {distillation['guidance_scale']:g} is built
in ({distillation['method']}), so it cannot sample with another guidance scale. It samples with
{type(sampler).__name__}{_grid(distillation)} in {distillation['num_inference_steps']} steps by default.
Conditioning ({teacher_pipe.conditioning}), data unit, normalisation and geometry are its teacher's.

Distilled for {distillation['steps']} steps, batch {distillation['train_batch_size']}, learning rate
{distillation['learning_rate']:g}, on {distillation['dataset']}.

```python
from solar_diffusion import SolarFlarePipeline
pipe = SolarFlarePipeline.from_pretrained("path/or/hub-id")
images = pipe("M5", num_images_per_class=4).images   # {distillation['num_inference_steps']} steps, one call each
```
"""


def _grid(distillation: dict) -> str:
    steps = distillation.get("teacher_steps")
    return (f" (first order, on its own trailing grid; each step learnt from "
            f"{steps // distillation['num_inference_steps']} of its teacher's)") if steps else ""


def main(argv=None) -> Path:
    return distill(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
