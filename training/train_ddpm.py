"""Train the class-conditional DDPM of SolarFlarePipeline on a dataset made by ``build-dataset``.

Launch with accelerate (one CPU, GPUs, nodes; see ``training/accelerate_configs``)::

    accelerate launch training/train_ddpm.py --dataset data/aia171-64 --output-dir runs/ddpm
    solar-diffusion train --dataset data/aia171-64 --output-dir runs/ddpm      # same flags

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

Augmentations are opt-in and physically safe only: flips are never used (an east-west flip
reverses the solar rotation and the leading/trailing order of active regions; a north-south
flip swaps the hemispheres and the visible pole), only small rotations about disk centre
(``--augment-rotation`` degrees, like the P-angle and roll uncertainty) and small brightness
changes (``--augment-brightness``, like exposure and degradation differences).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from solar_diffusion import null_condition
from solar_diffusion.splits import dataset_info, load_split
from solar_diffusion.training.data import BalancedSampler, Collate


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help="folder made by solar-diffusion build-dataset")
    p.add_argument("--config-name", default=None, help="dataset config (default: the dataset's default)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--preset", default="small", help="UNet preset: tiny, small or paper")
    p.add_argument("--conditioning", default="class", choices=["class", "flux"],
                   help="GOES labels (class), or the continuous log10 peak flux (flux: the flare's peak flux, "
                        "else the XRS flux at the frame's time, else the null value)")
    p.add_argument("--init-from", default=None,
                   help="start from the UNet of a saved pipeline (fine-tuning, or continuing from bundled weights)")
    p.add_argument("--size", "--resolution", dest="size", type=int, default=None,
                   help="image size in pixels to train at (default: the dataset's)")
    p.add_argument("--norm-lo", type=float, default=None, help="normalisation clip low (default 5 DN/s; 0 for browse)")
    p.add_argument("--norm-hi", type=float, default=None, help="normalisation clip high (default 3500 DN/s; 255)")
    p.add_argument("--train-batch-size", type=int, default=16)
    p.add_argument("--gradient-accumulation-steps", type=int, default=1)
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument("--lr-scheduler", default="cosine", help="constant, linear, cosine, ... (diffusers get_scheduler)")
    p.add_argument("--lr-warmup-steps", type=int, default=200)
    p.add_argument("--max-train-steps", type=int, default=10000)
    p.add_argument("--stop-at-step", type=int, default=None,
                   help="end this run at this step (checkpointed), keeping the schedule of --max-train-steps")
    p.add_argument("--adam-weight-decay", type=float, default=1e-4)
    p.add_argument("--label-dropout", type=float, default=0.1, help="probability of the null class (guidance)")
    p.add_argument("--class-balance", type=float, default=0.0,
                   help="sample frames with weight count(label)^-b: 0 = as in the data, 1 = classes equally often")
    p.add_argument("--num-train-timesteps", type=int, default=1000)
    p.add_argument("--beta-schedule", default="linear", help="linear (the paper), scaled_linear, squaredcos_cap_v2")
    p.add_argument("--prediction-type", default="v_prediction", choices=["epsilon", "v_prediction"],
                   help="v_prediction (default) or epsilon (the paper's; leaves each image's mean brightness "
                        "uncontrolled on full-disk images, see the module docstring)")
    p.add_argument("--snr-gamma", type=float, default=None, help="min-SNR loss weighting gamma (e.g. 5)")
    p.add_argument("--use-ema", action="store_true", help="keep an EMA of the weights (saved as the model)")
    p.add_argument("--ema-max-decay", type=float, default=0.9999)
    p.add_argument("--mixed-precision", default=None, choices=["no", "fp16", "bf16"])
    p.add_argument("--checkpointing-steps", type=int, default=500)
    p.add_argument("--checkpoints-total-limit", type=int, default=2)
    p.add_argument("--resume-from-checkpoint", default=None, help="a checkpoint folder or 'latest'")
    p.add_argument("--validation-steps", type=int, default=500, help="validation loss every N steps (0: never)")
    p.add_argument("--sample-steps", type=int, default=1000, help="per-class sample grid every N steps (0: never)")
    p.add_argument("--logger", default="tensorboard", choices=["tensorboard", "none"])
    p.add_argument("--dataloader-num-workers", type=int, default=0)
    p.add_argument("--augment-rotation", type=float, default=0.0, help="max rotation about disk centre, degrees")
    p.add_argument("--augment-brightness", type=float, default=0.0, help="max relative brightness change")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--push-to-hub", action="store_true")
    p.add_argument("--hub-model-id", default=None)
    p.add_argument("--hub-private", action="store_true")
    return p


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------


def diffusion_loss(unet, scheduler, x0, labels, prediction_type, null=None, label_dropout=0.0, snr_gamma=None):
    """One DDPM training loss: noise, label dropout to the ``null`` condition (``null_condition``),
    (min-SNR weighted) MSE."""
    from diffusers.training_utils import compute_snr

    noise = torch.randn_like(x0)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
    if label_dropout:
        drop = torch.rand(labels.shape, device=labels.device) < label_dropout
        labels = torch.where(drop, torch.full_like(labels, null), labels)
    noisy = scheduler.add_noise(x0, noise, t)
    target = noise if prediction_type == "epsilon" else scheduler.get_velocity(x0, noise, t)
    pred = unet(noisy, t, class_labels=labels).sample
    if snr_gamma is None:
        return F.mse_loss(pred.float(), target.float())
    snr = compute_snr(scheduler, t)
    weight = torch.clamp(snr, max=snr_gamma) / (snr if prediction_type == "epsilon" else snr + 1)
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * weight).mean()


def init_from_pipeline(unet, pipeline_dir, id2label):
    """Load the UNet weights of a saved pipeline into ``unet`` (same preset, size and labels)."""
    from diffusers import UNet2DModel

    from solar_diffusion import SolarFlarePipeline

    source = Path(pipeline_dir)
    config = SolarFlarePipeline.load_config(str(source))
    labels = {int(k): v for k, v in config.get("id2label", {}).items()}
    if labels != id2label:
        raise ValueError(f"{source} was trained on labels {labels}, this dataset has {id2label}")
    pretrained = UNet2DModel.from_pretrained(str(source), subfolder="unet")
    def plain(config):
        return json.loads(json.dumps({k: v for k, v in config.items() if not k.startswith("_")}))

    if plain(pretrained.config) != plain(unet.config):
        raise ValueError(f"the UNet in {source} differs from preset/size asked for: compare its unet/config.json")
    unet.load_state_dict(pretrained.state_dict())
    return unet


def _checkpoints(output_dir: Path) -> list[Path]:
    return sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def train(args, hub_api=None) -> Path:
    """Run training; returns the folder of the saved pipeline (``output_dir/pipeline``)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from solar_diffusion import ClipLogNormalization, SolarFlarePipeline, build_unet, label_vocabulary
    from solar_diffusion.generate import use_scheduler
    from solar_diffusion.hub import push_to_hub, save_pipeline
    from solar_diffusion.maps import disk_geometry

    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.logger == "none" else args.logger,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(args.seed)

    # data: the label vocabulary is that of the training split
    info = dataset_info(args.dataset)
    train_ds = load_split(args.dataset, "train", args.config_name)
    names = train_ds.features["flare_class"].names
    present = sorted(set(int(i) for i in train_ds["flare_class"]))
    id2label = label_vocabulary([names[i] for i in present])
    label2id = {v: k for k, v in id2label.items()}
    id_map = {i: label2id[names[i]] for i in present}
    sample_labels = list(id2label.values())
    if args.conditioning == "flux":
        sample_labels = [label for label in id2label.values() if label != "quiet"]
        id2label, id_map = {}, None
    unit = info["unit"]
    default_norm = ClipLogNormalization.for_unit(unit)
    normalization = ClipLogNormalization(
        lo=default_norm.lo if args.norm_lo is None else args.norm_lo,
        hi=default_norm.hi if args.norm_hi is None else args.norm_hi,
        log=default_norm.log, unit=unit,
    )
    dataset_size = info["config"]["size"]
    image_size = args.size or dataset_size
    channels = info["config"]["channels"]
    geometry = disk_geometry(image_size, info["rsun_px_median"] * image_size / dataset_size,
                             date_obs=info["t_obs_median_train"].split(".")[0].replace(" ", "T"),
                             wavelengths_angstrom=[float(c) for c in channels])
    collate = Collate(normalization, image_size, id_map, args.augment_rotation, args.augment_brightness)
    sampler = BalancedSampler(train_ds["flare_class"], args.class_balance, args.seed) if args.class_balance else None
    loader = torch.utils.data.DataLoader(train_ds, batch_size=args.train_batch_size, shuffle=sampler is None,
                                         sampler=sampler, collate_fn=collate, num_workers=args.dataloader_num_workers,
                                         drop_last=True, generator=torch.Generator().manual_seed(args.seed))
    val_batch = None
    if args.validation_steps:
        try:
            val_ds = load_split(args.dataset, "validation", args.config_name)
            keep = [i for i, c in enumerate(val_ds["flare_class"]) if id_map is None or int(c) in id_map][:64]
            if keep:
                val_batch = collate([val_ds[i] for i in keep])
        except (ValueError, KeyError):
            accelerator.print("no validation split: validation loss skipped")

    # model
    unet = build_unet(args.preset, image_size, len(id2label), in_channels=len(channels),
                      conditioning=args.conditioning)
    if args.init_from:
        unet = init_from_pipeline(unet, args.init_from, id2label)
    noise_scheduler = DDPMScheduler(num_train_timesteps=args.num_train_timesteps, beta_schedule=args.beta_schedule,
                                    prediction_type=args.prediction_type)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate, weight_decay=args.adam_weight_decay)
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=args.lr_warmup_steps,
                                 num_training_steps=args.max_train_steps)
    ema = None
    if args.use_ema:
        ema = EMAModel(unet.parameters(), decay=args.ema_max_decay, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4,
                       model_cls=type(unet), model_config=unet.config)
    unet, optimizer, loader, lr_scheduler = accelerator.prepare(unet, optimizer, loader, lr_scheduler)
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    null = null_condition(accelerator.unwrap_model(unet).config)

    # resume
    global_step = 0
    if args.resume_from_checkpoint:
        path = _checkpoints(output_dir)[-1] if args.resume_from_checkpoint == "latest" and _checkpoints(output_dir) \
            else (None if args.resume_from_checkpoint == "latest" else Path(args.resume_from_checkpoint))
        if path is None:
            accelerator.print("no checkpoint to resume from: starting afresh")
        else:
            accelerator.load_state(str(path))
            global_step = int(path.name.split("-")[1])
            accelerator.print(f"resumed from {path} at step {global_step}")
    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    if accelerator.is_main_process and args.logger != "none":
        accelerator.init_trackers("solar-diffusion-ddpm", config={k: v for k, v in vars(args).items()
                                                                  if isinstance(v, (int, float, str, bool))})

    def make_pipeline():
        model = accelerator.unwrap_model(unet)
        pipe = SolarFlarePipeline(model, noise_scheduler, id2label=id2label, normalization=normalization.to_dict(),
                                  geometry=geometry)
        pipe.set_progress_bar_config(disable=True)
        return use_scheduler(pipe, "dpm")  # the saved pipeline samples with DPM-Solver++

    losses = []
    progress = tqdm(total=args.max_train_steps, initial=global_step, desc="steps",
                    disable=not accelerator.is_local_main_process)
    unet.train()
    while global_step < args.max_train_steps:
        epoch = global_step // steps_per_epoch
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        skip = (global_step % steps_per_epoch) * args.gradient_accumulation_steps
        epoch_loader = accelerator.skip_first_batches(loader, skip) if skip else loader
        for x0, labels in epoch_loader:
            with accelerator.accumulate(unet):
                loss = diffusion_loss(unet, noise_scheduler, x0, labels, args.prediction_type, null,
                                      args.label_dropout, args.snr_gamma)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(unet.parameters(), 1.0)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            if ema is not None:
                ema.step(unet.parameters())
            global_step += 1
            loss_value = accelerator.gather(loss.detach()).mean().item()
            losses.append({"step": global_step, "loss": loss_value})
            logs = {"loss": loss_value, "lr": lr_scheduler.get_last_lr()[0]}
            if ema is not None:
                logs["ema_decay"] = ema.cur_decay_value
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.4f}")
            if args.validation_steps and val_batch is not None and global_step % args.validation_steps == 0:
                logs["validation_loss"] = validation_loss(unet, noise_scheduler, val_batch, accelerator, args)
            accelerator.log(logs, step=global_step)
            if global_step % args.checkpointing_steps == 0 and accelerator.is_main_process:
                save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
            if args.sample_steps and global_step % args.sample_steps == 0 and accelerator.is_main_process:
                sample_grid(make_pipeline(), ema, unet, sample_labels,
                            output_dir / "samples" / f"step-{global_step:07d}.png")
            if args.stop_at_step and global_step >= args.stop_at_step:
                if global_step % args.checkpointing_steps and accelerator.is_main_process:
                    save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
                break
            if global_step >= args.max_train_steps:
                break
        if args.stop_at_step and global_step >= args.stop_at_step:
            break
    progress.close()

    accelerator.wait_for_everyone()
    final = output_dir / "pipeline"
    if accelerator.is_main_process:
        if ema is not None:
            ema.copy_to(accelerator.unwrap_model(unet).parameters())
        pipe = make_pipeline()
        card = _model_card(args, info, pipe, global_step)
        save_pipeline(pipe, final, card)
        with open(output_dir / "losses.jsonl", "a") as handle:
            for row in losses:
                handle.write(json.dumps(row) + "\n")
        if args.push_to_hub:
            push_to_hub(pipe, args.hub_model_id or output_dir.name, card, api=hub_api, private=args.hub_private)
    accelerator.end_training()
    return final


def save_checkpoint(accelerator, output_dir: Path, step: int, total_limit: int | None):
    """``accelerator.save_state`` into ``checkpoint-<step>``, keeping at most ``total_limit``."""
    if total_limit:
        existing = _checkpoints(output_dir)
        for old in existing[: max(0, len(existing) - total_limit + 1)]:
            shutil.rmtree(old)
    tmp = output_dir / f".checkpoint-{step}.tmp"
    accelerator.save_state(str(tmp))
    tmp.rename(output_dir / f"checkpoint-{step}")


@torch.no_grad()
def validation_loss(unet, scheduler, batch, accelerator, args) -> float:
    """Loss on a fixed validation batch with fixed noise and timesteps (comparable over time)."""
    x0, labels = (b.to(accelerator.device) for b in batch)
    state = torch.random.get_rng_state()
    torch.manual_seed(1234)
    unet.eval()
    loss = diffusion_loss(unet, scheduler, x0, labels, args.prediction_type)
    unet.train()
    torch.random.set_rng_state(state)
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
               num_inference_steps=20, output_type="pt")
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
