"""The ``solar-diffusion`` command line.

Each subcommand's arguments are added only when that subcommand runs, so ``solar-diffusion
--help`` answers without importing torch, diffusers or sunpy.
"""

from __future__ import annotations

import argparse
import gc
import math
import re
import shlex
import sys
from importlib import import_module
from pathlib import Path

from solar_diffusion import __version__
from solar_diffusion.defaults import bundled_model
from solar_diffusion.startup import collector_paused


def _add_model(p, what="saved pipeline folder or Hub id"):
    default = bundled_model()
    p.add_argument("--model", default=None if default is None else str(default), required=default is None,
                   help=what + ", or a model's name as a run records it (models/default)"
                   + ("; default: the bundled model" if default else ""))


def _add_sampling(p, scheduler_default: str):
    """The sampling flags generate, evaluate and augment share: one flag and one meaning per concept."""
    from solar_diffusion.generate import SCHEDULERS
    from solar_diffusion.pipelines import DEFAULT_GUIDANCE, DEFAULT_STEPS

    p.add_argument("--steps", type=int, default=None,
                   help=f"denoising steps (default {DEFAULT_STEPS}, or a distilled model's own)")
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=None,
                   help="ddpm, ddim, dpm (DPM-Solver++) or dpm-sde (its stochastic form); default: " + scheduler_default)
    p.add_argument("--guidance", type=float, default=None,
                   help=f"classifier-free guidance scale (default: per image by its requested flux where the model "
                        f"has a guidance_by_flux table, else {DEFAULT_GUIDANCE:g}; a distilled model has its own built in)")
    p.add_argument("--novelty-target", type=float, default=None,
                   help="distance the novelty guidance keeps from the nearest training layout, in day distances "
                        "(0: off; default: the model's own, see `solar-diffusion novelty`)")


def _add_flare_position(p, what: str):
    p.add_argument("--flare-position", action="append", dest="flare_positions", metavar="WHERE",
                   help=f"a flare model's flare position for {what} of the same rank: a NOAA location (S15W01), "
                        "helioprojective arcsec (-475,397) or pixels of the base model's image (px:20,9; 64 px for "
                        "the bundled model, whatever --image-size); repeat; default: drawn from the training flares")
    p.add_argument("--date", default=None, type=_iso_date,
                   help="the date the images stand for: where NOAA locations are seen from Earth and the observer "
                        "of FITS headers (default: the model's nominal date)")


def _add_generate(p):
    from solar_diffusion.generate import DTYPES, FORMATS

    _add_model(p)
    p.add_argument("--flare-class", action="append", dest="flare_classes", metavar="CLASS",
                   help="label ('X', 'quiet'), full class ('M2.5'), for a flux or flare model also a GOES-R peak flux "
                        "in W m^-2 ('1e-4'); repeat for several (default: every class the model knows, as 'all')")
    p.add_argument("--num-images", type=int, default=4, help="images per class (default 4)")
    _add_sampling(p, "the model's own (DPM-Solver++ for the bundled model and for a model saved with the training "
                     "schedule; a few-step student's grid)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first image; image k uses seed + k")
    p.add_argument("--out", default="generated", help="output folder (default ./generated)")
    p.add_argument("--format", choices=FORMATS, default="png",
                   help="png (8-bit preview), fits (data unit, synthetic AIA header) or npy (float32, CHW, data unit)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per pipeline call (default 16 at 64 px, as many pixels at other sizes: 4 at 128 px, "
                        "1 at 256 px)")
    p.add_argument("--image-size", type=int, default=None,
                   help="size of the images: a cascade's upscaler's by default (256 px for the bundled model), or "
                        "its base model's (--image-size 64: the bundled model's base stage alone, faster)")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("--dtype", default="auto", choices=["auto", *DTYPES],
                   help="the UNet's precision (default auto: bfloat16 on a CUDA GPU that supports it, else float32)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the UNet (slow first batch; pays off for hundreds of images)")
    _add_flare_position(p, "the --flare-class")
    p.add_argument("--list-classes", action="store_true", help="print the model's labels, lowest first, and exit")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the earlier run in --out (the files its generation.json names); default: refuse")


