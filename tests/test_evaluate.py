"""The encoder's training (accelerate launch), its save/load, and ``solar-diffusion evaluate`` end to end."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from solar_diffusion import evaluation_keys as keys
from solar_diffusion.cli import main as cli
from solar_diffusion.encoder import FlareClassifier, load_encoder
from solar_diffusion.pipelines import ClipLogNormalization


@pytest.fixture(scope="module")
def tiny_encoder(tiny_dataset, tmp_path_factory, accelerate_launch) -> Path:
    """A FlareClassifier trained for two epochs through ``accelerate launch`` on the tiny real dataset."""
    out = tmp_path_factory.mktemp("encoder") / "encoder"
    accelerate_launch("train_classifier.py", "--dataset", tiny_dataset, "--out", out, "--epochs", "2",
                      "--batch-size", "16", "--widths", "8,16", "--feature-dim", "16", timeout=600)
    return out


def test_encoder_trains_saves_and_reloads(tiny_encoder, tiny_dataset):
    record = json.loads((tiny_encoder / "training_metrics.json").read_text())
    assert [row["epoch"] for row in record["history"]] == [1, 2]
    assert all("validation_macro_f1" in row for row in record["history"])  # the validation day has labels
    f1 = [row["validation_macro_f1"] for row in record["history"]]
    assert record["kept_epoch"] == 1 + f1.index(max(f1))  # the first epoch of the best validation F1
    from datasets import load_dataset

    train = load_dataset(str(tiny_dataset), split="train")
    names = train.features["flare_class"].names
    assert record["train_counts"] == dict(Counter(names[i] for i in train["flare_class"]))

    encoder = load_encoder(tiny_encoder)
    assert encoder.normalization.unit == "browse" and encoder.config.sample_size == 16
    assert set(encoder.id2label.values()) == set(record["train_counts"])
    images = torch.rand(5, 1, 16, 16) * 2 - 1
    again = FlareClassifier.from_pretrained(str(tiny_encoder)).eval()
    np.testing.assert_allclose(encoder.embed_images(images), again.embed_images(images))
    assert encoder.embed_images(images).shape == (5, 16)
    assert set(encoder.predict(images)) <= set(encoder.id2label.values())


def test_missing_encoder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved encoder"):
        load_encoder(tmp_path)


@pytest.mark.parametrize("which", ["BUNDLED_MODEL", "PAPER_MODEL"])
def test_each_bundled_model_keeps_an_encoder_of_its_channels_size_and_unit(which):
    from solar_diffusion import defaults
    from solar_diffusion.generate import load_pipeline

    model = getattr(defaults, which)
    try:
        pipe = load_pipeline(defaults.paper_model() if which == "PAPER_MODEL" else model)
    except FileNotFoundError:
        from diffusers import DDPMScheduler, UNet2DModel

        from solar_diffusion import SolarFlarePipeline

        # its weights are restored by `make paper-model`; its configuration is in the tree
        config = SolarFlarePipeline.load_config(model)
        pipe = SolarFlarePipeline(UNet2DModel.from_config(UNet2DModel.load_config(model / "unet")), DDPMScheduler(),
                                  **{k: config[k] for k in ("id2label", "normalization", "geometry")})
    encoder = load_encoder(defaults.model_encoder(model))
    assert defaults.model_encoder(model) == model / defaults.ENCODER_FOLDER
    assert encoder.normalization == pipe.normalization
    assert encoder.config.in_channels == pipe.unet.config.out_channels
    assert encoder.config.sample_size == pipe.unet.config.sample_size
    assert set(pipe.id2label.values()) <= set(encoder.id2label.values())
    if which == "BUNDLED_MODEL":
        assert load_encoder().config == encoder.config  # the default encoder is the bundled model's


def test_evaluate_refuses_a_model_of_another_unit(tiny_model_dir, tiny_encoder, tiny_dataset, tmp_path, capsys):
    """The tiny default pipeline makes DN/s images; the dataset holds browse images."""
    args = ["evaluate", "--model", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--encoder", str(tiny_encoder),
            "--num-images", "2", "--out", str(tmp_path / "wrong")]
    assert cli(args) == 2
    assert "the encoder was trained on 'browse' images, the model makes 'DN/s'" in capsys.readouterr().err
    assert not (tmp_path / "wrong" / "metrics.json").exists()


def test_disk_errors_find_real_disks_where_the_builder_put_them_and_see_a_shift(real_64):
    from solar_diffusion.evaluate import disk_errors
    from solar_diffusion.splits import dataset_info, model_space_split

    info = dataset_info(real_64)
    real = model_space_split(real_64, "train", ClipLogNormalization.for_unit(info["unit"]), 64)
    centre, radius = (31.5, 31.5), 64 / info["config"]["fov_rsun"]
    offsets, ratios = disk_errors(real.images.numpy(), centre, radius)
    # the builder centred every frame on its disk: the fit finds it there (a bright off-limb
    # structure may pull a rare frame's fit by a few pixels)
    assert np.isfinite(offsets).all() and np.median(offsets) < 0.5 and np.percentile(offsets, 90) < 1.0
    assert 0.94 < np.median(ratios) < 1.0  # at 64 px the smoothed limb peak lies about a pixel inside
    shifted, _ = disk_errors(torch.roll(real.images, shifts=3, dims=-1).numpy(), centre, radius)
    assert np.allclose(np.median(shifted), 3.0, atol=0.5)
    blank, _ = disk_errors(-torch.ones(1, 1, 64, 64).numpy(), centre, radius)
    assert np.isnan(blank).all()  # no disk: a failure, not a number


def test_evaluate_end_to_end(browse_model_dir, tiny_encoder, tiny_dataset, tmp_path):
    out, card = tmp_path / "eval", tmp_path / "README.md"
    card.write_text("---\nlicense: mit\n---\n\n# tiny\n\nSome text that must survive.\n")
    args = ["evaluate", "--model", str(browse_model_dir), "--dataset", str(tiny_dataset), "--split", "validation",
            "--encoder", str(tiny_encoder), "--num-images", "4", "--steps", "2", "--steps-curve", "1,2",
            "--curve-per-class", "3", "--n-boot", "10", "--min-real", "3", "--model-card", str(card), "--out", str(out)]
    assert cli(args) == 0
    report = json.loads((out / "metrics.json").read_text())
    real_counts = report["sample_sizes"][keys.REAL_SPLIT]
    per_class = report["feature_spaces"][keys.SOLAR_ENCODER]["per_class"]
    for label in ("quiet", "B", "C", "M", "X"):
        if real_counts.get(label, 0) >= 3:
            row = per_class[label]
            assert row["frechet"]["n"] == [4, real_counts[label]] and row["frechet"]["low"] <= row["frechet"]["high"]
        else:
            assert per_class[label].startswith("too few real validation images")
    pooled = report["feature_spaces"][keys.SOLAR_ENCODER]["pooled"]
    assert 0 <= pooled["precision"]["value"] <= 1 and 0 <= pooled["two_sample_accuracy"]["value"] <= 1
    assert [row["steps"] for row in report["steps_curve"]] == [1, 2]
    assert set(report["peak_brightness"]) == set(report["brightest_pixel"]) == {"quiet", "B", "C", "M", "X"}
    exposure = report["exposure_outliers"]
    assert exposure["range"][0] < exposure["range"][1] and exposure["classes"]["quiet"]["generated"]["n"] == [4]
    difference = report["peak_brightness"]["X"][keys.minus_lowest(keys.GENERATED)]
    assert difference["n"] == [4, 4] and difference["low"] <= difference["high"]
    disk = report["disk_geometry"]
    assert set(disk[keys.GENERATED]) == {"quiet", "B", "C", "M", "X"} and set(disk[keys.REAL_SPLIT]) == {"all"}
    assert disk[keys.GENERATED]["quiet"]["found"]["n"] == [4]
    for name in ("real_vs_generated.png", "per_class_metrics.png", "steps_curve.png", "contact_sheet.png"):
        assert Image.open(out / name).format == "PNG", name
    text = (out / "report.md").read_text()
    assert "too few real validation images" in text and "| quiet (generated) |" in text  # keys made words
    assert not [key for key in _keys(report) if " " in key]  # identifiers, not sentences

    from huggingface_hub import ModelCard

    written = ModelCard.load(card)
    assert "Some text that must survive." in written.text and written.text.count("## Evaluation") == 1
    assert any(r.metric_type == "frechet" for r in written.data.eval_results)
    assert cli(args) == 0  # a second run replaces the section instead of adding one
    assert ModelCard.load(card).text.count("## Evaluation") == 1


def _keys(node):
    """Every key of a JSON tree."""
    if isinstance(node, dict):
        for key, child in node.items():
            yield key
            yield from _keys(child)
    elif isinstance(node, list):
        for child in node:
            yield from _keys(child)


def test_the_release_checks_tell_an_ordering_from_a_separation():
    """``check_done`` on a hand-made flare report: quiet < C < M by a hair is ordered, but a paired
    step whose interval holds 0 is not separated; X 0.03 below M fails; copies fail below 0.9."""
    from solar_diffusion.flare_evaluation import check_done

    def row(value, low=None, high=None):
        return {"value": value, "n": [8]} | ({} if low is None else {"low": low, "high": high})

    means = {"quiet": 0.40, "C": 0.9211, "M": 0.9212, "X": 0.8912}
    steps = {keys.paired_step("quiet", "C"): row(0.52, 0.48, 0.56),
             keys.paired_step("C", "M"): row(0.0001, -0.02, 0.02),
             keys.paired_step("M", "X"): row(-0.03, -0.05, -0.01)}
    flare = {"signature": {"classes": {c: {keys.GENERATED: {"131": row(v)}} for c, v in means.items()},
                           keys.PAIRED_STEPS: {k: {"131": v} for k, v in steps.items()}},
             "memorisation": {"classes": {c: {keys.OVER_GENERATED_QUIET: row(q), keys.OVER_REAL_HELD_OUT: row(0.85)}
                                          for c, q in (("M", 0.93), ("X", 0.89))}}}
    flare["signature"]["classes"]["M"][keys.REAL_AT_HEK_POSITIONS] = {"131": row(0.93, 0.906, 0.952)}
    checks = check_done(flare, channels=("131",))
    assert checks["131"] == {"m_within_real": True, "x_at_least_m": False, "ordered": True, "separated": False}
    assert checks["no_copies"] is False  # X 0.89 of quiet's distance
    flare["signature"][keys.PAIRED_STEPS][keys.paired_step("C", "M")] = {"131": row(0.05, 0.03, 0.07)}
    assert check_done(flare, channels=("131",))["131"]["separated"] is True


def test_a_failed_evaluation_leaves_no_folder_it_made_and_an_earlier_report_as_it_was(browse_model_dir, tiny_encoder,
                                                                                     tiny_dataset, tmp_path, capsys):
    """A run that fails after generating (with --min-real 1 the validation day's one C frame is
    scored, and a Fréchet distance needs two real rows) leaves no folder it made, and an earlier
    report in its --out byte for byte; a bad --split or a folder of other files fails before any
    work; a run that succeeds replaces an earlier report whole."""
    base = ["evaluate", "--model", str(browse_model_dir), "--dataset", str(tiny_dataset), "--split", "validation",
            "--encoder", str(tiny_encoder), "--num-images", "4", "--steps", "1", "--steps-curve", "", "--n-boot", "10"]
    runs = tmp_path / "runs"
    assert cli(base + ["--min-real", "1", "--out", str(runs / "new" / "eval")]) == 2
    assert "needs at least 2 rows in each set, got 4 and 1" in capsys.readouterr().err  # late: after generating
    assert not (runs / "new").exists()

    good = runs / "good"
    assert cli(base + ["--min-real", "3", "--out", str(good)]) == 0
    report = {p.name: p.read_bytes() for p in good.iterdir()}
    assert {"metrics.json", "report.md", "real_vs_generated.png"} <= set(report)
    assert cli(base + ["--min-real", "1", "--out", str(good)]) == 2
    assert {p.name: p.read_bytes() for p in good.iterdir()} == report
    assert [p.name for p in runs.iterdir()] == ["good"]  # no temporary folder left beside it

    assert cli(base + ["--split", "nosuch", "--out", str(runs / "x" / "eval")]) == 2
    assert not (runs / "x").exists()
    mine = runs / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert cli(base + ["--min-real", "3", "--out", str(mine)]) == 2
    assert "holds more than an evaluation (notes.txt)" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

    (good / "contact_sheet_0094.png").write_bytes(report["contact_sheet.png"])  # as from a 3-channel model
    assert cli(base + ["--min-real", "3", "--seed", "1", "--out", str(good)]) == 0
    assert set(p.name for p in good.iterdir()) == set(report)  # replaced whole: nothing of the earlier run left
    assert json.loads((good / "metrics.json").read_text())["settings"]["out"] == str(good)


def test_encoder_with_a_degradation_head_learns_to_tell_blur_and_noise(tiny_dataset, tmp_path):
    """``--degradations``: the second head is saved and reloaded with the encoder, and after a few
    epochs on the 48 real 16 px frames it names the degradation (none, blur, noise) of newly degraded
    frames well above chance (1/3: 25 or more of 48 right by chance has p < 0.01; three training
    seeds gave 0.60 to 0.77)."""
    from solar_diffusion.training.train_classifier import degradation_accuracy, main as train_classifier
    from solar_diffusion.splits import model_space_split
    from solar_diffusion.training.data import DEGRADATIONS

    out = train_classifier(["--dataset", str(tiny_dataset), "--out", str(tmp_path / "enc"), "--epochs", "60",
                            "--batch-size", "16", "--widths", "8,16", "--feature-dim", "16", "--degradations",
                            "--augment-rotation", "0", "--learning-rate", "3e-3"])
    record = json.loads((out / "training_metrics.json").read_text())
    assert all("validation_degradation_accuracy" in row for row in record["history"])
    encoder = load_encoder(out)
    assert tuple(encoder.config.degradations) == DEGRADATIONS and encoder.degradation_head is not None
    frames = torch.cat([model_space_split(tiny_dataset, split, encoder.normalization, 16).images
                        for split in ("train", "validation")])
    assert len(frames) == 48 and degradation_accuracy(encoder, frames, seed=1) > 0.5
    with pytest.raises(ValueError, match="no degradation head"):
        FlareClassifier(id2label={0: "quiet"}, sample_size=16, widths=(4,), feature_dim=4)(
            torch.zeros(1, 1, 16, 16), with_degradation=True)
