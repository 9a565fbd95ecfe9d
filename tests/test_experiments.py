"""Both experiments end to end, all four arms, on tiny settings: real 2012 frames, a tiny browse pipeline, one epoch."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from solar_diffusion.training.experiments import (ARMS, COMPARISONS, REFERENCES, flare_ahead, flare_behind,
                                                  forecast_figures, main, parse_groups, score_predictor,
                                                  skill_scores, tss_threshold)

TINY = ["--seeds", "2", "--epochs", "1", "--batch-size", "32", "--widths", "4,8", "--feature-dim", "8", "--steps", "2",
        "--min-real", "3", "--inner-every", "3", "--synthetic-per-class", "3", "--bootstrap", "50"]


@pytest.fixture
def browse_model_64(make_pipeline, tmp_path):
    """A tiny untrained class model of the real datasets' unit, labels and size (augment needs the size)."""
    from solar_diffusion import ClipLogNormalization
    from solar_diffusion.hub import save_pipeline

    pipe = make_pipeline(labels=("quiet", "B", "C", "M", "X"), sample_size=64,
                         normalization=ClipLogNormalization.for_browse())
    return save_pipeline(pipe, tmp_path / "browse-model-64")


def f1_from_confusion(confusion, scored_ids) -> dict:
    """Per-class F1 (2 tp / (2 tp + fp + fn)) of a confusion matrix (rows: true) and their mean."""
    confusion = np.asarray(confusion)
    scores = [2 * confusion[i, i] / (confusion[i, :].sum() + confusion[:, i].sum()) for i in scored_ids]
    return float(np.mean(scores))


def check_comparison(comparison, figures):
    """Every arm and every paired difference has every figure, each inside its interval."""
    assert list(comparison["arms"]) == list(ARMS)
    assert sorted(comparison["differences"]) == sorted(f"{a} - {b}" for a, b in COMPARISONS)
    for a, b in COMPARISONS:
        for f in figures:
            d = comparison["differences"][f"{a} - {b}"][f]
            assert d["low"] <= d["value"] <= d["high"] and d["detectable"] >= 0
            # the difference is the difference of the arms' estimates (paired: same seeds, same frames)
            assert d["value"] == pytest.approx(comparison["arms"][a][f]["value"] - comparison["arms"][b][f]["value"],
                                               abs=2e-4)
    for arm in ARMS:
        for f in figures:
            c = comparison["arms"][arm][f]
            assert c["low"] <= c["value"] <= c["high"]


def test_classifier_experiment_runs_all_four_arms(real_64, browse_model_64, tmp_path, accelerate_launch):
    out = tmp_path / "classifier"
    accelerate_launch("experiments.py", "classifier", "--dataset", real_64, "--model", browse_model_64, "--out", out,
                      *TINY)
    results = json.loads((out / "results.json").read_text())
    groups, scored = results["group_names"], results["scored_groups"]
    assert groups == ["<C", "C", ">=M"] and results["groups"]["X"] == ">=M"
    assert results["synthetic_counts"] == {"M": 3, "X": 3}
    truth, days = np.array(results["scored_truth"]), np.array(results["scored_days"])
    assert len(truth) == sum(results["scored_counts"].values()) and results["scored_months"] == ["2012-08", "2012-10"]
    assert len(days) == len(truth) and days.max() + 1 == results["comparison"]["days"] == 6  # the 6 scored days
    for g in groups:
        assert results["scored_flares"][g] <= results["scored_counts"][g]
    scored_ids = [groups.index(g) for g in scored]
    means = {}
    for arm in ARMS:
        runs = results["runs"][arm]
        assert [r["seed"] for r in runs] == [0, 1]
        macro = []
        for run in runs:
            predicted = np.array(run["predicted"])
            assert len(predicted) == len(truth)  # every scored frame, once
            confusion = np.zeros((len(groups), len(groups)), int)
            np.add.at(confusion, (truth, predicted), 1)
            macro.append(f1_from_confusion(confusion, scored_ids))
            assert run["figures"]["macro-F1"] == pytest.approx(macro[-1], abs=1e-4)
        means[arm] = np.mean(macro)
        # the arm's estimate is the mean over seeds of the figure on all scored frames
        assert results["comparison"]["arms"][arm]["macro-F1"]["value"] == pytest.approx(means[arm], abs=1e-4)
    check_comparison(results["comparison"], ["macro-F1"] + [f"F1 {g}" for g in scored])
    assert len(results["verdicts"]) == 3 * (1 + len(scored))
    report = (out / "report.md").read_text()
    assert "## Verdict" in report and "oversampled" in report and Image.open(out / "f1.png").format == "PNG"
    # the synthetic frames come from augment, flagged, and are reused by a rerun with the same settings
    augmented = json.loads((out / "augmented" / "build_info.json").read_text())["augmented"]
    assert augmented["added"] == {"M": 3, "X": 3}
    stamp = (out / "augmented" / "synthetic.json").stat().st_mtime_ns
    accelerate_launch("experiments.py", "classifier", "--dataset", real_64, "--model", browse_model_64, "--out", out,
                      "--seeds", "1", *TINY[2:])
    assert (out / "augmented" / "synthetic.json").stat().st_mtime_ns == stamp