def _generate(args) -> int:
    from diffusers.utils import logging as diffusers_logging

    from solar_diffusion.generate import generate_to_folder, load_pipeline, unet_dtype, use_scheduler

    diffusers_logging.disable_progress_bar()
    pipe = load_pipeline(args.model, device=args.device, compile=args.compile, dtype=unet_dtype(args.dtype, args.device))
    if args.list_classes:
        if pipe.conditioning in ("flux", "flare"):
            print("continuous: GOES peak flux; ask for a class (A1.0 ... X20) or a GOES-R flux in W m^-2"
                  + ("; 'quiet' for no flare; --flare-position says where" if pipe.conditioning == "flare" else ""))
        for class_id, label in pipe.id2label.items():
            print(f"{class_id}\t{label}")
        return 0
    for name, value in (("--num-images", args.num_images), ("--steps", args.steps), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if args.guidance is not None and not math.isfinite(args.guidance):
        raise ValueError(f"--guidance must be a finite number, got {args.guidance}")
    pipe.guidance_setting(args.guidance)  # a guidance the model cannot take is refused before any work
    if args.scheduler or type(pipe.scheduler).__name__ == "DDPMScheduler":  # a training schedule as saved
        use_scheduler(pipe, args.scheduler or "dpm")  # (1000 ancestral steps): DPM-Solver++ as train_ddpm saves
    pipe.novelty_setting(args.novelty_target)  # a novelty guidance the sampler cannot take, too
    pipe.set_progress_bar_config(disable=True)  # one bar over the images instead of one per batch
    records = generate_to_folder(
        pipe,
        args.out,
        flare_classes=args.flare_classes,
        num_images=args.num_images,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        seed=args.seed,
        file_format=args.format,
        batch_size=args.batch_size,
        model_name=str(args.model),
        flare_positions=_flare_positions(args, pipe),
        overwrite=args.overwrite,
        progress=True,
        novelty_target=args.novelty_target,
        log=print,
        date_obs=args.date,
        image_size=args.image_size,
    )
    print(_written(records, Path(args.out), args.format))
    return 0


def _iso_date(text: str) -> str:
    """``--date`` as an ISO 8601 UTC time (a date alone is its midnight).

    >>> _iso_date("2017-09-06")
    '2017-09-06T00:00:00'
    """
    from solar_diffusion.times import utc_time  # pandas: only when a date is given

    try:
        return utc_time(text).strftime("%Y-%m-%dT%H:%M:%S")
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (e.g. 2017-09-06 or 2017-09-06T12:00)") from None


def _flare_positions(args, pipe) -> list | None:
    """``--flare-position`` values as the pipeline takes them (``positions.flare_positions``: sunpy,
    seconds to import, only where positions are given)."""
    if not args.flare_positions:
        return None
    from solar_diffusion.positions import flare_positions

    return flare_positions(args.flare_positions, pipe, args.date)


def _written(records: list, out: Path, file_format: str) -> str:
    """generate's last line: the images and every file written, counted."""
    images = sum(len(record["files"]) for record in records)
    sheets = len(list(out.glob("contact_sheet*.png")))
    return (f"wrote {len(records)} images as {images + sheets + 1} files to {out}: {images} {file_format} files, "
            f"{sheets} contact sheet{'s' * (sheets != 1)} and generation.json")


def _add_build_dataset(p):
    from solar_diffusion.dataset_builder.build import DEFAULT_SPLITS
    from solar_diffusion.dataset_builder.images import DEFAULT_FOV_RSUN

    src = p.add_argument_group("local sources")
    src.add_argument("--images", help="folder of FITS/JP2/JPEG/PNG images, or an index CSV (file + time column)")
    src.add_argument("--flare-list", action="append", default=[], metavar="PATH",
                     help="HEK export, SWPC event list or GOES-16 flare summary (repeat for several)")
    src.add_argument("--flare-list-gaps", action="append", default=[], metavar="PATH",
                     help="windows the flare lists are known to miss, lines 'YYYY-M-D to YYYY-M-D' "
                          "(e.g. hek_flares_empty_months.csv); frames inside them are reported")
    src.add_argument("--max-quiet-days", type=float, default=14.0,
                     help="report stretches longer than this with no flare in progress (default 14)")
    src.add_argument("--goes", action="append", default=[], metavar="PATH",
                     help="GOES XRS file or folder of them, for the background flux (repeat for several)")
    online = p.add_argument_group("online sources (HEK, GOES XRS via Fido, AIA via JSOC)")
    online.add_argument("--start", help="start time (UTC), e.g. 2012-01-01")
    online.add_argument("--end", help="end time (UTC)")
    online.add_argument("--cadence", default="1h", help="image cadence (default 1h)")
    online.add_argument("--jsoc-email", help="e-mail address registered with JSOC (needed for AIA downloads)")
    online.add_argument("--cache-dir", default="~/.cache/solar-diffusion", help="download cache")
    p.add_argument("--out", required=True, help="output folder of the dataset")
    p.add_argument("--size", type=int, default=128, help="image size in pixels (default 128)")
    p.add_argument("--channels", default="171", help="comma-separated AIA channels, e.g. 171 or 171,131,94")
    p.add_argument("--composite-channels", default="171,131,94",
                   help="channels of the red, green, blue planes of RGB browse composites")
    p.add_argument("--window", type=float, default=0.0, help="minutes added before/after each flare (default 0)")
    p.add_argument("--forecast-hours", type=float, default=None, metavar="H",
                   help="forecast labels: a frame is labelled by the strongest flare peaking in the H hours after it, at "
                        "its position rotated to the frame's time; frames with a flare in progress are left out (the "
                        "data of a forecast model; default: labels of the flares in progress)")
    p.add_argument("--splits", default=DEFAULT_SPLITS,
                   help=f"month blocks per split (default {DEFAULT_SPLITS}; absolute: train=2012-01:2012-06)")
    p.add_argument("--fov-rsun", type=float, default=DEFAULT_FOV_RSUN, help="field of view in solar radii")
    p.add_argument("--limb-mask", type=float, default=None, help="zero pixels beyond this many solar radii")
    p.add_argument("--shard-size", type=int, default=256, help="frames per Parquet shard")
    p.add_argument("--config-name", default="default", help="dataset config name")
    p.add_argument("--register", action="store_true", help="register FITS to level 1.5 with aiapy")
    p.add_argument("--pointing-table", help="aiapy pointing table file (offline pointing update)")
    p.add_argument("--correction-table", help="aiapy degradation correction table file")
    p.add_argument("--num-proc", type=int, default=1, help="worker processes (default 1)")


def _build_dataset(args) -> int:
    from solar_diffusion.dataset_builder.build import build_from_args

    result = build_from_args(args)
    return 0 if not result.counts.empty else 1


def _training_script(module: str, entry: str, saved: str) -> tuple:
    """The (add arguments, run) pair of a sub-command that is a training script of
    ``solar_diffusion.training``: its own ``build_parser`` and entry point, imported only when the
    command is used (they import torch and accelerate)."""
    def add_arguments(p):
        import_module(f"solar_diffusion.training.{module}").build_parser(p)

    def run(args) -> int:
        print(f"{saved}: {getattr(import_module(f'solar_diffusion.training.{module}'), entry)(args)}")
        return 0

    return add_arguments, run


def _add_evaluate_cascade(p):
    from solar_diffusion.fine_structure import BROWSE_BLOCK_CYCLES
    from solar_diffusion.splits import dataset_argument

    _add_model(p, "saved cascade (a pipeline with an upscaler)")
    p.add_argument("--dataset", required=True, type=dataset_argument,
                   help="a build at the cascade's output size (e.g. 256 px), same unit and channels")
    p.add_argument("--split", default="test", help="the split of real frames compared against (default test)")
    p.add_argument("--num-images", type=int, default=32, help="generated images per class (quiet, C, M, X)")
    p.add_argument("--real-frames", type=int, default=256, help="real frames of the split drawn (default 256)")
    p.add_argument("--upscaler-steps", type=int, default=None,
                   help="denoising steps of the upscaler (default: the model's own)")
    p.add_argument("--noise-level", type=float, default=None,
                   help="noise augmentation of the base image at sampling (default: the model's own)")
    p.add_argument("--batch-size", type=int, default=16, help="images per pipeline call")
    p.add_argument("--seed", type=int, default=0, help="seed of the drawn frames and of image k of each class")
    p.add_argument("--spread-seeds", type=int, default=8,
                   help="seeds of one base frame whose spread says what detail is invented (default 8)")
    p.add_argument("--sweep-levels", default="0,0.05,0.1,0.2",
                   help="noise-augmentation levels of the sampling sweep, comma-separated ('' for none)")
    p.add_argument("--sweep-frames", type=int, default=64, help="real frames super-resolved at each sweep level")
    p.add_argument("--tile-frames", type=int, default=16,
                   help="real frames super-resolved whole and per crop-sized tile (what the normalisation over a "
                        "whole frame changes; 0 for none)")
    p.add_argument("--block-cycles", type=float, default=BROWSE_BLOCK_CYCLES,
                   help="where the source's JPEG blocks put power, in cycles per image (472 px browse composites, "
                        "8 px blocks: 59; 0: not measured)")
    p.add_argument("--no-memorisation", dest="memorisation", action="store_false",
                   help="skip the generated images' distance to every training frame at the output size")
    p.add_argument("--encoder", default=None,
                   help="a FlareClassifier trained at the output size (default: the model's "
                        "evaluation_encoder_<size>px, if it has one)")
    p.add_argument("--distance-classes", default="quiet,C",
                   help="the classes compared in the output-size encoder, comma-separated (default quiet,C; those "
                        "of --dataset with enough real frames in both splits: M,X for a forecast build)")
    p.add_argument("--control-upscaler", default=None,
                   help="a cascade of the same sizes whose upscaler super-resolves the real frames as a control "
                        "(train-upscaler --objective regression: the L1 regression control)")
    p.add_argument("--out", required=True, help="folder for metrics.json and report.md")


def _evaluate_cascade(args) -> int:
    from solar_diffusion.cascade_evaluation import evaluate_cascade, write_report
    from solar_diffusion.defaults import output_size_encoder
    from solar_diffusion.encoder import load_encoder
    from solar_diffusion.generate import load_pipeline

    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    encoder = args.encoder or (pipe.upscaler is not None and output_size_encoder(pipe.name_or_path,
                                                                                 pipe.upscaler.config.sample_size))
    report = evaluate_cascade(pipe, args.dataset, args.split, args.num_images, args.real_frames, args.seed,
                              batch_size=args.batch_size, upscaler_steps=args.upscaler_steps,
                              noise_level=args.noise_level, spread_seeds=args.spread_seeds,
                              sweep_levels=tuple(float(v) for v in args.sweep_levels.split(",") if v.strip()),
                              sweep_frames=args.sweep_frames, encoder=load_encoder(encoder) if encoder else None,
                              control=load_pipeline(args.control_upscaler) if args.control_upscaler else None,
                              tile_frames=args.tile_frames, memorisation=args.memorisation,
                              block_cycles=args.block_cycles,
                              distance_classes=tuple(c.strip() for c in args.distance_classes.split(",") if c.strip()))
    report["settings"]["command"] = args.command_line
    print(f"wrote {write_report(report, args.out)}")
    return 0


def _add_evaluate(p):
    from solar_diffusion.splits import dataset_argument

    _add_model(p, "saved pipeline folder")
    p.add_argument("--dataset", required=True, type=dataset_argument,
                   help="a folder made by build-dataset (or its Hub dataset id), in the model's data unit")
    p.add_argument("--split", default="test", help="real split to compare with (default test)")
    p.add_argument("--train-dataset", type=dataset_argument, default=None,
                   help="where the model's training frames are (default: --dataset's train split)")
    p.add_argument("--encoder", default=None, help="saved FlareClassifier (default: the one saved with the model, <model>/evaluation_encoder, else the bundled model's)")
    p.add_argument("--num-images", dest="num_per_class", type=int, default=32,
                   help="generated images per class (default 32)")
    p.add_argument("--num-positions", type=int, default=8,
                   help="a flare model: flare positions drawn from its training flares, the same for every class")
    _add_sampling(p, "the saved one")
    p.add_argument("--steps-curve", default="10,25,50", help="step counts of the quality curve ('' for none)")
    p.add_argument("--curve-per-class", type=int, default=None, help="images per class per curve point")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples per interval (default 200)")
    p.add_argument("--min-real", type=int, default=10, help="fewest real images a class needs to be scored")
    p.add_argument("--max-real", type=int, default=300, help="real images per class compared in feature space")
    p.add_argument("--inception", action="store_true", help="also Inception-V3 features (needs the 'fid' extra)")
    p.add_argument("--model-card", default=None, help="a model card (README.md) to write the results into")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the first image of each class; its image k uses seed + k (default 0)")
    p.add_argument("--out", required=True, help="output folder")


def _evaluate(args) -> int:
    from solar_diffusion.evaluate import EvaluationConfig, evaluate

    if args.num_per_class < 2:
        raise ValueError(f"--num-images must be >= 2 for evaluate, got {args.num_per_class}")
    curve = tuple(int(s) for s in args.steps_curve.split(",") if s.strip())
    report = evaluate(EvaluationConfig(
        model=args.model, dataset=args.dataset, out=args.out, split=args.split, encoder=args.encoder,
        num_per_class=args.num_per_class, num_inference_steps=args.steps, guidance_scale=args.guidance,
        novelty_target=args.novelty_target, scheduler=args.scheduler, seed=args.seed, n_boot=args.n_boot,
        min_real=args.min_real, max_real=args.max_real, steps_curve=curve,
        curve_per_class=args.curve_per_class, inception=args.inception, model_card=args.model_card,
        num_positions=args.num_positions, train_dataset=args.train_dataset,
    ), progress=True)
    flare = report.get("flare", {})
    print(f"wrote {Path(args.out, 'report.md')} and metrics.json"
          + (f" (the flare checks: {_check_words(flare['checks'])})" if flare.get("checks") else "")
          + (f" (the fidelity checks: {_check_words(flare['fidelity']['checks'])})"
             if flare.get("fidelity", {}).get("checks") else ""))
    return 0


def _check_words(checks: dict) -> str:
    """Release checks in words: ``name yes``, ``name NO (the parts that fail)``, ``name n/a`` (not measured).

    >>> _check_words({"ordered": True, "m_within_real": {"94": True, "131": False}, "limbs": None})
    'ordered yes, m_within_real NO (131), limbs n/a'
    """
    def word(v):
        if v is None:
            return "n/a"
        if isinstance(v, dict):
            failing = [n for n, ok in v.items() if ok is False]
            return "NO (" + ", ".join(failing) + ")" if failing else "yes"
        return "yes" if v else "NO"

    return ", ".join(f"{k} {word(v)}" for k, v in checks.items())


def _add_experiment(p):
    from solar_diffusion.training.experiments import build_parser as experiment_parser

    experiment_parser(p)


def _experiment(args) -> int:
    from solar_diffusion.training.experiments import classifier_experiment, predictor_experiment

    (classifier_experiment if args.experiment == "classifier" else predictor_experiment)(args)
    print(Path(args.out, "report.md").read_text())
    return 0


def _add_pack(p):
    from solar_diffusion.splits import dataset_argument

    from solar_diffusion.pack import DEFAULT_MAX_MB, DEFAULT_SPLITS

    p.add_argument("--dataset", required=True, type=dataset_argument,
                   help="a folder made by build-dataset, or its Hub dataset id")
    p.add_argument("--out", required=True, help="the pack's folder (new, empty, or an earlier pack)")
    p.add_argument("--splits", default=",".join(DEFAULT_SPLITS),
                   help=f"comma-separated splits; the first always, each further one while the pack fits --max-mb "
                        f"(default {','.join(DEFAULT_SPLITS)})")
    p.add_argument("--max-mb", type=float, default=DEFAULT_MAX_MB,
                   help=f"size of the pack in MB (default {DEFAULT_MAX_MB:g}; 0: no limit, lossless): browse images "
                        "are lossless PNG where that fits, else JPEG at the finest flat quantisation step that fits")
    p.add_argument("--step", type=int, default=None,
                   help="browse images: this JPEG quantisation step instead (0: lossless PNG); DN/s is always lossless")
    p.add_argument("--config-name", default=None, help="dataset config (default: the dataset's default)")


def _pack(args) -> int:
    from solar_diffusion.pack import describe, write_pack

    manifest = write_pack(args.dataset, args.out, [s.strip() for s in args.splits.split(",") if s.strip()],
                          max_mb=args.max_mb, step=args.step, config_name=args.config_name)
    size = sum(f["bytes"] for f in manifest["files"].values())
    print(f"pack {args.out}: {', '.join(manifest['splits'])}, {size / 1e6:.1f} MB, {describe(manifest['encoding'])}")
    return 0


def _add_gpu_wheels(p):
    p.add_argument("--out", default=".whl", help="folder for the wheels (default .whl, which git ignores)")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="print the pip command line and the wheels, download nothing")


