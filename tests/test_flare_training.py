"""Training a flare model (``--conditioning flare``) on real frames: each frame's flares become
its flare map, the saved pipeline keeps the training flares' positions and places a flare."""

import json

import numpy as np
import pytest
import torch

from solar_diffusion import SolarFlarePipeline
from solar_diffusion.pipelines import NO_FLARE_CONDITION, ClipLogNormalization, flux_condition
from solar_diffusion.splits import TRAINING_COLUMNS, load_split
from solar_diffusion.training.data import Collate


@pytest.fixture(scope="module")
def flare_days(shared_data, real_dataset_of_days, tmp_path_factory):
    """32 px, three channels, flares within 30 min: the X5.4 of 2012-03-07 and the M6.3 of 03-09, and a
    validation day."""
    return real_dataset_of_days(shared_data, tmp_path_factory.mktemp("flares") / "ds", ["03-07", "03-09", "08-10"], 32,
                                channels=("171", "131", "94"), window_minutes=30)


def test_collate_puts_each_flare_on_the_map_at_its_pixel(flare_days):
    rows = load_split(flare_days, "train", columns=TRAINING_COLUMNS + ("flares",))
    collate = Collate(ClipLogNormalization.for_unit("browse"), 32, None, flare_sigma_px=0.7, dataset_size=32)
    flaring = [i for i in range(len(rows)) if len(rows[i]["flares"]["x_px"])][:6]
    quiet = [i for i in range(len(rows)) if not len(rows[i]["flares"]["x_px"])][:2]
    images, labels, maps = collate([rows[i] for i in flaring + quiet])
    assert maps.shape == (8, 2, 32, 32) and torch.all(maps[:, 1] == 1)
    for k, i in enumerate(flaring):
        flares = rows[i]["flares"]
        assert labels[k].item() == pytest.approx(flux_condition(max(flares["log10_peak_flux_goes_r"])), rel=1e-5)
        usable = np.flatnonzero(flares["on_disk"])
        if len(usable):
            j = usable[np.argmax(np.asarray(flares["log10_peak_flux_goes_r"])[usable])]
            row, col = np.unravel_index(maps[k, 0].numpy().argmax(), (32, 32))
            assert abs(col - flares["x_px"][j]) <= 1 and abs(row - flares["y_px"][j]) <= 1
    assert labels[-1].item() == NO_FLARE_CONDITION and maps[-2:, 0].abs().max() == 0
    with pytest.raises(ValueError, match="without --augment-rotation"):
        Collate(ClipLogNormalization.for_unit("browse"), 32, None, rotation=5.0, flare_sigma_px=0.7, dataset_size=32)


def test_a_flare_model_trains_from_a_pack_and_places_a_flare(flare_days, accelerate_launch, tmp_path):
    """From a training pack, as on an offline GPU node."""
    from solar_diffusion.pack import write_pack

    pack = tmp_path / "pack"
    write_pack(flare_days, pack, splits=("train", "validation"), max_mb=None, log=lambda *a: None)
    out = tmp_path / "flare-run"
    accelerate_launch("train_ddpm.py", "--dataset", pack, "--output-dir", out, "--preset", "tiny",
                      "--conditioning", "flare", "--train-batch-size", 4, "--max-train-steps", 3, "--lr-warmup-steps",
                      0, "--checkpointing-steps", 3, "--validation-steps", 3, "--sample-steps", 0, "--logger", "none",
                      timeout=240)
    pipe = SolarFlarePipeline.from_pretrained(out / "pipeline")
    assert pipe.conditioning == "flare" and pipe.unet.config.in_channels == 5 and pipe.unet.config.out_channels == 3
    rows = load_split(flare_days, "train", columns=("flares",))
    usable = {(float(x), float(y)) for f in rows["flares"] for x, y, ok in zip(f["hpc_x"], f["hpc_y"], f["on_disk"]) if ok}
    assert usable and {tuple(p) for p in pipe.config.flare_positions} == usable
    pipe.set_progress_bar_config(disable=True)
    out_images = pipe("M3", flare_position=(-475.0, 397.0), num_inference_steps=2, output_type="pt",
                      generator=[torch.Generator().manual_seed(0)])
    assert out_images.images.shape == (1, 3, 32, 32) and torch.isfinite(out_images.images).all()
    assert out_images.metadata[0]["flares"][0]["position_arcsec"] == [-475.0, 397.0]
    assert json.loads((out / "train_summary.json").read_text())["steps_this_run"] == 3