def test_predictor_experiment_runs_all_four_arms(real_64, browse_model_64, shared_data, tmp_path, accelerate_launch):
    out = tmp_path / "predictor"
    accelerate_launch("experiments.py", "predictor", "--dataset", real_64, "--model", browse_model_64, "--out", out,
                      "--flare-list", shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv",
                      "--threshold", "M", "--threshold", "X", *TINY)  # (>= C: every March training frame is positive)
    results = json.loads((out / "results.json").read_text())
    assert list(results["thresholds"]) == ["M", "X"] and results["settings"]["history_hours"] == 24
    report = (out / "report.md").read_text()
    assert "the image and the flare history" in report and "best TSS on the inner split" in report
    for threshold, r in results["thresholds"].items():
        assert r["synthetic_positives"] == {"M": 6, "X": 3}[threshold]  # the M and X frames; the X frames
        truth = np.array(r["scored_truth"], bool)
        assert len(truth) == results["scored_frames"] and r["scored_positives"] == truth.sum()
        assert r["scored_base_rate"] == pytest.approx(truth.mean(), abs=1e-4)
        for arm in ARMS:
            for run in r["runs"][arm]:
                p = np.array(run["p_yes"])
                assert len(p) == len(truth) and ((0 <= p) & (p <= 1)).all()
                assert 0 <= run["decision_threshold"] <= 1
                scores = skill_scores(truth, p >= run["decision_threshold"])
                if 0 < truth.sum() < len(truth):
                    assert run["figures"]["TSS"] == pytest.approx(scores["tss"], abs=2e-3)
                    brier = np.mean((p - truth) ** 2)
                    climatology = np.mean((r["training_base_rate"] - truth) ** 2)
                    assert run["figures"]["BSS"] == pytest.approx(1 - brier / climatology, abs=2e-3)
        if 0 < truth.sum() < len(truth):
            check_comparison(r["comparison"], ["TSS", "HSS", "BSS"])
            references = r["references"]["arms"]
            assert list(references) == ["real", *REFERENCES]
            assert references["climatology"]["TSS"]["value"] == 0 and references["climatology"]["BSS"]["value"] == 0
            assert references["real"] == r["comparison"]["arms"]["real"]
            assert any(v.startswith(f">= {threshold}: real vs persistence, TSS") for v in r["verdicts"])
    assert Image.open(out / "skill.png").format == "PNG"
    # rescoring the saved predictions gives the same figures; labels of another flare list are refused
    args = ["predictor", "--rescore", "--dataset", str(real_64), "--out", str(out), "--flare-list",
            str(shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv"), "--bootstrap", "50"]
    rescored = main(args)
    for threshold, r in results["thresholds"].items():
        if "comparison" in r:
            assert rescored["thresholds"][threshold]["comparison"] == r["comparison"]
    results["thresholds"]["M"]["scored_truth"][0] ^= 1
    (out / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match="labels differ"):
        main(args)


def test_flare_ahead_looks_only_forward():
    events = pd.DataFrame({"peak": pd.to_datetime(["2012-03-07 00:24", "2012-03-09 03:53"]),
                           "peak_flux": [5.4e-4 / 0.7, 6.3e-5 / 0.7]})
    t = pd.to_datetime(["2012-03-06 01:00", "2012-03-07 00:24", "2012-03-07 01:00", "2012-03-08 04:00",
                        "2012-03-08 03:53"], utc=True)
    x = 1e-4 / 0.7
    assert flare_ahead(t, events, x, 24).tolist() == [0, -1, -1, -1, -1]
    assert flare_ahead(t, events, 1e-5 / 0.7, 24).tolist() == [0, -1, -1, 1, 1]  # 24 h: in


def test_flare_behind_looks_only_back():
    events = pd.DataFrame({"start": pd.to_datetime(["2012-03-07 00:02", "2012-03-09 03:22"], utc=True),
                           "peak_flux": [5.4e-4 / 0.7, 6.3e-5 / 0.7]})
    t = pd.to_datetime(["2012-03-07 00:01", "2012-03-07 00:02", "2012-03-08 00:02", "2012-03-08 00:01",
                        "2012-03-09 04:00"], utc=True)
    assert flare_behind(t, events, 1e-4 / 0.7, 24).tolist() == [False, True, False, True, False]
    assert flare_behind(t, events, 1e-5 / 0.7, 24).tolist() == [False, True, False, True, True]


def test_synthetic_verdicts_only_for_a_predictor_that_beats_the_references():
    rng = np.random.default_rng(0)
    truth = rng.random(120) < 0.3
    day_index = np.repeat(np.arange(30), 4)
    references = {"climatology": np.full(120, 0.3), "persistence": np.where(rng.random(120) < 0.8, truth, ~truth)}

    def result(p_real):
        runs = {arm: [{"seed": s, "p_yes": (p_real if arm == "real" else truth).astype(float).tolist()}
                      for s in range(2)] for arm in ARMS}
        r = {"scored_truth": truth.astype(int).tolist(), "training_base_rate": 0.3, "runs": runs}
        return score_predictor(r, references, day_index, 30, 100, "M")

    skilled = result(truth)  # a perfect real-only predictor
    assert skilled["beats_references"] and skilled["references"]["arms"]["real"]["TSS"]["value"] == 1
    assert sum("real + synthetic vs" in v for v in skilled["verdicts"]) == 9
    unskilled = result(rng.random(120) < 0.3)  # chance
    assert not unskilled["beats_references"]
    assert not any("real + synthetic vs" in v for v in unskilled["verdicts"])
    assert "no verdict" in unskilled["verdicts"][-1] and "persistence" in unskilled["verdicts"][-1]
    persistence_tss = unskilled["references"]["arms"]["persistence"]["TSS"]["value"]
    assert persistence_tss == pytest.approx(skill_scores(truth, references["persistence"] >= 0.5)["tss"], abs=1e-4)


def test_a_classifier_with_covariates_needs_them_and_uses_them():
    from solar_diffusion.encoder import FlareClassifier

    torch.manual_seed(0)
    model = FlareClassifier(id2label={0: "no", 1: "yes"}, sample_size=16, widths=(4,), feature_dim=4,
                            covariates=1).eval()
    images = torch.zeros(3, 1, 16, 16)
    with pytest.raises(ValueError, match="reads 1 covariates per image beside it, got None"):
        model.predict_proba(images)
    low, high = (model.predict_proba(images, np.full((3, 1), v, np.float32)) for v in (-1.0, 1.0))
    assert low.shape == (3, 2) and np.allclose(low.sum(1), 1) and not np.allclose(low, high)


def test_the_decision_threshold_has_the_best_tss_on_its_frames():
    rng = np.random.default_rng(0)
    truth = rng.random(300) < 0.2
    p = np.clip(0.15 + 0.2 * truth + rng.normal(0, 0.12, 300), 0, 1)  # a forecast that never reaches 0.5 when right
    chosen = tss_threshold(truth, p)
    best = skill_scores(truth, p >= chosen)["tss"]
    assert best > skill_scores(truth, p >= 0.5)["tss"] + 0.3
    assert all(skill_scores(truth, p >= c)["tss"] <= best for c in np.linspace(0, 1, 201))
    assert not np.isin(chosen, p)  # between two probabilities, not on one
    assert tss_threshold([1, 1], [0.2, 0.9]) == 0.5  # one kind of frame: nothing to choose from


def test_skill_scores_of_perfect_and_inverted_forecasts():
    truth = [1, 0, 0, 1, 0]
    assert skill_scores(truth, truth)["tss"] == 1 and skill_scores(truth, truth)["hss"] == 1
    inverted = skill_scores(truth, [not v for v in truth])
    assert inverted["tss"] == -1 and inverted["recall"] == 0


def test_forecast_figures_refuse_a_sample_without_both_outcomes():
    with pytest.raises(ValueError, match="no positive"):
        forecast_figures([0, 0, 3, 5, 1.0, 1.0])
    perfect = forecast_figures([2, 0, 0, 6, 0.0, 1.5])
    assert perfect["TSS"] == 1 and perfect["BSS"] == 1 and perfect["base rate"] == 0.25


def test_groups_cover_every_class_once():
    assert parse_groups("low=quiet,B;high=C,M,X", ["quiet", "B", "C", "M", "X"])["M"] == "high"
    with pytest.raises(ValueError, match="in no group"):
        parse_groups("low=quiet;high=M,X", ["quiet", "B", "M", "X"])
    with pytest.raises(ValueError, match="two groups"):
        parse_groups("low=quiet,B;high=B,M", ["quiet", "B", "M"])


def test_a_threshold_no_scored_frame_reaches_is_reported_not_crashed(real_64, browse_model_64, shared_data, tmp_path,
                                                                     accelerate_launch):
    out = tmp_path / "predictor"
    accelerate_launch("experiments.py", "predictor", "--dataset", real_64, "--model", browse_model_64, "--out", out,
                      "--flare-list", shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv",
                      "--threshold", "X5", *TINY)  # only 2012-03-07 X5.4, in the training months
    results = json.loads((out / "results.json").read_text())
    assert results["thresholds"]["X5"] == {"not_scored": "the scored frames are all negative"}
    assert "Not scored: the scored frames are all negative" in (out / "report.md").read_text()


def test_a_classifier_run_that_could_score_nothing_is_refused_before_any_work(real_64, browse_model_64, tmp_path,
                                                                              capsys):
    from solar_diffusion.cli import main

    code = main(["experiment", "classifier", "--dataset", str(real_64), "--model", str(browse_model_64), "--out",
                 str(tmp_path / "x"), "--min-real", "100000"])
    err = capsys.readouterr().err
    assert code == 2 and "no class group has 100000 scored frames" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()  # no synthetic frames made, nothing trained


def test_the_predictor_gains_a_pre_flare_arm_from_a_forecast_augmented_dataset(real_64, browse_model_64, shared_data,
                                                                                 real_dataset_of_days, tmp_path):
    """A fifth arm: a forecast model's Suns before a flare (``augment --for-forecasting``) added as
    positives. The model is untrained (its config makes it a forecast model); the arm's wiring is
    what is tested."""
    from solar_diffusion import SolarFlarePipeline
    from solar_diffusion.augment import augment
    from solar_diffusion.training.experiments import FORECAST_ARM

    forecast_days = real_dataset_of_days(shared_data, tmp_path / "forecast", ["03-05", "03-06", "08-10"], 64,
                                         forecast_hours=24)
    model = SolarFlarePipeline.from_pretrained(browse_model_64)
    model.register_to_config(forecast={"horizon_hours": 24.0, "label_rule": "test"})
    model.save_pretrained(tmp_path / "forecast-model")
    augment(forecast_days, tmp_path / "pre-flare", tmp_path / "forecast-model", ratio=1.0, flare_classes=["M", "X"],
            max_per_class=2, num_inference_steps=2, for_forecasting=True, log=lambda *a: None)
    out = tmp_path / "predictor"
    flare_list = shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv"
    results = main(["predictor", "--dataset", str(real_64), "--model", str(browse_model_64), "--out", str(out),
                    "--flare-list", str(flare_list), "--threshold", "M", "--forecast-augmented",
                    str(tmp_path / "pre-flare"), *TINY])
    r = results["thresholds"]["M"]
    assert results["pre_flare_counts"] == {"M": 2, "X": 2} and r["pre_flare_positives"] == 4
    assert list(r["runs"]) == [*ARMS, FORECAST_ARM] and len(r["runs"][FORECAST_ARM]) == 2
    assert all(f"{FORECAST_ARM} - {b}" in r["comparison"]["differences"] for b in ARMS)
    assert any(v.startswith(f">= M: {FORECAST_ARM}") for v in r["verdicts"])
    # --reuse-runs keeps the four arms' runs and trains the fifth again: the same runs as training anew
    again = main(["predictor", "--dataset", str(real_64), "--model", str(browse_model_64), "--out", str(out),
                  "--flare-list", str(flare_list), "--threshold", "M", "--forecast-augmented",
                  str(tmp_path / "pre-flare"), "--reuse-runs", *TINY])
    assert again["reused_runs"] == sorted(ARMS) and again["thresholds"]["M"]["runs"] == r["runs"]
    assert "were kept from the earlier run" in (out / "report.md").read_text()
    with pytest.raises(ValueError, match=r"made with other settings or data \(epochs\)"):
        main(["predictor", "--dataset", str(real_64), "--model", str(browse_model_64), "--out", str(out),
              "--flare-list", str(flare_list), "--threshold", "M", "--reuse-runs", *TINY, "--epochs", "3"])
    with pytest.raises(FileNotFoundError, match="no earlier predictor run to reuse"):
        main(["predictor", "--dataset", str(real_64), "--model", str(browse_model_64), "--out", str(tmp_path / "z"),
              "--flare-list", str(flare_list), "--threshold", "M", "--reuse-runs", *TINY])
    with pytest.raises(ValueError, match="the predictor's horizon is 12 h"):
        main(["predictor", "--dataset", str(real_64), "--model", str(browse_model_64), "--out", str(tmp_path / "x"),
              "--flare-list", str(flare_list), "--horizon-hours", "12", "--forecast-augmented",
              str(tmp_path / "pre-flare"), *TINY])
    with pytest.raises(ValueError, match="not made by augment --for-forecasting"):
        main(["predictor", "--dataset", str(real_64), "--model", str(browse_model_64), "--out", str(tmp_path / "y"),
              "--flare-list", str(flare_list), "--forecast-augmented", str(real_64), *TINY])


def test_a_patchify_stem_makes_a_256_px_classifier_cost_about_a_64_px_one():
    from solar_diffusion.encoder import FlareClassifier

    torch.manual_seed(0)
    plain = FlareClassifier(id2label={0: "no", 1: "yes"}, sample_size=64, in_channels=3, widths=(4, 8), feature_dim=4)
    stem = FlareClassifier(id2label={0: "no", 1: "yes"}, sample_size=256, in_channels=3, widths=(4, 8), feature_dim=4,
                           stem=4)
    assert stem.stages(torch.zeros(1, 3, 256, 256)).shape == plain.stages(torch.zeros(1, 3, 64, 64)).shape
    assert stem.predict_proba(torch.zeros(2, 3, 256, 256)).shape == (2, 2)
    with pytest.raises(ValueError, match="a stem of 3 px does not tile 256 px images"):
        FlareClassifier(id2label={0: "no", 1: "yes"}, sample_size=256, stem=3)


def test_an_experiment_on_frames_the_model_cannot_make_is_refused(real_64, make_pipeline, tmp_path):
    from solar_diffusion import ClipLogNormalization
    from solar_diffusion.hub import save_pipeline

    model = save_pipeline(make_pipeline(labels=("quiet", "B", "C", "M", "X"), sample_size=16,
                                        normalization=ClipLogNormalization.for_browse()), tmp_path / "model-16")
    with pytest.raises(ValueError, match="holds 64 px frames, but this model makes 16 px images, not 64 px"):
        main(["classifier", "--dataset", str(real_64), "--model", str(model), "--out", str(tmp_path / "x"), *TINY])
    assert not (tmp_path / "x").exists()


def test_the_classifier_experiment_runs_on_the_frames_a_cascade_makes(real_64, make_cascade, tmp_path):
    """A 16 -> 64 px cascade (as the bundled 64 -> 256 px one) on the 64 px frames: its synthetic
    frames are made at the dataset's size, and a patchify stem takes them."""
    from solar_diffusion import ClipLogNormalization
    from solar_diffusion.hub import save_pipeline
    from solar_diffusion.splits import dataset_info, load_split

    model = save_pipeline(make_cascade(16, 64, normalization=ClipLogNormalization.for_browse().to_dict(),
                                       wavelengths=(171,)),
                          tmp_path / "cascade")
    out = tmp_path / "classifier"
    results = main(["classifier", "--dataset", str(real_64), "--model", str(model), "--out", str(out), "--stem", "4",
                    *TINY])
    assert results["settings"]["image_size"] == 64 and results["settings"]["stem"] == 4
    assert results["synthetic_counts"] == {"M": 3, "X": 3}
    assert dataset_info(out / "augmented")["config"]["size"] == 64
    synthetic = load_split(out / "augmented", "train", columns=("image", "label_source"))
    made = [image for image, source in zip(synthetic["image"], synthetic["label_source"]) if source == "synthetic"]
    assert len(made) == 6 and all(np.asarray(image).shape == (1, 64, 64) for image in made)
