"""Both experiments end to end on tiny settings: real 2012 frames, a tiny browse pipeline, one epoch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from solar_diffusion.training.experiments import flare_ahead, skill_scores

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--seeds", "2", "--epochs", "1", "--batch-size", "32", "--widths", "4,8", "--feature-dim", "8", "--steps", "2",
        "--min-real", "3"]


@pytest.fixture
def browse_model_dir(tmp_path, make_pipeline):
    from solar_diffusion import ClipLogNormalization
    from solar_diffusion.hub import save_pipeline

    pipe = make_pipeline(labels=("quiet", "B", "C", "M", "X"), normalization=ClipLogNormalization.for_browse())
    return save_pipeline(pipe, tmp_path / "browse-model")


def launch(*args):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "training" / "accelerate_configs" / "cpu.yaml"), "--num_cpu_threads_per_process", "1",
           str(ROOT / "training" / "experiments.py"), *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr[-3000:]


def test_classifier_experiment(real_64, browse_model_dir, tmp_path):
    out = tmp_path / "classifier"
    launch("classifier", "--dataset", real_64, "--model", browse_model_dir, "--out", out, "--balance-ratio", "0.2",
           "--max-synthetic-per-class", "5", *TINY)
    results = json.loads((out / "results.json").read_text())
    counts, add = results["train_counts"], results["synthetic_added"]
    largest = max(counts, key=counts.get)
    assert largest not in add and add and all(0 <= n <= 5 for n in add.values())
    assert all(add[c] == min(5, max(0, round(0.2 * counts[largest]) - counts[c])) for c in add)
    for arm in ("real only", "real + synthetic"):
        assert [r["seed"] for r in results["runs"][arm]] == [0, 1]
        assert results["summary"][arm]["macro"]["std"] >= 0
        total = np.sum(results["runs"][arm][0]["confusion"])
        assert total == sum(results["test_counts"].values())
    for c, reason in results["not_scored"].items():
        assert reason.startswith("too few real test images") and c not in results["scored_classes"]
    assert (out / "f1.png").stat().st_size > 0 and "real + synthetic" in (out / "report.md").read_text()
    # the synthetic images are cached and reused by a rerun
    assert sorted(p.name.split("_")[0] for p in (out / "synthetic").glob("*.npy")) == sorted(c for c, n in add.items() if n)


def test_predictor_experiment(real_64, browse_model_dir, shared_data, tmp_path):
    out = tmp_path / "predictor"
    launch("predictor", "--dataset", real_64, "--model", browse_model_dir, "--out", out, "--flare-list",
           shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv", "--synthetic-positives", "4", *TINY)
    results = json.loads((out / "results.json").read_text())
    assert list(results["thresholds"]) == ["M", "C"]
    m = results["thresholds"]["M"]
    assert m["synthetic_positives"] == {"M": 2, "X": 2} and results["thresholds"]["C"]["synthetic_positives"] == \
        {"C": 2, "M": 2, "X": 2}
    assert 0 < m["test_frames"] and 0 <= m["test_base_rate"] <= 1
    for arm in ("real only", "real + synthetic"):
        run = m["runs"][arm][0]
        assert run["tp"] + run["fn"] + run["fp"] + run["tn"] == m["test_frames"]
    assert (out / "skill.png").stat().st_size > 0


def test_flare_ahead_looks_only_forward():
    events = pd.DataFrame({"peak": pd.to_datetime(["2012-03-07 00:24", "2012-03-09 03:53"]),
                           "peak_flux": [5.4e-4 / 0.7, 6.3e-5 / 0.7]})
    t = pd.to_datetime(["2012-03-06 01:00", "2012-03-07 00:24", "2012-03-07 01:00", "2012-03-08 04:00",
                        "2012-03-08 03:53"], utc=True)
    x = 1e-4 / 0.7
    assert flare_ahead(t, events, x, 24).tolist() == [True, False, False, False, False]
    assert flare_ahead(t, events, 1e-5 / 0.7, 24).tolist() == [True, False, False, True, True]  # 24 h: in


def test_skill_scores_of_perfect_and_inverted_forecasts():
    truth = [1, 0, 0, 1, 0]
    assert skill_scores(truth, truth)["tss"] == 1 and skill_scores(truth, truth)["hss"] == 1
    inverted = skill_scores(truth, [not v for v in truth])
    assert inverted["tss"] == -1 and inverted["recall"] == 0
