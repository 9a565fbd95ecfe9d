"""Achieved GFLOP/s of the UNet forward pass as a fraction of the float32 matmul peak, measured in one run.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, matmuls and
attention; norms and activations are not counted, so the fraction is a lower bound). The peak
is the best float32 ``torch.mm`` rate of square matrices on the same threads in the same
process.

    python benchmarks/bench_unet_throughput.py [--presets small,paper] [--size 64] [--batches 1,8,16]
        [--compile] [--json FILE]

Layouts: NCHW (as saved), channels_last (what ``load_pipeline`` uses) and, with ``--compile``,
channels_last compiled by ``torch.compile`` (inductor with weight freezing, its CPU inference
path; compile time is not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from timing import seconds  # run from anywhere: the script's folder is on sys.path

from solar_diffusion.files import atomic_write


@torch.inference_mode()
def matmul_peak(sizes=(512, 1024, 2048), repeat: int = 5) -> dict:
    """Best float32 GFLOP/s of ``a @ b`` over square sizes."""
    rates = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        rates[n] = 2 * n**3 / seconds(lambda: torch.mm(a, b), repeat) / 1e9
    return {"gflops": max(rates.values()), "by_size": rates}


@torch.inference_mode()
def unet_rate(preset: str, size: int, batch: int, repeat: int, layout: str) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from solar_diffusion import build_unet

    unet = build_unet(preset, size, num_labels=5).eval()
    x = torch.randn(batch, 1, size, size)
    t = torch.full((batch,), 500)
    labels = torch.zeros(batch, dtype=torch.long)
    if layout != "NCHW":
        unet, x = unet.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    counter = FlopCounterMode(display=False)
    with counter:
        unet(x, t, class_labels=labels)
    flops = counter.get_total_flops()
    forward = unet
    if layout == "channels_last + compile":
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        forward = torch.compile(unet, dynamic=False)  # as load_pipeline: dynamic shapes break mkldnn convs
    elapsed = seconds(lambda: forward(x, t, class_labels=labels), repeat)
    return {"preset": preset, "size": size, "batch": batch, "layout": layout,
            "parameters": sum(p.numel() for p in unet.parameters()), "gflop_per_forward": flops / 1e9,
            "seconds_per_forward": elapsed, "gflops": flops / elapsed / 1e9}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="small,paper")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batches", default="1,8,16")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also channels_last + torch.compile")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    peak = matmul_peak()
    rows = []
    for preset in args.presets.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            for layout in ("NCHW", "channels_last") + (("channels_last + compile",) if args.compile else ()):
                row = unet_rate(preset, args.size, batch, args.repeat, layout)
                row["fraction_of_matmul_peak"] = row["gflops"] / peak["gflops"]
                rows.append(row)
                print(f"{preset:6s} {args.size}px batch {batch:3d} {layout:24s} "
                      f"{row['gflop_per_forward']:.2f} GFLOP/forward  {row['seconds_per_forward'] * 1e3:8.1f} ms  "
                      f"{row['gflops']:7.1f} GFLOP/s  {row['fraction_of_matmul_peak']:.0%} of peak")
    print(f"float32 matmul peak: {peak['gflops']:.1f} GFLOP/s")
    result = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "matmul_peak": peak, "unet": rows}
    if args.json:
        atomic_write(Path(args.json), lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    return result


if __name__ == "__main__":
    main()
