"""Seconds per image and quality of each sampler, against the paper's algorithm on the same UNet.

    python benchmarks/bench_sampling.py --dataset data/aia171-browse2012-64 [--sizes 64,128]
        [--num-per-class 16] [--baseline-quality] [--memory-size 256] [--cache DIR]
        [--batch-curve 1,2,4,8,16] [--rows none]
        [--json reports/bench_sampling.json]

Rows: (a) the paper's algorithm: 1000 DDPM ancestral steps, the conditional and the null UNet
calls made separately at batch 1 (``sample_separate_guidance``), with the UNet as saved (NCHW),
the baseline; (b) this pipeline with DDPM, 1000 steps (guidance batched, channels_last as
``load_pipeline`` sets it); (c) DDIM, 50 steps; (d) DPM-Solver++ at 10, 15, 20 and 25 steps;
(e) its stochastic form (SDE DPM-Solver++) at 10, 15 and 20; (f) DPM-Solver++ 10 with diffusers'
default step spacing (evenly in t) instead of the pipeline's (uniform in log-SNR). The pipeline's
default row is marked.

Two phases, so that nothing else running can disturb a timing: first every row is timed (batch
1, and per image in a batch of 16 except for the 1000-step rows: minutes per image), at every
size; then, untimed, at the bundled model's size, each row's quality: Fréchet distance and KID
in the solar encoder's feature space to class-balanced real test frames of the classes with
enough of them, with bootstrap intervals, and each row's difference to the 1000-step ancestral
sampler with the same real resample in both terms (a paired interval: "equal quality" means
it contains 0). The 1000-step quality (an hour or more on 2 CPU cores) comes only with
``--baseline-quality``, measured on (b): (a) is the same sampler with the same seeds, and the
JSON records how far (a)'s and (b)'s batch-1 images differ. ``--cache DIR`` keeps each row's
generated images (named by sampler, steps, count and a digest of the scheduler's configuration;
one folder per model), so an interrupted run picks up where it stopped. At other sizes the UNet is
the same preset untrained (speed does not depend on the weights). ``--memory-size 256``: peak
resident memory of generating 16 images at that size with the defaults, in a fresh process.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from solar_diffusion.files import atomic_write

ROWS = [("(a) paper: DDPM 1000, separate batch-1 calls, NCHW", "ddpm", 1000, True),
        ("(b) pipeline: DDPM 1000", "ddpm", 1000, False),
        ("(c) pipeline: DDIM 50", "ddim", 50, False)] + \
       [(f"(d) pipeline: DPM-Solver++ {n}", "dpm", n, False) for n in (10, 15, 20, 25)] + \
       [(f"(e) pipeline: SDE DPM-Solver++ {n}", "dpm-sde", n, False) for n in (10, 15, 20)] + \
       [("(f) pipeline: DPM-Solver++ 10, steps evenly spaced in t", "dpm-even-t", 10, False)]
# (f): the pipeline's sampler with diffusers' default step spacing instead of uniform log-SNR
VARIANTS = {"dpm-even-t": ("dpm", {"use_lu_lambdas": False})}


def use_sampler(pipe, name: str):
    """``generate.use_scheduler``, plus this benchmark's variants (a product scheduler with changes)."""
    from solar_diffusion.generate import use_scheduler

    if name not in VARIANTS:
        return use_scheduler(pipe, name)
    product, changes = VARIANTS[name]
    pipe.scheduler = type(use_scheduler(pipe, product).scheduler).from_config(pipe.scheduler.config, **changes)
    return pipe


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def pipelines_at(pipe, plain, size: int):
    """(fast, plain) pipelines at ``size``: ``pipe`` and ``plain`` themselves at their own size;
    elsewhere the same UNet preset, untrained, with one set of weights, in channels_last for the
    fast one and as saved (NCHW) for the plain one."""
    import copy

    from diffusers import UNet2DModel

    from solar_diffusion import SolarFlarePipeline
    from solar_diffusion.maps import disk_geometry, rsun_px

    if size == pipe.unet.config.sample_size:
        return pipe, plain
    torch.manual_seed(0)
    unet = UNet2DModel.from_config(pipe.unet.config, sample_size=size).eval()
    geometry = disk_geometry(size, rsun_px(pipe.config.geometry, pipe.unet.config.sample_size) * size /
                             pipe.unet.config.sample_size)
    out = []
    for weights in (copy.deepcopy(unet).to(memory_format=torch.channels_last), unet):
        other = SolarFlarePipeline(weights, copy.deepcopy(pipe.scheduler), id2label=pipe.id2label,
                                   normalization=pipe.normalization.to_dict(), geometry=geometry)
        other.set_progress_bar_config(disable=True)
        out.append(other)
    return tuple(out)


