"""Training speed and peak memory per UNet preset and image size, and the data loader alone.

    python benchmarks/bench_training.py --datasets data/aia171-browse2012-64 data/aia171-browse2012-128
        data/aia171-browse2012-256 [--presets small,paper] [--sizes 64,128,256] [--batch 8]
        [--repeat 2] [--device cuda --bf16] [--json reports/bench_training.json]

One optimisation step is ``train_ddpm``'s: its data collation, its DDPM loss (noise, label
dropout to the null class, MSE), backward and an AdamW step, on real frames of a train split
(the dataset whose stored size is the training size, else the first, resized). Each
(preset, size) runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``; on CUDA
also ``torch.cuda.max_memory_allocated``) is its own. The data loader rows time the same
collation with no model (Parquet rows -> normalised tensors at the size), with 0 and 2 workers:
the loader must deliver images faster than a step consumes them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from timing import seconds  # run from anywhere: the script's folder is on sys.path

from solar_diffusion.files import atomic_write


def _collate_for(datasets, size):
    """(dataset folder, train split, Collate at ``size``, number of labels) for a training size."""
    from solar_diffusion.pipelines import ClipLogNormalization
    from solar_diffusion.splits import dataset_info, load_split
    from solar_diffusion.training.data import Collate

    stored = {int(dataset_info(d)["config"]["size"]): d for d in datasets}
    folder = stored.get(size, datasets[0])
    split = load_split(folder, "train")
    names = split.features["flare_class"].names
    collate = Collate(ClipLogNormalization.for_unit(dataset_info(folder)["unit"]), size, {i: i for i in range(len(names))})
    return folder, split, collate, len(names)


def train_step_rate(preset, size, batch, repeat, datasets, device, bf16) -> dict:
    """Samples/s of one training step (best of ``repeat`` after a warm-up) and peak memory."""
    from diffusers import DDPMScheduler

    from solar_diffusion import build_unet, null_condition
    from solar_diffusion.training.train_ddpm import diffusion_loss

    folder, split, collate, num_labels = _collate_for(datasets, size)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    x, labels = (t.to(device) for t in collate([split[i] for i in range(batch)]))
    unet = build_unet(preset, sample_size=size, num_labels=num_labels, in_channels=x.shape[1]).to(device).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")

    def step():
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            loss = diffusion_loss(unet, scheduler, x, labels, "epsilon", null_condition(unet.config), 0.1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    best = seconds(step, repeat)
    row = {"preset": preset, "size": size, "batch": batch, "device": device, "bf16": bf16, "dataset": folder,
           "parameters_m": sum(p.numel() for p in unet.parameters()) / 1e6, "seconds_per_step": best,
           "samples_per_s": batch / best,
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
           "rss_before_model_gb": rss_before / 2**20}
    if device.startswith("cuda"):
        row["cuda_peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def loader_rate(datasets, size, batch, workers, n_batches) -> dict:
    """Images/s of train_ddpm's data loader alone (shuffled, collated at ``size``)."""
    folder, split, collate, _ = _collate_for(datasets, size)
    loader = torch.utils.data.DataLoader(split, batch_size=batch, shuffle=True, collate_fn=collate,
                                         num_workers=workers, drop_last=True)
    batches = iter(loader)
    next(batches)  # workers start
    start = time.perf_counter()
    for _ in range(n_batches):
        next(batches)
    return {"size": size, "batch": batch, "workers": workers, "dataset": folder,
            "images_per_s": n_batches * batch / (time.perf_counter() - start)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", required=True, help="built datasets (train splits)")
    parser.add_argument("--presets", default="small,paper")
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="timed steps after one warm-up (best is kept)")
    parser.add_argument("--loader-batches", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPUs with bf16)")
    parser.add_argument("--one", nargs=2, metavar=("PRESET", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    if args.one:  # a subprocess: one (preset, size), its JSON row on the last line
        print(json.dumps(train_step_rate(args.one[0], int(args.one[1]), args.batch, args.repeat, args.datasets,
                                         args.device, args.bf16)))
        return {}
    sizes = [int(s) for s in args.sizes.split(",")]
    loader_rows = []
    for size in sizes:
        for workers in (0, 2):
            loader_rows.append(loader_rate(args.datasets, size, 16, workers, args.loader_batches))
            print(json.dumps(loader_rows[-1]), flush=True)
    train_rows = []
    for preset in args.presets.split(","):
        for size in sizes:
            command = [sys.executable, __file__, "--one", preset, str(size), "--datasets", *args.datasets,
                       "--batch", str(args.batch), "--repeat", str(args.repeat), "--device", args.device]
            done = subprocess.run(command + (["--bf16"] if args.bf16 else []), capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{preset} at {size} px failed:\n{done.stderr[-2000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            loader = max(r["images_per_s"] for r in loader_rows if r["size"] == size)
            row["loader_headroom"] = loader / row["samples_per_s"]
            train_rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "loader": loader_rows, "training": train_rows}
    if args.json:
        atomic_write(Path(args.json), lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    return result


if __name__ == "__main__":
    main()