def _gpu_wheels(args) -> int:
    from solar_diffusion.offline import GPU_NODE_WHEELS, download_gpu_wheels, gpu_wheels_command

    if args.print_only:
        print(" ".join(gpu_wheels_command(args.out)))
        return 0
    found = download_gpu_wheels(args.out)
    for path in found.values():
        print(f"{path}\t{path.stat().st_size / 2**20:.1f} MiB")
    print(f"{len(GPU_NODE_WHEELS)} wheels, {sum(p.stat().st_size for p in found.values()) / 2**20:.1f} MiB in {args.out}")
    return 0


def _add_export_parts(p):
    from solar_diffusion.offline import DEFAULT_PART_MB

    p.add_argument("--model", required=True, help="a saved pipeline folder (e.g. <output-dir>/pipeline of train)")
    p.add_argument("--out", required=True, help="folder for the parts and parts.json")
    p.add_argument("--part-mb", type=float, default=DEFAULT_PART_MB,
                   help=f"largest part in MB (default {DEFAULT_PART_MB:g})")


def _export_parts(args) -> int:
    from solar_diffusion.offline import export_parts

    manifest = export_parts(args.model, args.out, args.part_mb)
    print(f"{args.model}: {manifest['bytes'] / 1e6:.1f} MB in {len(manifest['parts'])} parts in {args.out}")
    return 0


