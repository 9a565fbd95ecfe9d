"""Forecast labels (issue 36): frames labelled by the flares that peak in the next hours, their
positions rotated to the frame's time, frames with a flare in progress left out; a model trained on
them says so in its config and in each image's metadata."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from solar_diffusion import GOES_R_SCALE, SWPC_SCALE, SolarFlarePipeline, convert_flux_scale, parse_flare_class
from solar_diffusion.dataset_builder.flares import read_hek_csv
from solar_diffusion.dataset_builder.labels import flare_positions, flares_in_progress, rotate_to
from solar_diffusion.splits import dataset_info, load_split
from solar_diffusion.times import utc_times
from solar_diffusion.training.experiments import flare_ahead


@pytest.fixture(scope="module")
def forecast_days(shared_data, real_dataset_of_days, tmp_path_factory):
    """32 px, three channels, forecast labels (24 h) of the two days before the X5.4 of 2012-03-07,
    that day, and a validation day."""
    return real_dataset_of_days(shared_data, tmp_path_factory.mktemp("forecast") / "ds",
                                ["03-05", "03-06", "03-07", "08-10"], 32, channels=("171", "131", "94"), forecast_hours=24)


@pytest.fixture(scope="module")
def events(shared_data):
    return read_hek_csv(shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv")


def test_forecast_labels_are_the_predictors_and_leave_out_flaring_frames(forecast_days, events):
    info = dataset_info(forecast_days)
    assert info["config"]["forecast_hours"] == 24 and info["label_rule"].startswith("With forecast labels")
    assert "Here H = 24 h." in info["label_rule"] and "Here H = 24 h." in (forecast_days / "README.md").read_text()
    left_out = [r for r in info["rejected"] if "a flare in progress" in r["reason"]]
    assert left_out  # the frames during the X5.4 and the other flares of 03-07
    for split in ("train", "validation"):
        rows = load_split(forecast_days, split, columns=("t_obs", "flare_class", "flares"))
        names = rows.features["flare_class"].names
        t_obs = pd.DatetimeIndex(utc_times(rows["t_obs"]))
        assert flares_in_progress(t_obs, events).empty
        labels = np.array([names[i] for i in rows["flare_class"]])
        for letter in ("C", "M", "X"):  # a frame is >= letter exactly where the predictor's label is yes
            flux = convert_flux_scale(parse_flare_class(letter), SWPC_SCALE, GOES_R_SCALE)
            at_least = np.isin(labels, ["C", "M", "X"][["C", "M", "X"].index(letter):])
            assert (at_least == (flare_ahead(t_obs, events, flux, 24) >= 0)).all()
    rows = load_split(forecast_days, "train", columns=("t_obs", "flare_class", "flares"))
    t_obs = pd.DatetimeIndex(utc_times(rows["t_obs"]))
    before_x = (t_obs >= pd.Timestamp("2012-03-06 01:00")) & (t_obs < pd.Timestamp("2012-03-07 00:00"))
    assert before_x.sum() >= 5 and all(rows.features["flare_class"].names[rows["flare_class"][k]] == "X"
                                        for k in np.flatnonzero(before_x))


def test_a_flare_ahead_is_drawn_where_its_region_is_at_the_frames_time(forecast_days, events):
    """The X5.4's region sits east of its peak position the hours before, by the Sun's rotation."""
    rows = load_split(forecast_days, "train", columns=("t_obs", "flares"))
    x5 = events[(events["goes_class"] == "X5.4") & (events["peak"].dt.year == 2012)].iloc[0]
    peak_px = flare_positions([x5["hpc_x"]], [x5["hpc_y"]], [x5["peak"]], 32, 2.3)["x_px"][0]
    seen = 0
    for t, flares in zip(pd.DatetimeIndex(utc_times(rows["t_obs"])), rows["flares"]):
        if "X5.4" not in flares["goes_class"]:
            continue
        k = list(flares["goes_class"]).index("X5.4")
        hours = (x5["peak"] - t) / pd.Timedelta("1h")
        assert 0 < hours <= 24 and flares["on_disk"][k]
        x, _ = rotate_to([x5["hpc_x"]], [x5["hpc_y"]], [x5["peak"]], [t])
        assert flares["hpc_x"][k] == pytest.approx(x[0], abs=0.05)
        shift = peak_px - flares["x_px"][k]  # pixels east of the peak position
        assert 0.02 * hours < shift < 0.12 * hours  # about 13 deg a day at latitude 18 N, 14 px radius
        seen += 1
    assert seen >= 5


@pytest.fixture(scope="module")
def forecast_model(forecast_days, tmp_path_factory) -> Path:
    """A tiny flare model trained for 2 steps on the forecast labels."""
    from solar_diffusion.cli import main

    out = tmp_path_factory.mktemp("forecast-run") / "run"
    assert main(["train", "--dataset", forecast_days, "--out", out, "--preset", "tiny", "--conditioning", "flare",
                 "--train-batch-size", "4", "--max-train-steps", "2", "--lr-warmup-steps", "0", "--checkpointing-steps",
                 "2", "--validation-steps", "2", "--sample-steps", "0", "--logger", "none"]) == 0
    return out / "pipeline"


def test_a_forecast_model_records_its_horizon(forecast_days, forecast_model):
    pipe = SolarFlarePipeline.from_pretrained(forecast_model)
    assert pipe.config.forecast["horizon_hours"] == 24
    assert pipe.config.forecast["label_rule"] == dataset_info(forecast_days)["label_rule"]
    pipe.set_progress_bar_config(disable=True)
    result = pipe("M3", flare_position=(-475.0, 397.0), num_inference_steps=2, output_type="model",
                  generator=[torch.Generator().manual_seed(0)])
    assert torch.isfinite(result.images).all() and result.metadata[0]["forecast"]["horizon_hours"] == 24
    assert json.loads((forecast_model / "model_index.json").read_text())["forecast"]["horizon_hours"] == 24


def test_augment_for_forecasting_adds_pre_flare_suns_and_refuses_mixed_models_and_data(forecast_days, forecast_model,
                                                                                        flare_days, tmp_path):
    from solar_diffusion.augment import augment, is_synthetic

    out = tmp_path / "augmented"
    info = augment(forecast_days, out, forecast_model, ratio=1.0, flare_classes=["M"], max_per_class=2,
                   num_inference_steps=2, for_forecasting=True, log=lambda *a: None)
    assert info["augmented"]["forecast"]["horizon_hours"] == 24 and info["augmented"]["added"] == {"M": 2}
    rows = load_split(out, "train", columns=("label_source", "flare_class", "flare_log10_peak_flux_goes_r"))
    added = is_synthetic(rows["label_source"])
    assert added.sum() == 2 and {rows.features["flare_class"].names[rows["flare_class"][k]]
                                 for k in np.flatnonzero(added)} == {"M"}
    assert "the Sun in the 24 h before a flare of its class" in (out / "README.md").read_text()
    with pytest.raises(ValueError, match="is a forecast model .*: add --for-forecasting"):
        augment(forecast_days, tmp_path / "a", forecast_model, ratio=1.0, flare_classes=["M"], max_per_class=1)
    with pytest.raises(ValueError, match="has labels of flares in progress, the model forecasts 24 h: build the "
                                         "dataset with --forecast-hours 24"):
        augment(flare_days, tmp_path / "b", forecast_model, ratio=1.0, flare_classes=["M"], max_per_class=1,
                for_forecasting=True)
    in_progress = SolarFlarePipeline.from_pretrained(forecast_model)
    in_progress.register_to_config(forecast={})
    in_progress.save_pretrained(tmp_path / "in-progress")
    with pytest.raises(ValueError, match="is not a forecast model"):
        augment(forecast_days, tmp_path / "c", tmp_path / "in-progress", ratio=1.0, flare_classes=["M"],
                max_per_class=1, for_forecasting=True)
    with pytest.raises(ValueError, match="has forecast labels .*: add --for-forecasting"):
        augment(forecast_days, tmp_path / "d", tmp_path / "in-progress", ratio=1.0, flare_classes=["M"],
                max_per_class=1)
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_forecast_hours_must_be_positive(tmp_path):
    from solar_diffusion.dataset_builder.build import BuildConfig

    with pytest.raises(ValueError, match="--forecast-hours must be a positive number of hours, got -3"):
        BuildConfig(out=str(tmp_path / "x"), forecast_hours=-3)


def test_a_forecast_model_takes_a_cascades_upscaler_and_draws_no_flare_in_its_maps(forecast_days, forecast_model,
                                                                                     tmp_path, capsys):
    from diffusers import DPMSolverMultistepScheduler, UNet2DModel

    from solar_diffusion.cli import main
    from solar_diffusion.hub import save_pipeline
    from solar_diffusion.presets import build_unet

    torch.manual_seed(0)
    upscaler = UNet2DModel(sample_size=64, in_channels=8, out_channels=3, block_out_channels=(8, 16),
                           down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, layers_per_block=1,
                           norm_num_groups=4, class_embed_type="timestep")
    base = SolarFlarePipeline.from_pretrained(forecast_model)
    cascade = SolarFlarePipeline(build_unet("tiny", 32, num_labels=0, in_channels=3, conditioning="flare"),
                                 base.scheduler, geometry=base.config.geometry, normalization=base.config.normalization,
                                 upscaler=upscaler, upscaler_scheduler=DPMSolverMultistepScheduler(),
                                 upscaling={"residual_std": 0.07, "noise_level": 0.05, "num_inference_steps": 2})
    save_pipeline(cascade, tmp_path / "cascade")
    train = ["train", "--dataset", str(forecast_days), "--preset", "tiny", "--conditioning", "flare",
             "--train-batch-size", "4", "--max-train-steps", "1", "--lr-warmup-steps", "0", "--checkpointing-steps", "1",
             "--validation-steps", "0", "--sample-steps", "0", "--logger", "none"]
    assert main(train + ["--out", str(tmp_path / "run"), "--upscaler-from", str(tmp_path / "cascade")]) == 0
    pipe = SolarFlarePipeline.from_pretrained(tmp_path / "run" / "pipeline")
    assert pipe.output_size() == 64 and pipe.config.forecast["horizon_hours"] == 24
    pipe.set_progress_bar_config(disable=True)
    seen = []
    hook = pipe.upscaler.register_forward_pre_hook(lambda m, args, kwargs: seen.append(args[0].clone()), with_kwargs=True)
    try:
        result = pipe("M3", flare_position=(-475.0, 397.0), num_inference_steps=2, output_type="model",
                      generator=[torch.Generator().manual_seed(0)])
    finally:
        hook.remove()
    assert result.images.shape == (1, 3, 64, 64) and torch.isfinite(result.images).all()
    assert seen[0][0, 6].abs().max() == 0 and seen[0][0, 7].min() == 1  # no flare in progress at 64 px
    capsys.readouterr()
    assert main(train + ["--out", str(tmp_path / "bad"), "--upscaler-from", str(forecast_model)]) == 2
    assert "it has no upscaler (it makes only 32 px images)" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "pipeline").exists()
