"""The base model's recipe study (the fidelity issue): one row per recipe, from its run and its evaluation.

    python benchmarks/recipe_study.py --runs reports/study [--json reports/study/table.json]

Each recipe folder holds the run's ``train_summary.json``, ``losses.jsonl`` and ``command.txt``
(copied from the run's ``--out``) and the ``metrics.json`` of ``solar-diffusion evaluate`` on the validation months (same settings for every row; its
``report.md`` is ``solar_diffusion.evaluation_report.render_report`` of it, not kept); either
JSON file may be gzipped (``metrics.json.gz``: a fifth of the bytes the GPU machine's transfer
carries); a folder
without a run (the release model itself, "R0") gives its evaluation only. Printed: images/s of
the run, its mean training loss over its last 100 steps, and the validation figures the fidelity issue judges: Inception-V3 Fréchet
distance over its real floor, Inception precision over the floor's, the evaluation encoder's
pooled Fréchet distance, the top-band power ratio per channel, the 171 Å pit (generated median
against the real 10th percentile), the very bright 171 Å pixels of X over quiet, the share of limbs
within the real maximum, and the M and X nearest-training-frame distances (flipped frames
searched) over real held-out frames', and the same for the nearest training hemisphere (rows whose
evaluation has it).
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from solar_diffusion import evaluation_keys as keys


def _value(figure) -> float | None:
    return None if not isinstance(figure, dict) else figure.get("value")


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def read_text(path: Path) -> str:
    """The text of ``path``, or of its gzipped copy ``path.gz`` where only that is kept."""
    zipped = path.with_name(path.name + ".gz")
    return gzip.decompress(zipped.read_bytes()).decode() if zipped.exists() else path.read_text()


def row(folder: Path) -> dict:
    """One recipe's figures from its folder (see the module docstring)."""
    metrics = json.loads(read_text(folder / "metrics.json"))
    inception = metrics["feature_spaces"].get("inception_v3", {}).get("pooled", {})
    encoder = metrics["feature_spaces"]["solar_encoder"]["pooled"]
    flare, out = metrics.get("flare", {}), {"recipe": folder.name}
    fid = flare.get("fidelity", {})
    if (folder / "train_summary.json").exists():
        summary = json.loads((folder / "train_summary.json").read_text())
        losses = [json.loads(line)["loss"] for line in read_text(folder / "losses.jsonl").splitlines()]
        out |= {"steps": summary["steps"], "images_per_s": summary["images_per_s"],
                "mixed_precision": summary["mixed_precision"], "loss_last_100": sum(losses[-100:]) / len(losses[-100:]),
                "command": (folder / "command.txt").read_text().strip()}
    if inception:
        out["inception_fd_over_floor"] = _value(inception["frechet"]) / _value(inception["floor_frechet"])
        out["inception_precision_over_floor"] = _value(inception["precision"]) / _value(inception["floor_precision"])
    out["encoder_fd"] = _value(encoder["frechet"])
    out["encoder_fd_floor"] = _value(encoder["floor_frechet"])
    power = fid.get("power_ratio", {}).get("channels", {})
    out["top_band_power_ratio"] = {w: _value(list(bands.values())[-1]) for w, bands in power.items()}
    pit = fid.get("pit", {})
    out["pit_median"], out["pit_real_p10"] = _value(pit.get("generated_median")), _value(pit.get("real_p10"))
    out["x_very_bright_over_quiet"] = _value(fid.get("very_bright", {}).get(keys.GENERATED, {}).get("X"))
    out["limbs_within_real_max"] = _value(fid.get("limb", {}).get("generated_within_real_max"))
    classes = flare.get("memorisation", {}).get("classes", {})
    out["memorisation_over_real"] = {c: _value(classes.get(c, {}).get(keys.OVER_REAL_HELD_OUT_WITH_FLIPS))
                                     for c in ("M", "X")}
    out["hemisphere_memorisation_over_real"] = {c: _value(classes.get(c, {}).get(keys.OVER_REAL_HELD_OUT_HEMISPHERE))
                                                for c in ("M", "X")}
    return out


def table(rows: list[dict]) -> list[str]:
    """The markdown table of the rows."""
    lines = ["| recipe | steps | images/s | loss (last 100 steps) | Inception FD / floor | Inception precision / "
             "floor | encoder FD (floor) | top-band power ratio 171 / 131 / 94 | 171 Å pit: median (real p10) | "
             "X very bright / quiet | limbs within real max | nearest training frame / real, M / X | nearest training "
             "hemisphere / real, M / X |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        power = " / ".join(_fmt(v, 3) for v in r["top_band_power_ratio"].values()) or "-"
        memo = " / ".join(_fmt(v, 3) for v in r["memorisation_over_real"].values())
        halves = " / ".join(_fmt(v, 3) for v in r.get("hemisphere_memorisation_over_real", {}).values()) or "-"
        lines.append(f"| {r['recipe']} | {r.get('steps', '-')} | {_fmt(r.get('images_per_s'))} | "
                     f"{_fmt(r.get('loss_last_100'), 4)} | {_fmt(r.get('inception_fd_over_floor'))} | "
                     f"{_fmt(r.get('inception_precision_over_floor'))} | {_fmt(r['encoder_fd'])} "
                     f"({_fmt(r['encoder_fd_floor'])}) | {power} | {_fmt(r['pit_median'])} ({_fmt(r['pit_real_p10'])}) "
                     f"| {_fmt(r['x_very_bright_over_quiet'])} | {_fmt(r['limbs_within_real_max'])} | {memo} | {halves} |")
    return lines


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="reports/study", help="folder of one sub-folder per recipe")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = [row(folder) for folder in sorted(Path(args.runs).iterdir())
            if (folder / "metrics.json").exists() or (folder / "metrics.json.gz").exists()]
    print("\n".join(table(rows)))
    for r in rows:
        if "command" in r:
            print(f"\n{r['recipe']}: {r['command']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
