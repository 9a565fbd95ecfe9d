"""Seconds per image of one pipeline call at batch 1 with the default settings, per bundled model.

    python benchmarks/bench_latency.py [--repeats 7] [--json reports/bench_latency.json]

The release target (issue 16): at 64 px, at most 1.5 s per image at batch 1 with the defaults on
2 CPU cores. Each model is loaded as ``solar-diffusion generate`` loads it (``load_pipeline``),
warmed up with one call, then timed ``--repeats`` times (a new seed each call; a flare model is
asked for an M flare at a fixed position, the paper's model for class M); the median and the
range are printed, with the flare model's time over the paper model's in the same run (both at
the base model's 64 px), for a model with novelty guidance its time without it
(``novelty_target=0``): what the guidance costs, and for a cascade its default output (the
upscaler's 256 px, base stage included): what a user's ``pipe("M")`` costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def time_model(model: Path, repeats: int, novelty_target: float | None = None, base: bool = True) -> dict | None:
    """One row: ``model`` at its base model's size (``base``), or at its default output size where
    that differs (a cascade's upscaler's; None for a model of one size)."""
    import torch

    from solar_diffusion.augment import weights_digest
    from solar_diffusion.generate import load_pipeline

    pipe = load_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    request = {"flare_class": "M", "flare_position": (300.0, -250.0)} if pipe.conditioning == "flare" \
        else {"flare_class": "M"}
    size = pipe.output_size(pipe.unet.config.sample_size if base else None)
    if not base and size == pipe.unet.config.sample_size:
        return None

    def call(seed):
        return pipe(**request, generator=[torch.Generator().manual_seed(seed)], novelty_target=novelty_target,
                    output_type="np", image_size=size)

    used = call(0).metadata[0]  # warm-up: first-call allocations; what the pipeline chose
    seconds = []
    for seed in range(1, repeats + 1):
        started = time.perf_counter()
        call(seed)
        seconds.append(time.perf_counter() - started)
    return {"model": model.name, "weights": weights_digest(pipe.unet), "conditioning": pipe.conditioning, "size": size,
            "channels": pipe.unet.config.out_channels, "steps": pipe.inference_steps(), "guidance": used["guidance_scale"],
            "novelty_target": used["novelty_target"],
            "seconds_median": statistics.median(seconds), "seconds_min": min(seconds), "seconds_max": max(seconds),
            "repeats": repeats}


def main(argv=None) -> dict:
    import torch

    from solar_diffusion.defaults import BUNDLED_MODEL, paper_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    try:
        paper = paper_model()
    except FileNotFoundError as error:
        raise SystemExit(f"the baseline needs it: {error}") from None
    rows = [time_model(model, args.repeats) for model in (paper, BUNDLED_MODEL)]
    result = {"command": "python benchmarks/bench_latency.py", "cpu_count": os.cpu_count(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows,
              "flare_over_paper": rows[1]["seconds_median"] / rows[0]["seconds_median"]}
    if rows[1]["novelty_target"]:
        rows.append(time_model(BUNDLED_MODEL, args.repeats, novelty_target=0.0))
        result["novelty_over_without"] = rows[1]["seconds_median"] / rows[2]["seconds_median"]
    default = time_model(BUNDLED_MODEL, args.repeats, base=False)  # a cascade's default output, base stage included
    if default:
        rows.append(default)
    print("| model | conditioning | size | channels | novelty target | s / image, batch 1 (median, range) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['conditioning']} | {r['size']} | {r['channels']} | {r['novelty_target']:g} | "
              f"{r['seconds_median']:.3f} ({r['seconds_min']:.3f}-{r['seconds_max']:.3f}) |")
    print(f"flare model / paper model: {result['flare_over_paper']:.2f}")
    if "novelty_over_without" in result:
        print(f"flare model with its novelty guidance / without: {result['novelty_over_without']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
