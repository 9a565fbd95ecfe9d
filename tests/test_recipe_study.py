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
    (plain / "losses.jsonl").write_bytes(gzip.decompress((plain / "losses.jsonl.gz").read_bytes()))
    (plain / "losses.jsonl.gz").unlink()
    assert recipe_study.row(plain) == table[zipped.name]
    losses = [json.loads(line)["loss"] for line in (plain / "losses.jsonl").read_text().splitlines()]
    assert table[zipped.name]["loss_last_100"] == pytest.approx(sum(losses[-100:]) / 100, abs=1e-12)