def _add_assemble(p):
    p.add_argument("--parts", required=True, help="folder holding parts.json and the parts of export-parts")
    p.add_argument("--out", required=True, help="folder for the saved pipeline (new or empty)")


def _assemble(args) -> int:
    from solar_diffusion.offline import assemble

    print(f"saved pipeline: {assemble(args.parts, args.out)}")
    return 0


def _add_augment(p):
    from solar_diffusion.splits import dataset_argument

    _add_model(p, "saved pipeline folder that generates the frames")
    p.add_argument("--dataset", required=True, type=dataset_argument,
                   help="a folder made by build-dataset, or its Hub dataset id")
    p.add_argument("--out", required=True, help="folder of the new dataset (new or empty)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--ratio", type=float, help="add R times each minority class's count")
    how.add_argument("--target", choices=["balanced"], help="raise each minority class to the largest class's count")
    p.add_argument("--flare-class", action="append", dest="flare_classes", metavar="CLASS",
                   help="a class of the dataset to add frames of ('M', 'X'); repeat for several (default: every class "
                        "but the most frequent)")
    p.add_argument("--max-per-class", type=int, default=None,
                   help="a cap: at most this many frames added per class, whatever --ratio or --target asks (not a "
                        "count of images per class, which generate and evaluate take as --num-images)")
    _add_flare_position(p, "the added frames of the --flare-class")
    _add_sampling(p, "the saved one")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per pipeline call (default 16 at 64 px, as many pixels at other sizes)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the first added frame (frame k uses seed + k) and of the strengths drawn (default 0)")
    p.add_argument("--for-forecasting", action="store_true",
                   help="add the Sun in the hours before a flare, for a flare predictor: a forecast model's frames "
                        "added to a dataset built with the same --forecast-hours")


