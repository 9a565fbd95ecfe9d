"""Contact sheet and per-class bright-pixel statistics of a trained pipeline next to real data.

    python training/release_report.py --model PATH --dataset data/aia171-browse2012-64 --out reports/release

Writes ``contact_sheet.png`` (every class of the model), ``bright_fraction.json`` and
``bright_fraction.md``: per class, the fraction of on-disk pixels brighter than the 99th
percentile of real quiet training frames, for generated images and for the real frames of each
split (mean, standard error, count).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def _summary(values) -> dict:
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return {"n": 0}
    sem = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    return {"n": int(values.size), "mean": float(values.mean()), "sem": sem}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num-per-class", type=int, default=32)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from datasets import load_dataset

    from solar_diffusion.generate import generate_to_folder, load_pipeline, use_scheduler, write_contact_sheet
    from solar_diffusion.maps import rsun_px
    from solar_diffusion.metrics import bright_fraction, threshold_from_quiet

    out = Path(args.out)
    pipe = use_scheduler(load_pipeline(args.model), "dpm")
    pipe.set_progress_bar_config(disable=True)
    norm, geometry = pipe.normalization, pipe.config.geometry
    size = pipe.unet.config.sample_size
    radius = rsun_px(geometry, size)

    real = {}
    for split in ("train", "validation", "test"):
        ds = load_dataset(args.dataset, split=split).with_format("numpy", columns=["image", "flare_class"])
        names = ds.features["flare_class"].names
        images = norm.forward(torch.from_numpy(np.asarray(ds["image"], dtype=np.float32)))
        if images.shape[-1] != size:
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        real[split] = (images.numpy(), np.array([names[i] for i in ds["flare_class"]]))
    train_images, train_labels = real["train"]
    threshold = threshold_from_quiet(train_images[train_labels == "quiet"], radius)

    records = generate_to_folder(pipe, out / "samples", ["all"], num_images=args.num_per_class,
                                 num_inference_steps=args.steps, guidance_scale=args.guidance, seed=args.seed,
                                 file_format="npy", model_name=str(args.model))
    generated = np.stack([norm.forward(np.load(out / "samples" / r["file"])) for r in records])
    generated_labels = np.array([r["flare_class"] for r in records])

    table = {"threshold_model_space": threshold, "rsun_px": radius, "classes": {}}
    for label in pipe.id2label.values():
        row = {"generated": _summary(bright_fraction(generated[generated_labels == label], radius, threshold))}
        for split, (images, labels) in real.items():
            row[f"real {split}"] = _summary(bright_fraction(images[labels == label], radius, threshold))
        table["classes"][label] = row
    out.mkdir(parents=True, exist_ok=True)
    (out / "bright_fraction.json").write_text(json.dumps(table, indent=1))
    columns = ["generated", "real train", "real validation", "real test"]
    lines = ["| class | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, row in table["classes"].items():
        cells = [f"{row[c]['mean']:.4f} ± {row[c]['sem']:.4f} (n={row[c]['n']})" if row[c]["n"] > 1 else
                 (f"{row[c]['mean']:.4f} (n=1)" if row[c]["n"] == 1 else "no images") for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    (out / "bright_fraction.md").write_text("\n".join(lines) + "\n")
    shown = [i for label in pipe.id2label.values() for i in np.flatnonzero(generated_labels == label)[:8]]
    write_contact_sheet(out / "contact_sheet.png", generated[shown], generated_labels[shown].tolist(),
                        [records[i]["seed"] for i in shown], title=f"{args.model}: {args.steps} DPM-Solver++ steps, "
                        f"guidance {args.guidance}")
    print("\n".join(lines))
    return table


if __name__ == "__main__":
    main()