def sample(pipe, scheduler: str, steps: int, separate: bool, labels, seed: int, batch_size: int):
    """Images (model space) for ``labels`` at the base model's size (a cascade's too) and the seconds
    per image."""
    from solar_diffusion.generate import sample_batches, sample_separate_guidance

    use_sampler(pipe, scheduler)
    if separate:
        images, seconds = _timed(lambda: torch.cat([sample_separate_guidance(pipe, label, steps, 3.0, seed + k)
                                                    for k, label in enumerate(labels)]))
    else:
        images, seconds = _timed(lambda: torch.cat([out.images.cpu() for out in sample_batches(
            pipe, labels, seed, steps, 3.0, batch_size, image_size=pipe.unet.config.sample_size)]))
    return images, seconds / len(labels)


def peak_memory(model: str, size: int, n: int = 16) -> dict:
    """Peak resident memory (this process) and seconds per image of ``n`` images at ``size`` px
    with the pipeline's defaults, in one batch; run it in a fresh process."""
    from solar_diffusion.generate import load_pipeline

    pipe = load_pipeline(model)
    plain = load_pipeline(model, channels_last=False)
    pipe, _ = pipelines_at(pipe, plain, size)
    pipe.set_progress_bar_config(disable=True)
    del plain
    label = list(pipe.id2label.values())[-1]
    generators = [torch.Generator().manual_seed(k) for k in range(n)]
    with torch.inference_mode():
        _, elapsed = _timed(lambda: pipe(flare_class=[label] * n, num_images_per_class=1, generator=generators,
                                         output_type="model", image_size=size))
    return {"size": size, "images": n, "seconds_per_image": elapsed / n,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _paired_difference(statistic, width: int):
    """``statistic(g, real) - statistic(base, real)`` for ``pairs = [g | base]`` (rows with the same seed
    and class side by side, resampled together) and one real resample seen by both terms."""
    return lambda pairs, real: statistic(pairs[:, :width], real) - statistic(pairs[:, width:], real)


def timings(args, pipe, plain) -> tuple[list[dict], list[dict]]:
    """Phase 1: seconds per image of every row at every size, and the speed-ups against (a);
    with ``--batch-curve``, the defaults' seconds per image at each of those batch sizes."""
    default_steps = inspect.signature(pipe.__call__).parameters["num_inference_steps"].default
    default_scheduler = {"DDPMScheduler": "ddpm", "DDIMScheduler": "ddim",
                         "DPMSolverMultistepScheduler": "dpm"}[type(pipe.scheduler).__name__]
    rows_run = [r for r in ROWS if r[0][1] in args.rows.split(",")]  # "--rows none": the batch curve alone

    rows, curve = [], []
    for size in (int(s) for s in args.sizes.split(",")):
        label = list(pipe.id2label.values())[-1]
        first_images = {}
        fast_at, plain_at = pipelines_at(pipe, plain, size)
        for name, scheduler, steps, separate in rows_run:
            at_size = plain_at if separate else fast_at
            first_images[name[1]], batch1 = sample(at_size, scheduler, steps, separate, [label], 0, 1)
            row = {"size": size, "sampler": name, "scheduler": scheduler, "steps": steps,
                   "default": (scheduler, steps) == (default_scheduler, default_steps),
                   "seconds_per_image_batch1": batch1}
            if steps < 1000:
                sample(at_size, scheduler, steps, separate, [label] * 2, 0, 2)  # warm-up at batch > 1
                _, row["seconds_per_image_batch16"] = sample(at_size, scheduler, steps, separate, [label] * 16, 0, 16)
            rows.append(row)
            print(json.dumps(row, default=float), flush=True)
        if args.batch_curve:  # the defaults' seconds per image against the batch size
            for batch in (int(b) for b in args.batch_curve.split(",")):
                sample(fast_at, default_scheduler, default_steps, False, [label] * batch, 0, batch)  # warm-up
                seconds = min(sample(fast_at, default_scheduler, default_steps, False, [label] * batch, 0, batch)[1]
                              for _ in range(2))  # best of two
                curve.append({"size": size, "batch": batch, "steps": default_steps, "seconds_per_image": seconds})
                print(json.dumps(curve[-1]), flush=True)
        if "a" in first_images and "b" in first_images:  # (a) and (b): one sampler, two implementations
            a = next(r for r in rows if r["size"] == size and r["sampler"].startswith("(a)"))
            a["max_abs_difference_to_b"] = float((first_images["a"] - first_images["b"]).abs().max())
    baseline = {r["size"]: r["seconds_per_image_batch1"] for r in rows if r["sampler"].startswith("(a)")}
    for row in (r for r in rows if r["size"] in baseline):
        row["speedup_vs_paper_batch1"] = baseline[row["size"]] / row["seconds_per_image_batch1"]
        if "seconds_per_image_batch16" in row:
            row["speedup_vs_paper_batch16"] = baseline[row["size"]] / row["seconds_per_image_batch16"]
    return rows, curve


def main(argv=None) -> dict:
    from solar_diffusion.defaults import PAPER_MODEL
    from solar_diffusion.generate import load_pipeline

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(PAPER_MODEL))
    parser.add_argument("--dataset", help="built dataset with a test split, in the model's unit (for quality)")
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--num-per-class", type=int, default=16, help="generated images per judged class")
    parser.add_argument("--num-real-per-class", type=int, default=None,
                        help="real test frames per judged class (default: as many as the smallest judged class has)")
    parser.add_argument("--min-real", type=int, default=10)
    parser.add_argument("--baseline-quality", action="store_true", help="also the quality of the 1000-step rows")
    parser.add_argument("--inception", action="store_true", help="quality in Inception-V3 features too (the 'fid' extra)")
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--rows", default="a,b,c,d,e,f", help="which rows to run (the baseline (a) is needed for ratios)")
    parser.add_argument("--batch-curve", default=None,
                        help="also the defaults' seconds per image (best of 2) at these batch sizes (e.g. 1,2,4,8,16)")
    parser.add_argument("--memory-size", type=int, default=None, help="also the peak memory of 16 images at this size")
    parser.add_argument("--cache", default=None, help="folder keeping each row's generated images (resumable)")
    parser.add_argument("--one-memory", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    parser.add_argument("--timings-from", default=None,
                        help="skip the timings: measure quality for the rows of this earlier result JSON")
    parser.add_argument("--table", default=None, help="only print the markdown table of this result JSON")
    args = parser.parse_args(argv)

    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return {}

    if args.one_memory:  # a subprocess: its JSON row on the last line
        print(json.dumps(peak_memory(args.model, args.one_memory)))
        return {}
    pipe = load_pipeline(args.model)
    plain = load_pipeline(args.model, channels_last=False)  # the baseline's UNet, as saved
    for p in (pipe, plain):
        p.set_progress_bar_config(disable=True)
    command = " ".join(["python", "benchmarks/bench_sampling.py"] + (argv or sys.argv[1:]))
    if args.timings_from:  # the quality phase only, for the rows of an earlier timing run of this script
        result = json.loads(Path(args.timings_from).read_text())
        rows, result["quality_command"] = result["rows"], command
    else:
        rows, curve = timings(args, pipe, plain)
        result = {"command": command, "model": args.model, "machine": platform.processor() or platform.machine(),
                  "cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "rows": rows} | ({"batch_curve": curve} if curve else {})
    save = (lambda: atomic_write(Path(args.json), lambda tmp: Path(tmp).write_text(
        json.dumps(result, indent=1, default=float)))) if args.json else (lambda: None)
    save()  # the timings are kept even if the quality phase is interrupted
    if args.memory_size:  # a fresh process, so that the peak is this job's alone
        done = subprocess.run([sys.executable, __file__, "--model", args.model, "--one-memory", str(args.memory_size)],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"generating at {args.memory_size} px failed:\n{done.stderr[-2000:]}")
        result["memory"] = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(result["memory"]), flush=True)
        save()

    # phase 2: quality at the model's size, untimed
    model_size = pipe.unet.config.sample_size
    if args.dataset and model_size in {r["size"] for r in rows}:
        result.update(quality(args, pipe, [r for r in rows if r["size"] == model_size]))
    save()
    return result


def quality(args, pipe, rows) -> dict:
    """Fills each row's "frechet", "kid" (and "inception_frechet", "inception_kid" with
    ``--inception``) and their paired differences to the 1000-step ancestral sampler (b)."""
    from solar_diffusion import metrics
    from solar_diffusion.encoder import load_encoder
    from solar_diffusion.splits import model_space_split

    encoder = load_encoder()
    spaces = {"": encoder.embed_images}  # key prefix -> features of model-space images
    if args.inception:
        from solar_diffusion.evaluate import inception_features
        spaces["inception_"] = inception_features
    model_size = pipe.unet.config.sample_size
    real = model_space_split(args.dataset, "test", pipe.normalization, model_size)
    counts = real.counts()
    judged = [c for c in pipe.id2label.values() if counts.get(c, 0) >= args.min_real]
    if not judged:
        raise ValueError(f"{args.dataset}: no class has {args.min_real} test frames to judge quality with")
    n_real = args.num_real_per_class or min(counts[c] for c in judged)
    rng = np.random.default_rng(0)
    reference_idx = np.concatenate([rng.choice(np.flatnonzero(real.labels == c), min(counts[c], n_real),
                                               replace=False) for c in judged])
    reference = {space: embed(real.images[torch.from_numpy(reference_idx)]) for space, embed in spaces.items()}
    labels = [c for c in judged for _ in range(args.num_per_class)]
    cache = Path(args.cache) if args.cache else None
    ddpm1000 = {}  # space -> features of the 1000-step ancestral sampler's images
    # the 1000-step ancestral row first: the others are compared with it
    order = sorted((r for r in rows if r["steps"] < 1000 or (args.baseline_quality and r["sampler"].startswith("(b)"))),
                   key=lambda r: r["steps"] < 1000)
    for row in order:
        slug = f"{row['scheduler']}-{row['steps']}-{len(labels)}-{_config_digest(pipe, row['scheduler'])}"
        path = cache / f"{slug}.pt" if cache else None
        if path is not None and path.exists():
            images = torch.load(path)
            row["images_from_cache"] = str(path)
        else:
            images, _ = sample(pipe, row["scheduler"], row["steps"], False, labels, 1000, 16)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, lambda tmp: torch.save(images, tmp))
        for space, embed in spaces.items():
            features = embed(images)
            for key, statistic in (("frechet", metrics.frechet_distance), ("kid", metrics.kernel_distance)):
                row[space + key] = metrics.bootstrap(statistic, features, reference[space], n_boot=args.n_boot)
                if space in ddpm1000:
                    row[f"{space}{key}_minus_ddpm1000"] = metrics.bootstrap(
                        _paired_difference(statistic, features.shape[1]),
                        np.concatenate([features, ddpm1000[space]], 1), reference[space], n_boot=args.n_boot)
            if row["sampler"].startswith("(b)"):
                ddpm1000[space] = features
        print(json.dumps({k: v for k, v in row.items() if "frechet" in k or "kid" in k or k == "sampler"},
                         default=float), flush=True)
    baseline = next((r for r in rows if r["sampler"].startswith("(a)")), None)
    b = next((r for r in rows if r["sampler"].startswith("(b)")), None)
    if baseline is not None and b is not None and "frechet" in b:
        baseline.update({k: v for k, v in b.items() if k.endswith(("frechet", "kid"))})
        baseline["quality_from"] = "(b), the same sampler and seeds"
    return {"judged_classes": judged, "generated_per_class": args.num_per_class,
            "quality_reference": f"{len(reference_idx)} real test frames, {n_real} per judged class at most"}


