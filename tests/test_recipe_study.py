"""The recipe study's table is what its committed folders give: each row from the run's gzipped
loss record, summary and command and the validation evaluation's metrics (real files in
reports/study)."""

import gzip
import json
import shutil
from pathlib import Path

import pytest

from benchmarks import recipe_study

STUDY = Path(__file__).resolve().parents[1] / "reports" / "study"


def test_each_row_is_its_folders_figures_and_a_plain_loss_record_reads_alike(tmp_path):
    if not (STUDY / "table.json").exists():
        pytest.skip(f"{STUDY} holds no recipe study")
    table = {r["recipe"]: r for r in json.loads((STUDY / "table.json").read_text())}
    for folder in sorted(p for p in STUDY.iterdir() if p.is_dir()):
        assert recipe_study.row(folder) == table[folder.name], folder.name
    zipped = next(p for p in sorted(STUDY.iterdir()) if (p / "losses.jsonl.gz").exists())
    plain = shutil.copytree(zipped, tmp_path / zipped.name)
    for name in ("losses.jsonl", "metrics.json"):
        if (plain / f"{name}.gz").exists():
            (plain / name).write_bytes(gzip.decompress((plain / f"{name}.gz").read_bytes()))
            (plain / f"{name}.gz").unlink()
    assert recipe_study.row(plain) == table[zipped.name]
    losses = [json.loads(line)["loss"] for line in (plain / "losses.jsonl").read_text().splitlines()]
    assert table[zipped.name]["loss_last_100"] == pytest.approx(sum(losses[-100:]) / 100, abs=1e-12)


def test_copy_sources_finds_each_copy_its_orientation_and_its_flare_at_the_requested_place():
    import numpy as np
    import torch

    from benchmarks.copy_sources import oriented, summarise
    from solar_diffusion.flare_evaluation import ORIENTATIONS, nearest_frames

    g = torch.Generator().manual_seed(0)
    train = torch.rand(6, 3, 16, 16, generator=g)
    labels = np.array(["quiet", "C", "M", "quiet", "X", "C"], dtype=object)
    days = np.array(["2012-01-0%d" % (k + 1) for k in range(6)], dtype=object)
    flare_px = {2: np.array([3.0, 12.0]), 4: np.array([10.0, 5.0])}
    picks = [(2, "left-right"), (4, "both"), (0, "as stored"), (5, "up-down")]
    copies = torch.stack([train[i] if ORIENTATIONS[o] is None else train[i].flip(ORIENTATIONS[o]) for i, o in picks])
    copies = copies + 0.01 * torch.randn(copies.shape, generator=g)  # near copies, not exact
    index, orientation, distance = nearest_frames(copies, train, batch=4, flips=True)  # two chunks
    assert index.tolist() == [i for i, _ in picks] and orientation.tolist() == [o for _, o in picks]
    assert (distance < 0.02).all()
    requested = [oriented(flare_px[2], "left-right", 16), oriented(flare_px[4], "both", 16) + [3.0, 4.0], None, None]
    s = summarise(index, orientation, distance, requested, labels, days, flare_px, 16)
    assert s["nearest_is_m_or_x_frame"] == 0.5 and s["nearest_is_flipped"] == 0.75 and s["distinct_training_days"] == 4
    assert s["flare_offset_px"] == [0.0, 5.0] and s["orientations"] == {"as stored": 1, "left-right": 1, "up-down": 1, "both": 1}
