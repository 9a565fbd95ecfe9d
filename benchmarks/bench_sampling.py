"""Seconds per image and quality of each sampler, against the paper's algorithm on the same UNet.

    python benchmarks/bench_sampling.py --dataset data/aia171-browse2012-64 [--sizes 64,128]
        [--num-per-class 16] [--baseline-quality] [--json reports/bench_sampling.json]

Rows: (a) the paper's algorithm: 1000 DDPM ancestral steps, the conditional and the null UNet
calls made separately at batch 1 (``sample_separate_guidance``), with the UNet as saved (NCHW),
the baseline; (b) this pipeline with DDPM, 1000 steps (guidance batched, channels_last as
``load_pipeline`` sets it); (c) DDIM, 50 steps; (d) DPM-Solver++ at 10, 15, 20 and 25 steps.
Speed at batch 1 and per image in a batch of 16 (not for the 1000-step rows: minutes per
image). At the bundled model's size the UNet is the trained one and each row also gets its
quality: Fréchet distance and KID in the solar encoder's feature space to the real test frames
of the classes with enough of them (class-matched, bootstrap intervals). The 1000-step quality
(an hour or more on 2 CPU cores) comes only with ``--baseline-quality``, measured once on (b):
(a) is the same sampler with the same seeds, and the JSON records how far (a)'s and (b)'s
batch-1 images differ. The row of the pipeline's defaults is marked.
At other sizes the UNet is the same preset untrained (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from solar_diffusion.files import atomic_write

ROWS = [("(a) paper: DDPM 1000, separate batch-1 calls, NCHW", "ddpm", 1000, True),
        ("(b) pipeline: DDPM 1000", "ddpm", 1000, False),
        ("(c) pipeline: DDIM 50", "ddim", 50, False)] + \
       [(f"(d) pipeline: DPM-Solver++ {n}", "dpm", n, False) for n in (10, 15, 20, 25)]


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
    """Images (model space) for ``labels`` and the seconds per image."""
    from solar_diffusion.generate import sample_batches, sample_separate_guidance, use_scheduler

    use_scheduler(pipe, scheduler)
    if separate:
        images, seconds = _timed(lambda: torch.cat([sample_separate_guidance(pipe, label, steps, 3.0, seed + k)
                                                    for k, label in enumerate(labels)]))
    else:
        images, seconds = _timed(lambda: torch.cat([out.images.cpu() for out in sample_batches(
            pipe, labels, seed, steps, 3.0, batch_size)]))
    return images, seconds / len(labels)


def main(argv=None) -> dict:
    from solar_diffusion import metrics
    from solar_diffusion.cli import DEFAULT_MODEL
    from solar_diffusion.encoder import load_encoder
    from solar_diffusion.generate import load_pipeline
    from solar_diffusion.splits import model_space_split

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--dataset", required=True, help="built dataset with a test split, in the model's unit")
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--num-per-class", type=int, default=16, help="images per judged class for quality")
    parser.add_argument("--min-real", type=int, default=10)
    parser.add_argument("--baseline-quality", action="store_true", help="also the quality of the 1000-step rows")
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--rows", default="a,b,c,d", help="which rows to run (the baseline (a) is needed for ratios)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    pipe = load_pipeline(args.model)
    plain = load_pipeline(args.model, channels_last=False)  # the baseline's UNet, as saved
    for p in (pipe, plain):
        p.set_progress_bar_config(disable=True)
    default_steps = inspect.signature(pipe.__call__).parameters["num_inference_steps"].default
    default_scheduler = {"DDPMScheduler": "ddpm", "DDIMScheduler": "ddim",
                         "DPMSolverMultistepScheduler": "dpm"}[type(pipe.scheduler).__name__]
    model_size = pipe.unet.config.sample_size
    encoder = load_encoder()
    real = model_space_split(args.dataset, "test", pipe.normalization, model_size)
    counts = real.counts()
    judged = [c for c in pipe.id2label.values() if counts.get(c, 0) >= args.min_real]
    rng = np.random.default_rng(0)
    reference_idx = np.concatenate([rng.choice(np.flatnonzero(real.labels == c), min(counts[c], args.num_per_class),
                                               replace=False) for c in judged])
    reference = encoder.embed_images(real.images[torch.from_numpy(reference_idx)])
    quality_labels = [c for c in judged for _ in range(args.num_per_class)]

    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        label = judged[-1] if judged else list(pipe.id2label.values())[-1]
        first_images = {}
        fast_at, plain_at = pipelines_at(pipe, plain, size)
        for name, scheduler, steps, separate in (r for r in ROWS if r[0][1] in args.rows.split(",")):
            at_size = plain_at if separate else fast_at
            first_images[name[1]], batch1 = sample(at_size, scheduler, steps, separate, [label], 0, 1)
            row = {"size": size, "sampler": name, "scheduler": scheduler, "steps": steps,
                   "default": (scheduler, steps) == (default_scheduler, default_steps),
                   "seconds_per_image_batch1": batch1}
            if steps < 1000:
                sample(at_size, scheduler, steps, separate, [label] * 2, 0, 2)  # warm-up at batch > 1
                _, row["seconds_per_image_batch16"] = sample(at_size, scheduler, steps, separate, [label] * 16, 0, 16)
            if size == model_size and judged and (steps < 1000 or (args.baseline_quality and not separate)):
                images, _ = sample(at_size, scheduler, steps, separate, quality_labels, 1000, 16)
                features = encoder.embed_images(images)
                row["frechet"] = metrics.bootstrap(metrics.frechet_distance, features, reference, n_boot=args.n_boot)
                row["kid"] = metrics.bootstrap(metrics.kernel_distance, features, reference, n_boot=args.n_boot)
            rows.append(row)
            print(json.dumps(row, default=float), flush=True)
        if "a" in first_images and "b" in first_images:  # (a) and (b): one sampler, two implementations
            a, b = (r for r in rows if r["size"] == size and r["sampler"][1] in "ab")
            a["max_abs_difference_to_b"] = float((first_images["a"] - first_images["b"]).abs().max())
            for key in ("frechet", "kid"):
                if key in b:
                    a[key] = b[key]
                    a["quality_from"] = "(b), the same sampler and seeds"
    baseline = {r["size"]: r["seconds_per_image_batch1"] for r in rows if r["sampler"].startswith("(a)")}
    for row in (r for r in rows if r["size"] in baseline):
        row["speedup_vs_paper_batch1"] = baseline[row["size"]] / row["seconds_per_image_batch1"]
        if "seconds_per_image_batch16" in row:
            row["speedup_vs_paper_batch16"] = baseline[row["size"]] / row["seconds_per_image_batch16"]
    result = {"model": args.model, "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "judged_classes": judged,
              "quality_reference": f"{len(reference_idx)} real test frames, {args.num_per_class} per class at most",
              "rows": rows}
    if args.json:
        atomic_write(Path(args.json), lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    return result


if __name__ == "__main__":
    main()
