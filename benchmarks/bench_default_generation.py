"""Seconds per image of the bundled model with the pipeline's default settings, on this machine.

Baseline in the same process: the same steps with guidance as two separate batch-1 UNet calls
per step (the paper's structure), so the ratio isolates the batched guidance.

    python benchmarks/bench_default_generation.py [--model PATH] [--repeat 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import time
from pathlib import Path

import torch

from solar_diffusion.files import atomic_write


def seconds(fn, repeat):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None):
    from solar_diffusion.cli import DEFAULT_MODEL
    from solar_diffusion.generate import load_pipeline, sample_separate_guidance

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    defaults = {k: v.default for k, v in inspect.signature(pipe.__call__).parameters.items()
                if v.default is not inspect.Parameter.empty}
    steps, guidance = defaults["num_inference_steps"], defaults["guidance_scale"]
    label = list(pipe.id2label.values())[-1]
    batched = seconds(lambda: pipe(label, generator=torch.Generator().manual_seed(0)), args.repeat)
    batch16 = seconds(lambda: pipe(label, num_images_per_class=16, generator=torch.Generator().manual_seed(0)),
                      max(1, args.repeat - 2)) / 16
    separate = seconds(lambda: sample_separate_guidance(pipe, label, steps, guidance, 0), args.repeat)
    result = {
        "model": args.model,
        "scheduler": type(pipe.scheduler).__name__,
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "sample_size": pipe.unet.config.sample_size,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "seconds_per_image_batch1": batched,
        "seconds_per_image_batch16": batch16,
        "seconds_per_image_separate_guidance_batch1": separate,
        "separate_over_batched": separate / batched,
    }
    for key, value in result.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    if args.json:
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    return result


if __name__ == "__main__":
    main()
