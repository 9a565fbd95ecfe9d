"""Both experiments end to end on tiny settings: real 2012 frames, a tiny browse pipeline, one epoch."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from solar_diffusion.training.experiments import flare_ahead, skill_scores

TINY = ["--seeds", "2", "--epochs", "1", "--batch-size", "32", "--widths", "4,8", "--feature-dim", "8", "--steps", "2",
        "--min-real", "3"]


def f1_from_confusion(confusion, classes, scored) -> dict:
    """Per-class F1 (2 tp / (2 tp + fp + fn), 0 where undefined) and their mean, from a confusion matrix."""
    confusion = np.asarray(confusion)
    scores = {}
    for c in scored:
        i = classes.index(c)
        tp = confusion[i, i]
        denominator = confusion[i, :].sum() + confusion[:, i].sum()
        scores[c] = 2 * tp / denominator if denominator else 0.0
    return scores | {"macro": float(np.mean(list(scores.values())))}


def test_classifier_experiment(real_64, browse_model_dir, tmp_path, accelerate_launch):
    out = tmp_path / "classifier"
    accelerate_launch("experiments.py", "classifier", "--dataset", real_64, "--model", browse_model_dir, "--out", out,
                      "--balance-ratio", "0.2", "--max-synthetic-per-class", "5", *TINY)
    results = json.loads((out / "results.json").read_text())
    counts, add = results["train_counts"], results["synthetic_added"]
    largest = max(counts, key=counts.get)
    assert largest not in add and add and all(0 <= n <= 5 for n in add.values())
    assert all(add[c] == min(5, max(0, round(0.2 * counts[largest]) - counts[c])) for c in add)
    classes, scored = results["classes"], results["scored_classes"]
    assert scored == [c for c in classes if results["test_counts"].get(c, 0) >= 3]
    for arm in ("real only", "real + synthetic"):
        runs = results["runs"][arm]
        assert [r["seed"] for r in runs] == [0, 1]
        for run in runs:
            # every real test frame is scored once, in the row of its true class
            assert np.sum(run["confusion"]) == sum(results["test_counts"].values())
            assert np.sum(run["confusion"], axis=1).tolist() == [results["test_counts"].get(c, 0) for c in classes]
            # the F1 scores are those of the confusion matrix (rounded to 3 places)
            expected = f1_from_confusion(run["confusion"], classes, scored)
            assert set(run["f1"]) == set(expected)
            for c, value in expected.items():
                assert 0 <= run["f1"][c] <= 1 and run["f1"][c] == pytest.approx(value, abs=1e-3), (arm, c)
        # the summary is the mean and sample standard deviation of the runs' scores
        for c in scored + ["macro"]:
            values = [r["f1"][c] for r in runs]
            summary = results["summary"][arm][c]
            assert summary["values"] == values
            assert summary["mean"] == pytest.approx(np.mean(values), abs=1e-4)
            assert summary["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-4)
    for c, reason in results["not_scored"].items():
        assert reason.startswith("too few real test images") and c not in results["scored_classes"]
    assert Image.open(out / "f1.png").format == "PNG" and "real + synthetic" in (out / "report.md").read_text()
    # the synthetic images are cached and reused by a rerun
    assert sorted(p.name.split("_")[0] for p in (out / "synthetic").glob("*.npy")) == sorted(c for c, n in add.items() if n)


def test_predictor_experiment(real_64, browse_model_dir, shared_data, tmp_path, accelerate_launch):
    out = tmp_path / "predictor"
    accelerate_launch("experiments.py", "predictor", "--dataset", real_64, "--model", browse_model_dir, "--out", out,
                      "--flare-list", shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv",
                      "--synthetic-positives", "4", *TINY)
    results = json.loads((out / "results.json").read_text())
    assert list(results["thresholds"]) == ["M", "C"]
    m = results["thresholds"]["M"]
    assert m["synthetic_positives"] == {"M": 2, "X": 2} and results["thresholds"]["C"]["synthetic_positives"] == \
        {"C": 2, "M": 2, "X": 2}
    assert 0 < m["test_frames"] and 0 <= m["test_base_rate"] <= 1
    for arm in ("real only", "real + synthetic"):
        assert [run["seed"] for run in m["runs"][arm]] == [0, 1]
        for run in m["runs"][arm]:
            # the same test frames, the same truth, in every run; the scores are those of the counts
            assert run["tp"] + run["fn"] + run["fp"] + run["tn"] == m["test_frames"]
            assert (run["tp"] + run["fn"]) / m["test_frames"] == pytest.approx(m["test_base_rate"], abs=1e-4)
            tp, fn, fp = run["tp"], run["fn"], run["fp"]
            assert run["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0, abs=1e-4)
            if tp + fn and fp + run["tn"]:
                assert run["recall"] == pytest.approx(tp / (tp + fn), abs=1e-4)
                assert run["tss"] == pytest.approx(tp / (tp + fn) - fp / (fp + run["tn"]), abs=2e-4)
    assert Image.open(out / "skill.png").format == "PNG"


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