def _augment(args) -> int:
    from diffusers.utils import logging as diffusers_logging

    from solar_diffusion.augment import augment

    diffusers_logging.disable_progress_bar()
    augment(args.dataset, args.out, args.model, ratio=args.ratio, target=args.target, flare_classes=args.flare_classes,
            max_per_class=args.max_per_class, seed=args.seed, num_inference_steps=args.steps,
            scheduler=args.scheduler, guidance_scale=args.guidance, novelty_target=args.novelty_target,
            batch_size=args.batch_size, flare_positions=args.flare_positions, date=args.date,
            for_forecasting=args.for_forecasting)
    return 0


def _add_novelty(p):
    from solar_diffusion.pipelines import NOVELTY_MAX_PUSH, NOVELTY_POOL_PX, NOVELTY_TARGET, NOVELTY_UNTIL_TIMESTEP
    from solar_diffusion.splits import dataset_argument

    p.add_argument("--model", required=True, help="a saved pipeline folder (its model_index.json is rewritten)")
    p.add_argument("--dataset", required=True, type=dataset_argument,
                   help="the dataset the model was trained on (its train split's frames are kept)")
    p.add_argument("--target", type=float, default=NOVELTY_TARGET,
                   help=f"default distance kept from the nearest training layout, in day distances (default "
                        f"{NOVELTY_TARGET:g}; 0 keeps the layouts, guidance off)")
    p.add_argument("--max-push", type=float, default=NOVELTY_MAX_PUSH,
                   help=f"largest push, in multiples of the difference from the nearest layout (default "
                        f"{NOVELTY_MAX_PUSH:g})")
    p.add_argument("--until-timestep", type=int, default=NOVELTY_UNTIL_TIMESTEP,
                   help=f"guide while the timestep is at least this (default {NOVELTY_UNTIL_TIMESTEP}; of 1000)")
    p.add_argument("--pool-px", type=int, default=NOVELTY_POOL_PX,
                   help=f"cell size of the layouts in pixels of the model's images (default {NOVELTY_POOL_PX})")


