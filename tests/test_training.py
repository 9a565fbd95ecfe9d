"""train_ddpm.py launched through accelerate on CPU, on a tiny real dataset made by the builder."""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from solar_diffusion import SolarFlarePipeline

TINY_RUN = ["--preset", "tiny", "--train-batch-size", "4", "--max-train-steps", "6", "--checkpointing-steps", "2",
            "--checkpoints-total-limit", "2", "--use-ema", "--logger", "none", "--sample-steps", "3",
            "--validation-steps", "3", "--lr-warmup-steps", "1"]


@pytest.fixture
def launch(accelerate_launch):
    """``train_ddpm.py`` on the tiny settings (6 steps, checkpoints every 2, EMA); later flags win."""
    def launch(dataset, out, *extra):
        return accelerate_launch("train_ddpm.py", "--dataset", dataset, "--out", out, *TINY_RUN, *extra,
                                 timeout=600)
    return launch


def losses(out):
    return [json.loads(line) for line in (Path(out) / "losses.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("balance", ["0.7", pytest.param("0", marks=pytest.mark.slow)])
def test_train_stop_resume_equals_uninterrupted(tiny_dataset, tmp_path, balance, launch):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    launch(tiny_dataset, whole, "--class-balance", balance)
    assert sorted(p.name for p in whole.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    # a sample grid every 3 steps (--sample-steps 3)
    assert sorted(p.name for p in (whole / "samples").glob("*.png")) == ["step-0000003.png", "step-0000006.png"]

    # the interrupted run in this process (the same training code as the launched run, without a
    # second launcher start-up each time: this test stays within the suite's 30 s)
    from solar_diffusion.cli import main

    parts_args = ["train", "--dataset", tiny_dataset, "--out", parts, *TINY_RUN, "--class-balance", balance]
    assert main([*parts_args, "--stop-at-step", "3"]) == 0
    assert sorted(p.name for p in parts.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert main([*parts_args, "--resume-from-checkpoint", "latest"]) == 0

    assert [r["step"] for r in losses(parts)] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([r["loss"] for r in losses(parts)], [r["loss"] for r in losses(whole)], rtol=1e-5)
    a = load_file(whole / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(parts / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-5, atol=1e-7, err_msg=key)

    pipe = SolarFlarePipeline.from_pretrained(whole / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.normalization.unit == "browse"
    assert set(pipe.id2label.values()) <= {"quiet", "A", "B", "C", "M", "X"}
    assert pipe.config.geometry["image_size"] == 16
    out = pipe(list(pipe.id2label.values()), num_inference_steps=3, output_type="data_unit")
    assert out.images.shape == (len(pipe.id2label), 1, 16, 16) and np.isfinite(out.images).all()
    # the saved model card describes this run
    from huggingface_hub import ModelCard

    card = ModelCard.load(whole / "pipeline" / "README.md")
    assert card.data.library_name == "diffusers"
    assert f"{', '.join(pipe.id2label.values())} (lowest first" in card.text
    for fact in ("preset `tiny`", "16 px", "6 optimiser steps", "batch 4", "EMA: True", "(browse)"):
        assert fact in card.text, fact

    # --init-from: a saved pipeline's UNet warm-starts a new run with the same labels only
    from solar_diffusion import build_unet
    from solar_diffusion.training.train_ddpm import init_from_pipeline

    fresh = build_unet("tiny", 16, len(pipe.id2label))
    warm = init_from_pipeline(fresh, whole / "pipeline", pipe.id2label)
    assert all(np.array_equal(v.numpy(), a[k].numpy()) for k, v in warm.state_dict().items())
    with pytest.raises(ValueError, match="trained on labels"):
        init_from_pipeline(build_unet("tiny", 16, 1), whole / "pipeline", {0: "quiet"})


def test_flux_conditioning_trains_and_generates(tiny_dataset, tmp_path, launch):
    launch(tiny_dataset, tmp_path / "flux", "--conditioning", "flux", "--max-train-steps", "2",
           "--sample-steps", "2", "--validation-steps", "0")
    pipe = SolarFlarePipeline.from_pretrained(tmp_path / "flux" / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.conditioning == "flux" and pipe.id2label == {}
    out = pipe(["C3.0", "X"], num_inference_steps=2, output_type="data_unit")
    assert [m["flare_class"] for m in out.metadata] == ["C3.0", "X3.2"] and np.isfinite(out.images).all()


def test_several_channels_and_push_through_an_injected_hub(shared_data, real_dataset_of_days, tmp_path, folder_hub):
    """A 3-channel (171, 131, 94) dataset trains in-process and the result is pushed and reloaded."""
    from solar_diffusion.training.train_ddpm import build_parser, train

    data = real_dataset_of_days(shared_data, tmp_path / "rgb", ["03-07"], 16, channels=("171", "131", "94"))
    args = build_parser().parse_args([
        "--dataset", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny", "--train-batch-size", "4",
        "--max-train-steps", "2", "--logger", "none", "--sample-steps", "0", "--validation-steps", "0",
        "--push-to-hub", "--hub-model-id", "solar/rgb-tiny"])
    train(args, hub_api=folder_hub)
    pipe = SolarFlarePipeline.from_pretrained(folder_hub.repo_path("solar/rgb-tiny"))
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.config.in_channels == 3
    assert pipe.config.geometry["wavelengths_angstrom"] == [171.0, 131.0, 94.0]
    from solar_diffusion.pipelines import STANDALONE_PIPELINE_FILE

    repo = folder_hub.repo_path("solar/rgb-tiny")
    assert (repo / "pipeline.py").read_text() == STANDALONE_PIPELINE_FILE.read_text()
    # the pushed card is the run's own, and names the three channels
    card = (repo / "README.md").read_text()
    assert card == (tmp_path / "run" / "pipeline" / "README.md").read_text() and "AIA 171,131,94 Å" in card
    out = pipe(list(pipe.id2label.values())[:1], num_inference_steps=2, output_type="data_unit")
    assert out.images.shape == (1, 3, 16, 16)


def test_bad_arguments_and_a_used_output_folder_are_refused_before_any_work(tiny_dataset, tmp_path, capsys):
    from solar_diffusion.cli import main as cli

    used = tmp_path / "used"
    (used / "checkpoint-4").mkdir(parents=True)
    base = ["train", "--dataset", str(tiny_dataset), "--logger", "none"]
    assert cli(base + ["--out", str(used)]) == 2
    assert "holds an earlier run (checkpoint-4): pass --resume-from-checkpoint latest" in capsys.readouterr().err
    assert sorted(p.name for p in used.iterdir()) == ["checkpoint-4"]  # nothing written, nothing removed
    for flag, value, message in (("--train-batch-size", "0", "--train-batch-size must be >= 1, got 0"),
                                 ("--learning-rate", "nan", "--learning-rate must be a positive number, got nan"),
                                 ("--label-dropout", "1.5", "--label-dropout must be in [0, 1), got 1.5"),
                                 ("--size", "-8", "--size must be at least 8 pixels, got -8"),
                                 ("--augment-hemispheres", "1.5",
                                  "--augment-hemispheres is a probability in [0, 1], got 1.5"),
                                 ("--augment-hemispheres", "0.5", "--augment-hemispheres needs --conditioning flare"),
                                 ("--augment-solar-rotation", "-0.5",
                                  "--augment-solar-rotation is a probability in [0, 1], got -0.5"),
                                 ("--augment-solar-rotation", "1", "--augment-solar-rotation needs --conditioning flare")):
        assert cli(base + ["--out", str(tmp_path / "new"), flag, value]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "new").exists()
    assert cli(base + ["--out", str(tmp_path / "big"), "--train-batch-size", "100000"]) == 2
    assert "fewer than one batch (100000 x 1 processes): lower --train-batch-size" in capsys.readouterr().err


def test_a_corrupt_checkpoint_is_named_on_resume(tiny_dataset, tmp_path, capsys):
    from solar_diffusion.cli import main

    out = tmp_path / "run"
    tiny = ["--preset", "tiny", "--train-batch-size", "4", "--max-train-steps", "4", "--checkpointing-steps", "2",
            "--logger", "none", "--sample-steps", "0", "--validation-steps", "0"]
    assert main(["train", "--dataset", tiny_dataset, "--out", out, *tiny, "--stop-at-step", "2"]) == 0
    capsys.readouterr()
    assert main(["train", "--dataset", tiny_dataset, "--out", out, *tiny, "--resume-from-checkpoint", "latest",
                 "--label-dropout", "0.2"]) == 2  # another run's settings: refused before the checkpoint is read
    assert "was made with --label-dropout 0.1, not 0.2" in capsys.readouterr().err
    saved = (out / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert main(["train", "--dataset", tiny_dataset, "--out", out, *tiny, "--resume-from-checkpoint", "latest",
                 "--stop-at-step", "2"]) == 0  # resumed at its stop: no step more, the same model saved again
    assert "trained 0 steps" in capsys.readouterr().out and sorted(p.name for p in out.glob("checkpoint-*")) == \
        ["checkpoint-2"] and (out / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == saved
    weights = next((out / "checkpoint-2").rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # a file cut short, as by a full disk
    capsys.readouterr()
    assert main(["train", "--dataset", tiny_dataset, "--out", out, *tiny, "--resume-from-checkpoint", "latest"]) == 1
    err = capsys.readouterr().err
    assert "checkpoint-2: the checkpoint cannot be read" in err and "Traceback" not in err