def _config_digest(pipe, scheduler: str) -> str:
    """Eight hex digits naming the scheduler's full configuration (noise schedule, solver, step
    spacing), so that cached images of a changed sampler are never reused."""
    import hashlib

    cls = type(use_sampler(pipe, scheduler).scheduler)
    used = inspect.signature(cls.__init__).parameters  # from_config also keeps the other schedulers' keys
    config = {k: v for k, v in pipe.scheduler.config.items() if k in used} | {"class": cls.__name__}
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _interval(r, digits: int = 1) -> str:
    return f"{r['value']:.{digits}f} [{r['low']:.{digits}f}, {r['high']:.{digits}f}]"


def table(result: dict) -> str:
    """BENCHMARKS.md's tables from a result (``--table reports/bench_sampling.json``): speed at every
    size, then quality at the model's size with each row's paired difference to (b)."""
    def name(r):
        return f"**{r['sampler']} (the defaults)**" if r["default"] else r["sampler"]

    def number(x, digits):
        return "" if x is None else f"{x:.1f}" if digits == 0 and x < 10 else f"{x:.{digits}f}"

    speed = ["| size | sampler | s / image, batch 1 | s / image, batch 16 | speed-up vs (a), batch 1 | batch 16 |",
             "|" + "---|" * 6] if result["rows"] else []
    for r in result["rows"]:
        speed.append(f"| {r['size']} px | {name(r)} | " + " | ".join(
            number(r.get(key), digits) for key, digits in (("seconds_per_image_batch1", 2),
                                                           ("seconds_per_image_batch16", 2),
                                                           ("speedup_vs_paper_batch1", 0),
                                                           ("speedup_vs_paper_batch16", 0))) + " |")
    if result.get("batch_curve"):
        sizes = sorted({c["size"] for c in result["batch_curve"]})
        batches = sorted({c["batch"] for c in result["batch_curve"]})
        seconds = {(c["size"], c["batch"]): c["seconds_per_image"] for c in result["batch_curve"]}
        speed += ["", "| the defaults, s / image | " + " | ".join(f"batch {b}" for b in batches) + " |",
                  "|" + "---|" * (1 + len(batches))]
        speed += [f"| {size} px | " + " | ".join(number(seconds.get((size, b)), 2) for b in batches) + " |"
                  for size in sizes]
    if "memory" in result:
        m = result["memory"]
        speed += ["", f"Generating {m['images']} images at {m['size']} px with the defaults, one batch: "
                  f"{m['seconds_per_image']:.2f} s per image, peak resident memory {m['peak_rss_gb']:.2f} GB."]
    spaces = [(space, title) for space, title in (("", "solar encoder"), ("inception_", "Inception-V3"))
              if any(f"{space}frechet" in r for r in result["rows"])]
    header = "| sampler | " + " | ".join(f"FD, {t} | FD − (b) | KID, {t} | KID − (b)" for _, t in spaces) + " |"
    quality = [header, "|" + "---|" * (1 + 4 * len(spaces))]
    for r in (r for r in result["rows"] if "frechet" in r):
        cells = [name(r)]
        for space, _ in spaces:
            for key, digits in (("frechet", 1), ("kid", 3)):
                cells.append(_interval(r[space + key], digits) if space + key in r else "")
                diff = r.get(f"{space}{key}_minus_ddpm1000")
                cells.append(_interval(diff, digits) if diff else "")
        quality.append("| " + " | ".join(cells) + " |")
    return "\n".join(speed) + ("\n\n" + "\n".join(quality) if len(quality) > 2 else "")


if __name__ == "__main__":
    main()
