"""``solar-diffusion augment``: generated frames added to a real dataset's minority classes,
flagged, counted, the original rows and splits untouched, readable by load_split and load_dataset."""

import json

import numpy as np
import pytest

from solar_diffusion.augment import is_synthetic, plan_additions
from solar_diffusion.cli import main as cli
from solar_diffusion.pipelines import ClipLogNormalization
from solar_diffusion.splits import dataset_info, load_split, split_table


@pytest.fixture
def browse_model(make_pipeline, tiny_dataset, tmp_path):
    """A tiny untrained class model of the tiny dataset's unit, size and labels."""
    from solar_diffusion.hub import save_pipeline

    labels = dataset_info(tiny_dataset)["vocabulary"]
    pipe = make_pipeline(labels=tuple(labels), normalization=ClipLogNormalization.for_unit("browse"))
    return save_pipeline(pipe, tmp_path / "model")


def test_augment_adds_flagged_frames_and_leaves_the_original_rows(tiny_dataset, browse_model, tmp_path, capsys):
    out = tmp_path / "augmented"
    before = load_split(tiny_dataset, "train", columns=("image", "flare_class", "label_source", "t_obs"))
    names = before.features["flare_class"].names
    counts = {c: int((np.asarray(before["flare_class"]) == names.index(c)).sum()) for c in names}
    plan = plan_additions(counts, ratio=2.0)
    assert plan and "quiet" not in plan
    assert cli(["augment", "--dataset", tiny_dataset, "--out", out, "--model", browse_model, "--ratio", "2",
                "--steps", "1", "--seed", "3"]) == 0
    after = load_split(out, "train", columns=("image", "flare_class", "label_source", "source", "t_obs"))
    n = len(before)
    added = is_synthetic(after["label_source"])
    assert not added[:n].any() and added[n:].all() and added.sum() == sum(plan.values())
    np.testing.assert_array_equal(np.asarray(after["image"])[:n], np.asarray(before["image"]))  # the original rows, unchanged
    np.testing.assert_array_equal(after["flare_class"][:n], before["flare_class"])
    new_labels = [names[i] for i in after["flare_class"][n:]]
    assert {c: new_labels.count(c) for c in plan} == plan
    assert all(s.startswith("synthetic:model:seed=") for s in after["source"][n:])
    assert split_table(out, "train").schema == split_table(tiny_dataset, "train").schema  # the builder's columns
    generated = np.asarray(after["image"])[n:]
    assert generated.min() >= 0 and generated.max() <= 255 and all(t is None for t in after["t_obs"][n:])
    for split in ("validation", "test"):  # copied byte for byte
        for shard in sorted((tiny_dataset / "default").glob(f"{split}-*")):
            assert (out / "default" / shard.name).read_bytes() == shard.read_bytes()
    info = json.loads((out / "build_info.json").read_text())
    assert info["augmented"]["added"] == plan and info["augmented"]["seed"] == 3
    manifest = json.loads((out / "synthetic.json").read_text())
    assert [m["row"] for m in manifest] == list(range(n, n + sum(plan.values())))
    assert "Synthetic frames" in (out / "README.md").read_text()

    from datasets import load_dataset

    hub_style = load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert len(hub_style) == len(after) and sum(s == "synthetic" for s in hub_style["label_source"]) == added.sum()

    assert cli(["augment", "--dataset", tiny_dataset, "--out", out, "--model", browse_model, "--ratio", "1"]) == 2
    assert "is not empty" in capsys.readouterr().err


def test_plan_additions_refuses_what_cannot_be_done():
    with pytest.raises(ValueError, match="one of --ratio R or --target balanced"):
        plan_additions({"quiet": 5, "M": 1})
    with pytest.raises(ValueError, match="no frames of X"):
        plan_additions({"quiet": 5, "M": 1, "X": 0}, flare_classes=["X"], ratio=1.0)
    with pytest.raises(ValueError, match="positive number"):
        plan_additions({"quiet": 5, "M": 1}, ratio=float("nan"))


@pytest.fixture
def browse_flare_model(tmp_path):
    """A tiny untrained flare model of the tiny dataset's unit, size and channel, seen on 2012-03-07."""
    import torch
    from diffusers import DDPMScheduler

    from solar_diffusion import SolarFlarePipeline, build_unet
    from solar_diffusion.hub import save_pipeline
    from solar_diffusion.maps import disk_geometry

    torch.manual_seed(0)
    pipe = SolarFlarePipeline(build_unet("tiny", 16, num_labels=0, conditioning="flare").eval(),
                              DDPMScheduler(),
                              normalization=ClipLogNormalization.for_unit("browse").to_dict(),
                              geometry=disk_geometry(16, 16 / 2.36, date_obs="2012-03-07"),
                              flare_positions=[[-400.0, 250.0]])
    return save_pipeline(pipe, tmp_path / "flare-model")