def _novelty(args) -> int:
    from solar_diffusion.novelty import add_layouts

    novelty = add_layouts(args.model, args.dataset, pool_px=args.pool_px, target=args.target, max_push=args.max_push,
                          until_timestep=args.until_timestep)
    print(f"wrote {novelty['shape'][0]} training layouts ({novelty['shape'][2]}x{novelty['shape'][3]} cells of "
          f"{novelty['pool_px']} px; day distance {novelty['day_distance']:.4f}) to {args.model}/model_index.json; "
          f"novelty target {novelty['target']:g} day distances while t >= {novelty['until_timestep']}")
    return 0


def _add_guidance_table(p):
    p.add_argument("--model", required=True, help="a saved flare model's folder (model_index.json)")
    p.add_argument("--point", action="append", default=[], metavar="REQUEST:SCALE",
                   help="a request (a GOES class on the SWPC scale, 'M9.9', or a GOES-R flux in W m^-2) and its "
                        "guidance scale; repeat (interpolated in log flux between points, held beyond them); "
                        "none: remove the table")
    p.add_argument("--quiet", type=float, default=None, help="the scale of images without a flare (needed with --point)")


def _guidance_table(args) -> int:
    from solar_diffusion.generate import describe_guidance, write_guidance_table

    points = []
    for text in args.point:
        request, _, scale = text.rpartition(":")
        try:
            points.append((float(request) if re.fullmatch(r"[0-9.eE+-]+", request) else request, float(scale)))
        except ValueError:
            raise ValueError(f"--point {text!r}: expected REQUEST:SCALE, e.g. M9.9:1.5") from None
    if points and args.quiet is None:
        raise ValueError("--quiet: the scale of images without a flare is needed with --point")
    table = write_guidance_table(args.model, points, args.quiet)
    print(f"{args.model}/model_index.json: " + (describe_guidance(None, table) + f" {table}" if table
                                                 else "no guidance table (one scale for all)"))
    return 0


