"""Do the training augmentations that rebuild a frame's disk deform its limb? The limb fit of the
evaluation (``fidelity.limb_fit``: the RMS of 64 limb points' distances from their fitted circle)
on training frames as stored, after a solar rotation and after a hemisphere swap.

    python benchmarks/augmented_limbs.py --dataset data/aia-browse2012-64-3ch [--frames 512 --seed 0]

Frames drawn at random from the train split in batches of 16 (the partners of a swap or of the
rotation's limb ring come from the batch, as in training), each augmentation asked with
probability 1; only the frames it changed are fitted. Printed per set: the count, the median,
99th percentile and maximum residual (px), and how many lie beyond ``--real-max`` (the real
frames' maximum in the evaluation, 0.529 px for the 2012 browse frames at 64 px).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from solar_diffusion.fidelity import limb_fit
from solar_diffusion.pipelines import FLARE_MAP_SIGMA_RSUN, ClipLogNormalization, disk_center_px, rsun_px
from solar_diffusion.splits import dataset_geometry, dataset_info, load_split
from solar_diffusion.training.data import Collate, random_hemisphere_swap, random_solar_rotation


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--frames", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real-max", type=float, default=0.529)
    args = parser.parse_args(argv)
    info = dataset_info(args.dataset)
    size = info["config"]["size"]
    rows = load_split(args.dataset, "train", columns=("image", "flare_class", "flares"))
    geometry = dataset_geometry(args.dataset, size)
    radius, center = rsun_px(geometry, size), disk_center_px(geometry, size)
    collate = Collate(ClipLogNormalization.for_unit(info["unit"]), size, None,
                      flare_sigma_px=FLARE_MAP_SIGMA_RSUN * radius, dataset_size=size, raw=True)
    torch.manual_seed(args.seed)
    picks = torch.randperm(len(rows))[:args.frames].tolist()
    fits = {"as stored": [], "solar rotation": [], "hemisphere swap": []}
    for start in range(0, len(picks), 16):
        images, labels, maps = collate([rows[i] for i in picks[start:start + 16]])
        x = collate.to_model_space(images, augment=False)
        fits["as stored"].append(limb_fit(x.numpy(), center, radius)[:, 3])
        for name, (y, _) in (("solar rotation", random_solar_rotation(x, labels, maps, 1.0, radius, center)),
                             ("hemisphere swap", random_hemisphere_swap(x, labels, maps, 1.0, radius, center[1]))):
            changed = [k for k in range(len(x)) if not torch.equal(y[k], x[k])]
            fits[name].append(limb_fit(y[changed].numpy(), center, radius)[:, 3])
    result = {}
    print("| frames | n | median (px) | 99th percentile (px) | max (px) | beyond the real max |")
    print("|---|---|---|---|---|---|")
    for name, parts in fits.items():
        r = np.concatenate(parts)
        result[name] = {"n": len(r), "median": float(np.nanmedian(r)), "p99": float(np.nanpercentile(r, 99)),
                        "max": float(np.nanmax(r)), "beyond_real_max": int((r > args.real_max).sum())}
        s = result[name]
        print(f"| {name} | {s['n']} | {s['median']:.3f} | {s['p99']:.3f} | {s['max']:.3f} | {s['beyond_real_max']} |")
    return result


if __name__ == "__main__":
    main()
