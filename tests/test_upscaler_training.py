"""train_upscaler.py: the low-resolution frames it learns from, an exact resume, the saved cascade."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from solar_diffusion import ClipLogNormalization, SolarFlarePipeline

CHANNELS = ("171", "131", "94")
TINY_RUN = ["--crop-px", "16", "--train-batch-size", "4", "--max-train-steps", "6", "--checkpointing-steps", "2",
            "--use-ema", "--logger", "none", "--lr-warmup-steps", "1", "--map-dropout", "0.5"]


@pytest.fixture(scope="module")
def builds(shared_data, real_dataset_of_days, tmp_path_factory) -> dict:
    """The real three-channel frames of 2012-03-07 built at 16, 32 and 64 px (flares within 30 min)."""
    root = tmp_path_factory.mktemp("upscaler")
    return {size: real_dataset_of_days(shared_data, root / f"ds{size}", ["03-07"], size, channels=CHANNELS,
                                       window_minutes=30) for size in (16, 32, 64)}


@pytest.fixture(scope="module")
def base_16(builds, tmp_path_factory) -> Path:
    """A tiny random flare model of the 16 px build's unit, channels and geometry, saved."""
    from diffusers import DDPMScheduler

    from solar_diffusion import build_unet
    from solar_diffusion.hub import save_pipeline
    from solar_diffusion.splits import dataset_geometry

    torch.manual_seed(0)
    unet = build_unet("tiny", 16, 0, in_channels=3, conditioning="flare").eval()
    pipe = SolarFlarePipeline(unet, DDPMScheduler(prediction_type="v_prediction"),
                              normalization=ClipLogNormalization.for_browse().to_dict(),
                              geometry=dataset_geometry(builds[16], 16), flare_positions=[[-300.0, 250.0]])
    return save_pipeline(pipe, tmp_path_factory.mktemp("base") / "base-16")


def test_downsample_makes_the_frames_the_builder_makes_at_that_size(builds):
    """The 64 px frames taken to 32 and 16 px are the builder's own 32 and 16 px frames of the same
    images to within rounding (measured on 2012-03-07: 16 px rms 0.53, max 4; 32 px rms 1.54, max
    12, of 0..255; the builder's blur-and-sample applied to the 64 px frames instead: 6.8 and 11.1 rms)."""
    from solar_diffusion.splits import downsample, load_split

    frames = {s: load_split(b, "train", columns=("image", "t_obs")) for s, b in builds.items()}
    assert len({tuple(f["t_obs"]) for f in frames.values()}) == 1  # the same images, in the same order
    high = torch.from_numpy(np.asarray(frames[64]["image"], dtype=np.uint8))  # as stored
    for size, rms, largest in ((16, 1.0, 8), (32, 2.0, 16)):
        ours = downsample(high, size)
        assert ours.dtype == torch.uint8 and ours.shape == (len(high), 3, size, size)
        difference = ours.numpy().astype(float) - np.asarray(frames[size]["image"], dtype=float)
        assert np.sqrt((difference ** 2).mean()) < rms and np.abs(difference).max() <= largest, size
        assert abs(difference.mean()) < 0.1, size
    dn = torch.arange(16.0).reshape(1, 1, 4, 4)  # DN/s frames: the mean of each footprint, unrounded
    assert downsample(dn, 2).tolist() == [[[[2.5, 4.5], [10.5, 12.5]]]]
    with pytest.raises(ValueError, match="whole multiple of 24 px"):
        downsample(high, 24)


def run(builds, base, out, *extra) -> int:
    from solar_diffusion.cli import main

    return main(["train-upscaler", "--base", base, "--dataset", builds[64], "--out", out, *TINY_RUN, *extra])