def _add_push(p):
    p.add_argument("folder", help="a saved pipeline (model_index.json) or a built dataset (build_info.json)")
    p.add_argument("--repo-id", required=True, help="the Hub repo, owner/name (a model or dataset repo, by the folder)")
    p.add_argument("--private", action="store_true", help="make a new Hub repo private (default: public)")


def _push(args) -> int:
    from solar_diffusion.hub import push_folder

    repo, kind = push_folder(args.folder, args.repo_id, private=args.private)
    print(f"pushed {args.folder} to the Hub {kind} repo {repo}")
    return 0


#: subcommand -> (one-line help, function adding its arguments, function running it)
COMMANDS = {
    "generate": ("generate synthetic AIA images of chosen GOES flare classes", _add_generate, _generate),
    "build-dataset": ("build a labelled Hugging Face dataset of AIA images", _add_build_dataset, _build_dataset),
    "train": ("train the class-conditional DDPM (same flags as training/train_ddpm.py)",
              *_training_script("train_ddpm", "train", "saved pipeline")),
    "distill": ("distil a model's guidance into a one-call-per-step student (same flags as training/distill.py)",
                *_training_script("distill", "distill", "saved student")),
    "train-upscaler": ("train a cascade's super-resolution stage over a base model (same flags as "
                       "training/train_upscaler.py)", *_training_script("train_upscaler", "train_upscaler",
                                                                         "saved cascade")),
    "evaluate": ("FD/KID, precision/recall, clusters, conditioning F1 against a real split", _add_evaluate, _evaluate),
    "evaluate-cascade": ("a cascade at its output size: fine structure, consistency, real frames super-resolved",
                         _add_evaluate_cascade, _evaluate_cascade),
    "experiment": ("the paper's experiments, classifier or predictor: real, class-weighted, oversampled, + synthetic",
                   _add_experiment, _experiment),
    "augment": ("a dataset with generated frames added to its training split's minority classes", _add_augment,
                _augment),
    "pack": ("a compact, self-contained training pack of a built dataset", _add_pack, _pack),
    "gpu-wheels": ("download the wheels an offline GPU node lacks (see training/offline_gpu.sh)", _add_gpu_wheels,
                   _gpu_wheels),
    "export-parts": ("a saved pipeline as parts of at most 15 MB, with hashes", _add_export_parts, _export_parts),
    "assemble": ("a saved pipeline from the parts of export-parts", _add_assemble, _assemble),
    "novelty": ("keep a model's training layouts for its novelty guidance (no copies of training days)",
                _add_novelty, _novelty),
    "guidance-table": ("set a flare model's default guidance scale by the requested flux", _add_guidance_table,
                       _guidance_table),
    "push": ("upload a saved pipeline or a built dataset to the Hugging Face Hub", _add_push, _push),
}


