"""Where the base model's grain comes from (the fidelity issue): the disk's power per band of spatial
frequency, generated over real, as the sampling changes, with the weights fixed.

    python benchmarks/grain_sources.py --model solar_diffusion/models/default \\
        --dataset data/aia-browse2012-64-3ch --split validation --num-images 32 --json reports/grain_sources.json

Every setting draws ``--num-images`` images of each of quiet, C, M and X with the same seeds and
flare positions (image k of every class: seed k, the k-th position drawn from the training
flares); only the setting differs: the model's defaults, more solver steps, other guidance scales,
novelty guidance off. The real frames are the split's (``fidelity.power_ratio``: per channel and
band, generated mean power over real, intervals over seeds and days). Grain that falls with more
steps comes from the sampler; grain that rises with guidance comes from guidance; grain that stays
in every row is in the weights.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from solar_diffusion.flare_evaluation import observation_days, requested_positions
from solar_diffusion.fidelity import power_ratio
from solar_diffusion.generate import load_pipeline
from solar_diffusion.pipelines import disk_center_px, rsun_px
from solar_diffusion.splits import model_space_split

CLASSES = ("quiet", "C", "M", "X")
#: name -> the pipeline call's settings (None: the model's own).
SETTINGS = {
    "defaults": {},
    "25 steps": {"num_inference_steps": 25},
    "50 steps": {"num_inference_steps": 50},
    "guidance 1 (conditional only)": {"guidance_scale": 1.0},
    "guidance 3": {"guidance_scale": 3.0},
    "guidance 5": {"guidance_scale": 5.0},
    "novelty off": {"novelty_target": 0.0},
}


def draw(pipe, n: int, positions, seed: int = 0, **settings) -> tuple[np.ndarray, float]:
    """``n`` images of each class (image k: seed ``seed + k``, position ``positions[k]``), model space."""
    images, began = [], time.perf_counter()
    for c in CLASSES:
        out = pipe([c] * n, flare_position=None if c == "quiet" else positions[:n],
                   generator=[torch.Generator().manual_seed(seed + k) for k in range(n)], output_type="model",
                   image_size=pipe.unet.config.sample_size, **settings)
        images.append(out.images.cpu().numpy())
    return np.concatenate(images), (time.perf_counter() - began) / (n * len(CLASSES))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="validation")
    p.add_argument("--num-images", type=int, default=32, help="images per class and setting")
    p.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of SETTINGS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the table here")
    args = p.parse_args(argv)
    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    size, geometry = pipe.unet.config.sample_size, pipe.config.geometry
    center, radius = disk_center_px(geometry, size), rsun_px(geometry, size)
    real = model_space_split(args.dataset, args.split, pipe.normalization, size)
    channels = [f"{w:g}" for w in geometry.get("wavelengths_angstrom") or range(real.images.shape[1])]
    cycle = requested_positions(pipe, args.num_images, args.seed)
    positions = [cycle[k % len(cycle)] for k in range(args.num_images)]
    seeds = np.tile(np.arange(args.num_images), len(CLASSES))
    rows = {}
    for name in [s.strip() for s in args.settings.split(",") if s.strip()]:
        if name not in SETTINGS:
            raise SystemExit(f"unknown setting {name!r}: choose from {', '.join(SETTINGS)}")
        images, seconds = draw(pipe, args.num_images, positions, args.seed, **SETTINGS[name])
        ratio = power_ratio(images, real.images.numpy(), center, radius, seeds, observation_days(real.t_obs),
                            channels, seed=args.seed)
        rows[name] = {"settings": SETTINGS[name], "seconds_per_image": seconds, "power_ratio": ratio}
        bands = list(ratio["channels"][channels[0]])[-2:]
        print(f"{name:32s} " + "  ".join(f"{w} {b}: {ratio['channels'][w][b]['value']:.3f} "
                                         f"[{ratio['channels'][w][b]['low']:.3f}, {ratio['channels'][w][b]['high']:.3f}]"
                                         for w in channels for b in bands) + f"  ({seconds:.2f} s/image)", flush=True)
    report = {"model": args.model, "dataset": args.dataset, "split": args.split, "num_images_per_class": args.num_images,
              "classes": list(CLASSES), "real_frames": len(real.images), "rows": rows}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