def test_augment_takes_classes_positions_scheduler_and_novelty_as_generate_does(tiny_dataset, browse_flare_model,
                                                                                 tmp_path):
    out = tmp_path / "augmented"
    assert cli(["augment", "--dataset", tiny_dataset, "--out", out, "--model", browse_flare_model, "--ratio", "1",
                "--flare-class", "C", "--flare-position", "-475,397", "--scheduler", "ddim", "--novelty-target", "0",
                "--steps", "1"]) == 0
    record = json.loads((out / "build_info.json").read_text())["augmented"]
    assert list(record["added"]) == ["C"] and record["scheduler"] == "DDIMScheduler" and record["novelty_target"] == 0
    manifest = json.loads((out / "synthetic.json").read_text())
    assert manifest and {tuple(m["flares"][0]["position_arcsec"]) for m in manifest} == {(-475.0, 397.0)}
    assert {m["flare_class"] for m in manifest} == {"C"}


def save_cascade(make_pipeline, labels, base: int, size: int, folder):
    """A tiny untrained class model of the tiny dataset's unit and labels at ``base`` px with an
    upscaler to ``size`` px (a cascade, whose default output is ``size`` px), saved."""
    from diffusers import DPMSolverMultistepScheduler, UNet2DModel

    from solar_diffusion import SolarFlarePipeline
    from solar_diffusion.hub import save_pipeline

    low = make_pipeline(labels=tuple(labels), sample_size=base, normalization=ClipLogNormalization.for_unit("browse"))
    upscaler = UNet2DModel(sample_size=size, in_channels=2, out_channels=1, block_out_channels=(8, 16),
                           down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2,
                           layers_per_block=1, norm_num_groups=4, class_embed_type="timestep").eval()
    pipe = SolarFlarePipeline(low.unet, low.scheduler, id2label=low.id2label, normalization=low.config.normalization,
                              geometry=low.config.geometry, upscaler=upscaler,
                              upscaler_scheduler=DPMSolverMultistepScheduler(),
                              upscaling={"residual_std": 0.1, "num_inference_steps": 1})
    return save_pipeline(pipe, folder)


def test_a_cascade_adds_frames_of_the_datasets_size_or_is_refused(tiny_dataset, make_pipeline, tmp_path, capsys):
    """The added frames are the dataset's size (16 px): a cascade's base stage where that is its base
    model's size (not its larger default), its upscaler's where that is; neither: one line, exit 2."""
    labels = dataset_info(tiny_dataset)["vocabulary"]
    for base, size in ((16, 32), (8, 16)):
        model = save_cascade(make_pipeline, labels, base, size, tmp_path / f"model-{base}-{size}")
        out = tmp_path / f"augmented-{base}-{size}"
        assert cli(["augment", "--dataset", tiny_dataset, "--out", out, "--model", model, "--ratio", "1",
                    "--flare-class", "C", "--steps", "1"]) == 0
        added = load_split(out, "train", columns=("image", "label_source", "image_size"))
        flags = is_synthetic(added["label_source"])
        assert flags.any() and {np.asarray(image).shape[-1] for image, new in zip(added["image"], flags) if new} == {16}
        assert set(np.asarray(added["image_size"])[flags]) == {16}
    model = save_cascade(make_pipeline, labels, 8, 32, tmp_path / "model-8-32")
    assert cli(["augment", "--dataset", tiny_dataset, "--out", tmp_path / "refused", "--model", model, "--ratio", "1",
                "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "makes 1 x 8 or 32 px images" in err and "holds 1 x 16 px" in err, err


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_augment_leaves_nothing_it_wrote(tiny_dataset, browse_model, tmp_path, monkeypatch, capsys, existing):
    """A failure while sampling, after the original shards were copied: the new folder goes (an empty
    one given as --out stays, empty)."""
    from solar_diffusion import augment

    def corrupt(*args, **kwargs):
        raise RuntimeError("2 of 2 generated images hold NaN or Inf values")

    monkeypatch.setattr(augment, "_generated_rows", corrupt)
    out = tmp_path / "new" / "augmented"
    if existing:
        out.mkdir(parents=True)
    assert cli(["augment", "--dataset", tiny_dataset, "--out", out, "--model", browse_model, "--ratio", "1",
                "--steps", "1"]) == 1
    assert capsys.readouterr().err.strip() == "error: 2 of 2 generated images hold NaN or Inf values"
    assert list(out.iterdir()) == [] if existing else not (tmp_path / "new").exists()