class _Parser(argparse.ArgumentParser):
    """argparse's parser, refusing bad input in one line (the usage is one ``--help`` away)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of ``command`` only (all subcommands are listed)."""
    parser = _Parser(
        prog="solar-diffusion",
        description="Synthetic SDO/AIA images of chosen GOES flare classes with a conditional diffusion model.",
    )
    parser.add_argument("--version", action="version", version=f"solar-diffusion {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            add_arguments(p)
            p.set_defaults(func=run)
    return parser


def main(argv=None) -> int:
    """Run one command in this process; returns its exit status (0, 1 failure, 2 bad input, 130 Ctrl-C).

    The objects its imports made are handed back to the garbage collector when it returns, so a
    process can run many commands (as the tests do).

    >>> main(["--version"])
    Traceback (most recent call last):
    SystemExit: 0
    """
    try:
        return _run(sys.argv[1:] if argv is None else [str(a) for a in argv])
    finally:
        gc.unfreeze()


def run() -> None:
    """The ``solar-diffusion`` script and ``python -m solar_diffusion.cli``: one command, then exit.

    Unlike ``main`` it leaves the start-up's objects frozen: Python's last garbage collection at
    exit then skips them (about 0.8 s on 2 cores), and nothing of them needs collecting anyway.
    """
    sys.exit(_run(sys.argv[1:]))


#: Options whose value may start with "-": a negative arcsec x (``--flare-position -475,397``), and a
#: negative flux, refused by the pipeline with its reason rather than by argparse as a missing value.
_SIGNED_VALUES = ("--flare-position", "--flare-class")


def _attach_signed_values(argv: list[str]) -> list[str]:
    """``--flare-position -475,397`` as ``--flare-position=-475,397``: argparse takes a value that
    starts with "-" and is not a plain number for an option, and refuses it.

    >>> _attach_signed_values(["generate", "--flare-position", "-475,397", "--flare-position", "S15W01"])
    ['generate', '--flare-position=-475,397', '--flare-position', 'S15W01']
    """
    out = []
    for arg in argv:
        if out and out[-1] in _SIGNED_VALUES and re.match(r"-\.?\d", arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _run(argv: list[str]) -> int:
    argv = _attach_signed_values(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    with collector_paused():  # the command's modules import here
        args = build_parser(command).parse_args(argv)
    args.command_line = shlex.join(["solar-diffusion", *argv])  # as typed: what a report records
    try:
        return args.func(args)
    except KeyboardInterrupt:  # files are written whole (atomic_write), so none is left half-written
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)  # bad input: a value or a path to change
        return 2
    except (RuntimeError, OSError) as err:  # a failure: corrupt or unreadable files, permissions, devices
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 1


def _one_line(err: BaseException) -> str:
    """The message of an expected failure on one line, with the file an OSError names.

    >>> _one_line(PermissionError(13, "Permission denied", "/data/out"))
    "Permission denied: '/data/out'"
    """
    if isinstance(err, OSError) and err.filename and err.strerror:
        text = f"{err.strerror}: {str(err.filename)!r}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    run()
