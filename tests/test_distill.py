"""Guidance distillation (``training/distill.py``) on real frames: the student learns the teacher's
guided output in one call, resumes exactly, and samples with one UNet call per step."""

import json

import pytest
import torch
from diffusers import DDPMScheduler

from solar_diffusion import SolarFlarePipeline, build_unet, null_condition
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
                                 labels, null_condition(teacher.unet.config), 3.0, maps).item()


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
    with pytest.raises(ValueError, match=r"was made with --learning-rate 0.001, not 0.002"):  # no mixed runs
        distill(teacher, flare_days, tmp_path / "resumed", "--max-train-steps", "6", "--resume-from-checkpoint",
                "latest", "--learning-rate", "2e-3")
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


def test_a_teacher_trained_with_flips_is_distilled_with_its_planes_at_no_flip(flare_days, tmp_path):
    from solar_diffusion.pipelines import AUGMENTATION_PLANES

    torch.manual_seed(0)
    unet = build_unet("tiny", sample_size=32, num_labels=0, in_channels=3, conditioning="flare",
                      augmentation_planes=AUGMENTATION_PLANES).eval()
    pipe = SolarFlarePipeline(unet, DDPMScheduler(), normalization=ClipLogNormalization.for_unit("browse").to_dict(),
                              geometry=dataset_geometry(flare_days, 32), flare_positions=[[-475.0, 397.0]])
    flipped = save_pipeline(pipe, tmp_path / "flipped")
    student = SolarFlarePipeline.from_pretrained(distill(flipped, flare_days, tmp_path / "student", "--max-train-steps", "1"))
    assert student.unet.config.in_channels == unet.config.in_channels  # the student reads the planes too
    student.set_progress_bar_config(disable=True)
    assert student("M2.0", num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0)
                   ).images.shape == (1, 32, 32, 3)


def test_the_progressive_students_sampler_is_the_ddim_step_it_learns():
    """A step of the saved sampler (first-order DPM-Solver++, trailing grid, clipped x0) is
    exactly the DDIM step whose target the progressive loss computes."""
    from solar_diffusion.pipelines import predicted_x0
    from solar_diffusion.training.distill import ddim_step, student_scheduler

    sampler = student_scheduler(DDPMScheduler(prediction_type="v_prediction"))
    sampler.set_timesteps(4)
    assert sampler.timesteps.tolist() == [999, 749, 499, 249]
    abar = torch.cat([sampler.alphas_cumprod, torch.ones(1)])
    torch.manual_seed(0)
    z = torch.randn(2, 3, 8, 8)
    for i, t in enumerate(sampler.timesteps.tolist()):
        v = torch.randn_like(z) * 0.5
        a_t, a_s = abar[t].view(1, 1, 1, 1), abar[t - 250 if t > 249 else -1].view(1, 1, 1, 1)  # -1: clean
        expected = ddim_step(predicted_x0(v, z, a_t, "v_prediction").clamp(-1, 1), z, a_t, a_s)
        z_next = sampler.step(v, t, z).prev_sample
        assert torch.allclose(z_next, expected, atol=1e-4), (t, (z_next - expected).abs().max())
        z = z_next


def test_progressive_distillation_halves_the_steps(teacher, flare_days, tmp_path):
    """From a guidance-distilled student, a 2-step student learns the teacher's 4 steps: its loss
    on fixed frames falls; it saves its own sampler and samples with one call per grid step; and
    it can teach the next halving."""
    from solar_diffusion.training.distill import progressive_loss, student_scheduler

    stage1 = distill(teacher, flare_days, tmp_path / "stage1", "--max-train-steps", "2")
    first = SolarFlarePipeline.from_pretrained(stage1)
    rows = load_split(flare_days, "train", columns=TRAINING_COLUMNS + ("flares",))
    images, labels, maps = Collate(first.normalization, 32, None, flare_sigma_px=0.7, dataset_size=32)(
        [rows[i] for i in range(0, 32, 4)])

    def loss(unet) -> float:
        torch.manual_seed(7)
        with torch.no_grad():
            return progressive_loss(unet, first.unet, first.scheduler.alphas_cumprod, [999, 499], 2, images, labels,
                                    null_condition(first.unet.config), None, "epsilon", maps).item()

    before = loss(first.unet)
    student_dir = distill(stage1, flare_days, tmp_path / "stage2", "--method", "progressive", "--student-steps", "2",
                          "--max-train-steps", "60")
    pipe = SolarFlarePipeline.from_pretrained(student_dir)
    assert loss(pipe.unet) < 0.7 * before, (before, loss(pipe.unet))
    d = pipe.config.distillation
    assert d["method"].startswith("progressive") and d["num_inference_steps"] == 2 and d["teacher_steps"] == 4
    assert d["guidance_scale"] == 3.0 and d["teacher"] == "stage1/pipeline"  # its teacher's guidance
    assert pipe.scheduler.config.solver_order == 1 and pipe.scheduler.config.timestep_spacing == "trailing"
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(student_scheduler(first.scheduler).config) == public(pipe.scheduler.config)
    calls = []
    pipe.unet.register_forward_hook(lambda module, args, out: calls.append((args[0].shape[0], int(torch.as_tensor(args[1]).flatten()[0]))))
    pipe.set_progress_bar_config(disable=True)
    out = pipe("M3", num_images_per_class=2, generator=torch.Generator().manual_seed(0), output_type="model")
    assert calls == [(2, 999), (2, 499)] and torch.isfinite(out.images).all()
    # the command line keeps a student's own sampler and steps; a DDPM training schedule as saved
    # (the tiny teacher's) samples with DPM-Solver++
    from solar_diffusion.cli import main

    for model, scheduler, steps in ((student_dir, "DPMSolverMultistepScheduler", 2),
                                    (teacher, "DPMSolverMultistepScheduler", 10)):
        out = tmp_path / f"generated-{steps}"
        assert main(["generate", "--model", model, "--num-images", "1", "--flare-class", "M", "--out", out]) == 0
        settings = json.loads((out / "generation.json").read_text())["settings"]
        assert (settings["scheduler"], settings["num_inference_steps"]) == (scheduler, steps)
    nxt = distill(student_dir, flare_days, tmp_path / "stage3", "--method", "progressive", "--student-steps", "1",
                  "--max-train-steps", "1")
    assert SolarFlarePipeline.from_pretrained(nxt).config.distillation["teacher_steps"] == 2
