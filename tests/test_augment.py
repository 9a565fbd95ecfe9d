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
