"""Seconds per 256 px image of a cascade (base stage included) against the paper's sampler at 256 px.

    python benchmarks/bench_cascade.py --model solar_diffusion/models/default [--paper-steps 3]
        [--repeat 2] [--json reports/bench_cascade.json]

The cascade is timed with its defaults (an M flare at a fixed position, one generator per image),
at batch 16 and at batch 1 (best of ``--repeat`` after a warm-up call). The paper's sampler is
1000 ancestral DDPM steps, each a conditional and a null UNet call at batch 1, on the paper-scale
UNet (preset ``paper``) at the cascade's output size with random weights (the cost does not depend
on them): ``--paper-steps`` steps are timed and scaled to 1000, as ``bench_sampling.py`` does for
its 1000-step rows. The speed-up is the paper's seconds per image over the cascade's, in one run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from timing import seconds  # the benchmarks' timing helper (benchmarks/timing.py)


def cascade_seconds(pipe, batch: int, repeat: int) -> float:
    """Seconds per image of the cascade's defaults at its upscaler's size, ``batch`` images a call."""
    request = {"flare_class": ["M"] * batch, "flare_position": [(300.0, -250.0)] * batch} \
        if pipe.conditioning == "flare" else {"flare_class": ["M"] * batch}

    def call():
        pipe(**request, generator=[torch.Generator().manual_seed(k) for k in range(batch)], output_type="model",
             image_size=pipe.upscaler.config.sample_size)

    return seconds(call, repeat) / batch


def paper_seconds(size: int, steps: int) -> float:
    """Seconds per image of the paper's sampler (1000 steps of two batch-1 UNet calls) at ``size`` px,
    from ``steps`` timed steps of the paper-scale UNet."""
    from diffusers import DDPMScheduler

    from solar_diffusion import SolarFlarePipeline, build_unet
    from solar_diffusion.generate import sample_separate_guidance

    pipe = SolarFlarePipeline(build_unet("paper", size, num_labels=5).eval(), DDPMScheduler(),
                              id2label=dict(enumerate(["quiet", "B", "C", "M", "X"])))
    sample_separate_guidance(pipe, "X", num_inference_steps=1)  # warm-up
    began = time.perf_counter()
    sample_separate_guidance(pipe, "X", num_inference_steps=steps)
    return (time.perf_counter() - began) / steps * 1000


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a saved cascade (a pipeline with an upscaler)")
    p.add_argument("--paper-steps", type=int, default=3, help="steps of the paper's sampler timed (scaled to 1000)")
    p.add_argument("--repeat", type=int, default=2, help="timed calls per batch size (best kept)")
    p.add_argument("--json", default=None, help="write the result here")
    args = p.parse_args(argv)

    from solar_diffusion.generate import load_pipeline

    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    size = pipe.upscaler.config.sample_size
    result = {"model": Path(args.model).name, "size": size, "base_size": pipe.unet.config.sample_size,
              "base_steps": pipe.inference_steps(), "upscaling": dict(pipe.config.upscaling),
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    result["seconds_per_image_batch16"] = cascade_seconds(pipe, 16, args.repeat)
    result["seconds_per_image_batch1"] = cascade_seconds(pipe, 1, args.repeat)
    result["paper_seconds_per_image"] = paper_seconds(size, args.paper_steps)
    result["speedup_vs_paper_batch16"] = result["paper_seconds_per_image"] / result["seconds_per_image_batch16"]
    result["speedup_vs_paper_batch1"] = result["paper_seconds_per_image"] / result["seconds_per_image_batch1"]
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