def test_a_stopped_run_resumes_exactly_and_saves_the_cascade(builds, base_16, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run(builds, base_16, whole) == 0
    assert run(builds, base_16, parts, "--stop-at-step", "3") == 0
    assert sorted(p.name for p in parts.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert run(builds, base_16, parts, "--resume-from-checkpoint", "latest") == 0

    def losses(out):
        return [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]

    assert [r["step"] for r in losses(parts)] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([r["loss"] for r in losses(parts)], [r["loss"] for r in losses(whole)], rtol=1e-5)
    a = load_file(whole / "pipeline" / "upscaler" / "diffusion_pytorch_model.safetensors")
    b = load_file(parts / "pipeline" / "upscaler" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-5, atol=1e-7, err_msg=key)

    summary = json.loads((whole / "upscaler_summary.json").read_text())
    assert (summary["steps"], summary["low_size"], summary["high_size"]) == (6, 16, 64)
    pipe = SolarFlarePipeline.from_pretrained(whole / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.config.upscaling == {"residual_std": summary["residual_std"], "noise_level": 0.0,
                                     "num_inference_steps": 10, "crop_px": 16}
    assert 0.01 < summary["residual_std"] < 0.5
    assert (pipe.upscaler.config.in_channels, pipe.upscaler.config.out_channels) == (8, 3)
    assert type(pipe.upscaler_scheduler).__name__ == "DPMSolverMultistepScheduler"
    base = SolarFlarePipeline.from_pretrained(base_16)
    assert all(torch.equal(v, base.unet.state_dict()[k]) for k, v in pipe.unet.state_dict().items())
    out = pipe("M5", flare_position=(-300.0, 250.0), num_inference_steps=2, output_type="model",
               generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 3, 64, 64) and torch.isfinite(torch.as_tensor(out.images)).all()


def test_a_base_that_does_not_fit_the_dataset_is_refused_before_any_work(builds, base_16, tmp_path, capsys,
                                                                          make_pipeline):
    from solar_diffusion.hub import save_pipeline

    assert run(builds, save_pipeline(make_pipeline(), tmp_path / "dn"), tmp_path / "a") == 2  # DN/s, 171 Å
    assert "makes 'DN/s' images, --dataset" in capsys.readouterr().err
    one_channel = save_pipeline(make_pipeline(normalization=ClipLogNormalization.for_browse()), tmp_path / "171")
    assert run(builds, one_channel, tmp_path / "b") == 2
    assert "makes channels [171.0], --dataset" in capsys.readouterr().err
    assert run(builds, base_16, tmp_path / "c", "--crop-px", "128") == 2
    assert "--crop-px 128 is larger than the 64 px frames" in capsys.readouterr().err
    assert run(builds, base_16, tmp_path / "d", "--sampling-noise-level", "0.5") == 2
    assert "--sampling-noise-level must be in [0, --max-noise-level 0.2]" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_two_processes_train_the_same_weights(builds, base_16, tmp_path, accelerate_launch):
    out = tmp_path / "two"
    accelerate_launch("train_upscaler.py", "--base", base_16, "--dataset", builds[64], "--out", out, *TINY_RUN,
                      "--train-batch-size", "2", "--max-train-steps", "4", processes=2, timeout=300)
    summary = json.loads((out / "upscaler_summary.json").read_text())
    assert (summary["processes"], summary["ranks_hold_identical_weights"], summary["steps"]) == (2, True, 4)
    assert (out / "pipeline" / "upscaler" / "diffusion_pytorch_model.safetensors").exists()


def test_the_regression_control_trains_saves_and_upscales_in_one_pass(builds, base_16, tmp_path, capsys):
    """``--objective regression``: the same UNet predicts the residual from the conditioning alone
    (L1); the cascade is saved to run it in one pass, so without noise augmentation two seeds give
    the same image, which is not the bilinear upsampling; a resume with the other objective is refused."""
    from solar_diffusion.pipelines import upsample

    out = tmp_path / "l1"
    assert run(builds, base_16, out, "--objective", "regression", "--stop-at-step", "4") == 0
    pipe = SolarFlarePipeline.from_pretrained(out / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.config.upscaling["objective"] == "regression" and pipe.config.upscaling["num_inference_steps"] == 1
    low = torch.rand(2, 3, 16, 16) * 2 - 1
    a, b = (pipe.super_resolve(low, noise_level=0.0, generator=torch.Generator().manual_seed(s)) for s in (0, 1))
    assert a.shape == (2, 3, 64, 64) and torch.equal(a, b)
    assert (a - upsample(low, 64).clamp(-1, 1)).abs().max() > 1e-3
    assert "predicts in one pass" in (out / "pipeline" / "README.md").read_text()
    assert run(builds, base_16, out, "--resume-from-checkpoint", "latest") == 2
    assert "objective" in capsys.readouterr().err


def test_a_run_starts_from_a_saved_cascades_upscaler(builds, base_16, tmp_path, capsys):
    """``--init-from``: the run starts from the saved upscaler (same seed and batch, another first
    loss than a fresh run's); an upscaler of another shape is refused before any work."""
    first = tmp_path / "first"
    assert run(builds, base_16, first, "--stop-at-step", "2") == 0
    fresh, warm = tmp_path / "fresh", tmp_path / "warm"
    assert run(builds, base_16, fresh, "--stop-at-step", "1") == 0
    assert run(builds, base_16, warm, "--stop-at-step", "1", "--init-from", str(first / "pipeline")) == 0

    def first_loss(out):
        return json.loads((out / "losses.jsonl").read_text().splitlines()[0])["loss"]

    assert first_loss(warm) != first_loss(fresh)
    assert run(builds, base_16, tmp_path / "bad", "--init-from", str(first / "pipeline"), "--preset", "tiny") == 2
    assert "its upscaler differs in block_out_channels" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
