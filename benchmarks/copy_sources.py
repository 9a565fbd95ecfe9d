"""Which training frames a flare model's M and X images are nearest to (the fidelity issue's
memorisation): their class, their orientation and where their flare lies against the request.

    python benchmarks/copy_sources.py --model solar_diffusion/models/default \\
        --dataset data/aia-browse2012-64-3ch --split validation --num-images 32 --novelty-target 0 \\
        --json reports/copy_sources.json

Each class's images are drawn as the evaluation draws them (image k: seed k, the k-th position
drawn from the training flares, the model's defaults; ``--novelty-target 0``: the weights' own
images, without the novelty push, as the fidelity issue's memorisation figure takes them). For
each image, for each real flare frame of the split of that class (the baseline: months the model
never saw) and for 64 frames of the split of any class, the nearest training frame is searched as
stored and flipped (``flare_evaluation.nearest_frames(..., flips=True)``, the evaluation's search).
Printed per class: the share whose nearest frame is an M or X training frame (of all training
frames, that share is small), the share nearest a flipped frame, the distinct training days they
land on, and for those nearest a flare frame the distance (px) from that frame's flare, in the
orientation found, to the requested (or real) flare position. Images keyed by their request land on
the M/X training days, in the orientation that puts the training flare at the requested place.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from solar_diffusion.flare_evaluation import (ORIENTATIONS, nearest_frames, observation_days, positions_px,
                                              real_flare_frames, requested_positions)
from solar_diffusion.generate import load_pipeline
from solar_diffusion.splits import model_space_split

FLARE_CLASSES = ("M", "X")


def oriented(position, orientation: str, size: int) -> np.ndarray:
    """A pixel position (x, y) in a frame flipped by ``orientation`` (array coordinates, 0-based).

    >>> oriented((10.0, 20.0), "both", 64).tolist()
    [53.0, 43.0]
    """
    x, y = position
    dims = ORIENTATIONS[orientation] or ()
    return np.array([size - 1 - x if -1 in dims else x, size - 1 - y if -2 in dims else y])


def summarise(index, orientation, distance, requested, train_labels, train_days, train_flare_px, size: int) -> dict:
    """The figures printed for one set of images (see the module docstring)."""
    flipped = orientation != "as stored"
    flare = np.isin(train_labels[index], FLARE_CLASSES)
    offsets = [float(np.hypot(*(oriented(train_flare_px[i], o, size) - p)))
               for i, o, p, f in zip(index, orientation, requested, flare) if f and i in train_flare_px]
    return {"n": len(index), "nearest_is_m_or_x_frame": float(flare.mean()),
            "nearest_is_flipped": float(flipped.mean()),
            "distance_median_as_stored": float(np.median(distance[~flipped])) if (~flipped).any() else None,
            "distance_median_flipped": float(np.median(distance[flipped])) if flipped.any() else None,
            "orientations": {o: int((orientation == o).sum()) for o in ORIENTATIONS},
            "distinct_training_days": int(len(set(train_days[index]))),
            "flare_offset_px_median": float(np.median(offsets)) if offsets else None,
            "flare_offset_px": offsets, "distance": distance.round(4).tolist(), "orientation": orientation.tolist()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="validation", help="the real frames of the baseline")
    p.add_argument("--num-images", type=int, default=32, help="images per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--novelty-target", type=float, default=None,
                   help="novelty guidance target (default: the model's own; 0: off, the weights' own copies)")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)
    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    size = pipe.unet.config.sample_size
    train = model_space_split(args.dataset, "train", pipe.normalization, size)
    train_days = observation_days(train.t_obs)
    # each training flare frame's flare position (px), found by matching the flare frames to the split
    flares = real_flare_frames(args.dataset, "train", pipe, FLARE_CLASSES)
    train_flare_px = {}
    for images, where, _ in flares.values():
        index, _, distance = nearest_frames(images, train.images)  # each flare frame itself, as stored
        train_flare_px |= {int(i): w for i, w, d in zip(index, where, distance) if d == 0}
    real = real_flare_frames(args.dataset, args.split, pipe, FLARE_CLASSES)
    cycle = requested_positions(pipe, args.num_images, args.seed)
    positions = [cycle[k % len(cycle)] for k in range(args.num_images)]
    novelty_target = pipe.novelty_setting(args.novelty_target)
    report = {"model": args.model, "dataset": args.dataset, "split": args.split, "num_images_per_class": args.num_images,
              "novelty_target": novelty_target,
              "training_frames": len(train.images),
              "training_m_or_x_frames": int(np.isin(train.labels, FLARE_CLASSES).sum()), "classes": {}}
    held_out = model_space_split(args.dataset, args.split, pipe.normalization, size)
    pick = np.random.default_rng(args.seed).permutation(len(held_out.images))[:64]
    index, orientation, distance = nearest_frames(held_out.images[torch.from_numpy(pick)], train.images, flips=True)
    s = report[f"real {args.split}, any class"] = summarise(index, orientation, distance, [None] * len(index), train.labels,
                                                          train_days, {}, size)
    print(f"real {args.split}, any class: n={s['n']}  nearest an M/X frame {s['nearest_is_m_or_x_frame']:.2f}  "
          f"flipped {s['nearest_is_flipped']:.2f} {s['orientations']}  days {s['distinct_training_days']}  "
          f"distance as stored / flipped {s['distance_median_as_stored']:.3f} / {s['distance_median_flipped']:.3f}", flush=True)
    for c in FLARE_CLASSES:
        out = pipe([c] * args.num_images, flare_position=positions, output_type="model", image_size=size,
                   novelty_target=novelty_target,
                   generator=[torch.Generator().manual_seed(args.seed + k) for k in range(args.num_images)])
        rows = {"generated": (out.images.cpu(), positions_px(pipe, positions))}
        if c in real:
            rows[f"real {args.split}"] = (real[c][0], real[c][1])
        report["classes"][c] = {}
        for name, (images, requested) in rows.items():
            index, orientation, distance = nearest_frames(images, train.images, flips=True)
            s = summarise(index, orientation, distance, requested, train.labels, train_days, train_flare_px, size)
            report["classes"][c][name] = s
            print(f"{c} {name:18s} n={s['n']:3d}  nearest an M/X frame {s['nearest_is_m_or_x_frame']:.2f}  "
                  f"flipped {s['nearest_is_flipped']:.2f} {s['orientations']}  days {s['distinct_training_days']}  "
                  f"distance as stored / flipped {s['distance_median_as_stored']} / {s['distance_median_flipped']}  "
                  f"flare offset median {s['flare_offset_px_median']} px", flush=True)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
