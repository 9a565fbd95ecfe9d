"""Guidance distillation (``training/distill.py``) on real frames: the student learns the teacher's
guided output in one call, resumes exactly, and samples with one UNet call per step."""

import json

import pytest
import torch
from diffusers import DDPMScheduler

from solar_diffusion import SolarFlarePipeline, build_unet
from solar_diffusion.hub import save_pipeline
from solar_diffusion.pipelines import ClipLogNormalization
from solar_diffusion.splits import TRAINING_COLUMNS, dataset_geometry, load_split
from solar_diffusion.training.data import Collate
from solar_diffusion.training.distill import distillation_loss, main as distill_main


@pytest.fixture(scope="module")
def teacher(flare_days, tmp_path_factory):
    """A tiny flare model (random, seeded) of flare_days' frames: 32 px, 171/131/94 Å, browse unit."""
    torch.manual_seed(0)
    unet = build_unet("tiny", sample_size=32, num_labels=0, in_channels=3, conditioning="flare").eval()
    pipe = SolarFlarePipeline(unet, DDPMScheduler(), normalization=ClipLogNormalization.for_unit("browse").to_dict(),
                              geometry=dataset_geometry(flare_days, 32), flare_positions=[[-475.0, 397.0]])
    return save_pipeline(pipe, tmp_path_factory.mktemp("teacher") / "teacher")


def distill(teacher, dataset, out, *extra):
    args = ["--teacher", teacher, "--dataset", dataset, "--out", out, "--train-batch-size", "4",
            "--learning-rate", "1e-3", "--lr-warmup-steps", "0", "--checkpointing-steps", "3", "--seed", "1", *extra]
    return distill_main([str(a) for a in args])


def fixed_loss(student_dir, teacher_dir, dataset) -> float:
    """The distillation loss on 8 fixed frames with fixed noise and timesteps."""
    teacher = SolarFlarePipeline.from_pretrained(teacher_dir)
    student = SolarFlarePipeline.from_pretrained(student_dir).unet if student_dir else teacher.unet
    rows = load_split(dataset, "train", columns=TRAINING_COLUMNS + ("flares",))
    collate = Collate(teacher.normalization, 32, None, flare_sigma_px=0.7, dataset_size=32)
    images, labels, maps = collate([rows[i] for i in range(0, 32, 4)])
    torch.manual_seed(123)
    with torch.no_grad():
        return distillation_loss(student, teacher.unet, DDPMScheduler.from_config(teacher.scheduler.config), images,
                                 labels, teacher.null_condition, 3.0, maps).item()


def test_the_student_learns_the_guided_output_and_samples_in_one_call_per_step(teacher, flare_days, tmp_path):
    before = fixed_loss(None, teacher, flare_days)  # the student starts as the teacher's copy
    student_dir = distill(teacher, flare_days, tmp_path / "run", "--max-train-steps", "120", "--student-steps", "2")
    after = fixed_loss(student_dir, teacher, flare_days)
    assert after < 0.7 * before, (before, after)
    pipe = SolarFlarePipeline.from_pretrained(student_dir)
    assert pipe.config.distillation["guidance_scale"] == 3.0 and pipe.config.distillation["num_inference_steps"] == 2
    assert pipe.config.distillation["teacher"] == "teacher"  # the folder's name, never a machine path
    calls = []
    pipe.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    pipe.set_progress_bar_config(disable=True)
    out = pipe("M3", num_images_per_class=3, generator=torch.Generator().manual_seed(0), output_type="model")
    assert calls == [3, 3] and torch.isfinite(out.images).all()  # 2 steps, no doubled (guided) batch
    with pytest.raises(ValueError, match="guidance 3 built in"):
        pipe("M3", guidance_scale=5.0)
    summary = json.loads((tmp_path / "run" / "distill_summary.json").read_text())
    assert summary["steps"] == 120 and summary["distillation"]["steps"] == 120


def test_a_resumed_distillation_equals_an_uninterrupted_one(teacher, flare_days, tmp_path):
    straight = distill(teacher, flare_days, tmp_path / "straight", "--max-train-steps", "6")
    distill(teacher, flare_days, tmp_path / "resumed", "--max-train-steps", "3")
    with pytest.raises(ValueError, match="holds an earlier run"):
        distill(teacher, flare_days, tmp_path / "resumed", "--max-train-steps", "6")
    resumed = distill(teacher, flare_days, tmp_path / "resumed", "--max-train-steps", "6",
                      "--resume-from-checkpoint", "latest")
    a, b = (SolarFlarePipeline.from_pretrained(p).unet.state_dict() for p in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "losses.jsonl").read_text().splitlines()]
    assert losses == list(range(1, 7))


def test_a_student_is_not_distilled_again(teacher, flare_days, tmp_path):
    student = distill(teacher, flare_days, tmp_path / "first", "--max-train-steps", "1")
    with pytest.raises(ValueError, match="already a distilled student"):
        distill(student, flare_days, tmp_path / "second", "--max-train-steps", "1")
