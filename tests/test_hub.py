"""``solar-diffusion push`` through a folder-backed Hub client, and datasets given by Hub id: what
a Hub repo would hold, loaded back the way Hub users load it."""

import json

import numpy as np
import pytest

from solar_diffusion.cli import main as cli
from solar_diffusion.hub import push_folder, save_pipeline
from solar_diffusion.splits import dataset_info, load_split, resolve_dataset


def replay(folder_hub):
    """A ``snapshot_download`` answering from what was pushed to ``folder_hub``."""
    def download(repo_id, repo_type):
        path = folder_hub.repo_path(repo_id, repo_type)
        if not path.exists():
            raise FileNotFoundError(f"404: {repo_type} repo {repo_id} not found")
        return str(path)
    return download


def test_a_pushed_dataset_loads_back_by_its_hub_id(tiny_dataset, folder_hub, tmp_path):
    from datasets import load_dataset

    (tiny_dataset / ".build-state.json").write_text("{}")  # a work file: not uploaded
    repo, kind = push_folder(tiny_dataset, "sun/tiny-aia", api=folder_hub)
    assert (repo, kind) == ("sun/tiny-aia", "dataset") and folder_hub.calls[0] == ("create_repo", "sun/tiny-aia", "dataset")
    local = resolve_dataset("sun/tiny-aia", download=replay(folder_hub))
    assert not any(p.name.startswith(".") for p in folder_hub.repo_path("sun/tiny-aia", "dataset").iterdir())
    assert dataset_info(local) == dataset_info(tiny_dataset)
    np.testing.assert_array_equal(np.asarray(load_split(local, "train")["image"]),
                                  np.asarray(load_split(tiny_dataset, "train")["image"]))
    hub_style = load_dataset(local, cache_dir=str(tmp_path / "hf-cache"))
    assert set(hub_style) == {"train", "validation"}
    assert hub_style["train"].features["flare_class"].names == ["quiet", "A", "B", "C", "M", "X"]
    card = (folder_hub.repo_path("sun/tiny-aia", "dataset") / "README.md").read_text()
    assert "size_categories:" in card and "license_link: https://sdo.gsfc.nasa.gov/data/rules.php" in card
    with pytest.raises(FileNotFoundError, match="sun/missing: no such folder, and the Hub dataset"):
        resolve_dataset("sun/missing", download=replay(folder_hub))


def test_a_pushed_model_loads_without_the_package_path(tiny_pipeline, folder_hub, tmp_path):
    from diffusers import DiffusionPipeline

    folder = save_pipeline(tiny_pipeline, tmp_path / "model", model_card="# tiny\n")
    repo, kind = push_folder(folder, "sun/tiny-model", api=folder_hub)
    assert kind == "model"
    path = folder_hub.repo_path("sun/tiny-model")
    remote = DiffusionPipeline.from_pretrained(path, custom_pipeline=str(path), trust_remote_code=True)
    remote.set_progress_bar_config(disable=True)
    images = remote("M", num_inference_steps=2, generator=__import__("torch").Generator().manual_seed(0)).images
    assert np.isfinite(np.asarray(images)).all()
    assert json.loads((path / "model_index.json").read_text())["_class_name"] == "SolarFlarePipeline"


def test_push_refuses_what_is_neither_a_model_nor_a_dataset(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    assert cli(["push", tmp_path / "notes", "--repo-id", "sun/x"]) == 2
    assert "neither a saved pipeline" in capsys.readouterr().err
    assert cli(["push", tmp_path / "nope", "--repo-id", "sun/x"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_dataset_argument_that_is_neither_a_folder_nor_a_fetchable_id(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli(["augment", "--dataset", tmp_path / "absent" / "deeper", "--out", tmp_path / "o", "--ratio", "1"])
    assert exit_.value.code == 2 and "no such dataset folder" in capsys.readouterr().err


def test_evaluate_takes_the_training_frames_from_another_dataset(real_dataset_of_days, shared_data, tmp_path):
    from solar_diffusion import ClipLogNormalization
    from solar_diffusion.evaluate import EvaluationConfig, training_frames

    held_out = real_dataset_of_days(shared_data, tmp_path / "october", ["10-20"], 16)
    trained_on = real_dataset_of_days(shared_data, tmp_path / "march", ["03-07"], 16)
    norm = ClipLogNormalization.for_browse()
    with pytest.raises(ValueError, match="has no train split: give --train-dataset"):
        training_frames(EvaluationConfig(model="m", dataset=str(held_out), out="o"), norm, 16)
    frames = training_frames(EvaluationConfig(model="m", dataset=str(held_out), out="o",
                                              train_dataset=str(trained_on)), norm, 16)
    assert len(frames) == sum(dataset_info(trained_on)["counts"]["train"].values()) > 0


def test_a_model_card_names_the_hub_dataset_it_was_trained_on(tiny_pipeline, tiny_dataset):
    from huggingface_hub import ModelCard

    from solar_diffusion.training.model_card import render_model_card

    info = dataset_info(tiny_dataset)
    args = {"dataset": "/home/u/.cache/huggingface/hub/datasets--sun--aia-2012/snapshots/0a1b", "preset": "tiny"}
    card = ModelCard(render_model_card(args, info, tiny_pipeline, steps=6))
    assert card.data.datasets == ["sun/aia-2012"] and "data: `sun/aia-2012`" in card.text
    local = ModelCard(render_model_card({"dataset": str(tiny_dataset)}, info, tiny_pipeline, steps=6))
    assert local.data.datasets is None and f"data: `{tiny_dataset.name}`" in local.text  # no machine path
