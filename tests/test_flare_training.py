"""Training a flare model (``--conditioning flare``) on real frames: each frame's flares become
its flare map, the saved pipeline keeps the training flares' positions and places a flare."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from solar_diffusion import SolarFlarePipeline
from solar_diffusion import evaluation_keys as keys
from solar_diffusion.pipelines import NO_FLARE_CLASS_INPUT, ClipLogNormalization, flux_class_input
from solar_diffusion.splits import TRAINING_COLUMNS, load_split
from solar_diffusion.training.data import Collate


def test_collate_puts_each_flare_on_the_map_at_its_pixel(flare_days):
    rows = load_split(flare_days, "train", columns=TRAINING_COLUMNS + ("flares",))
    collate = Collate(ClipLogNormalization.for_unit("browse"), 32, None, flare_sigma_px=0.7, dataset_size=32)
    flaring = [i for i in range(len(rows)) if len(rows[i]["flares"]["x_px"])][:6]
    quiet = [i for i in range(len(rows)) if not len(rows[i]["flares"]["x_px"])][:2]
    images, labels, maps = collate([rows[i] for i in flaring + quiet])
    assert maps.shape == (8, 2, 32, 32) and torch.all(maps[:, 1] == 1)
    for k, i in enumerate(flaring):
        flares = rows[i]["flares"]
        assert labels[k].item() == pytest.approx(flux_class_input(max(flares["log10_peak_flux_goes_r"])), rel=1e-5)
        usable = np.flatnonzero(flares["on_disk"])
        if len(usable):
            j = usable[np.argmax(np.asarray(flares["log10_peak_flux_goes_r"])[usable])]
            row, col = np.unravel_index(maps[k, 0].numpy().argmax(), (32, 32))
            assert abs(col - flares["x_px"][j]) <= 1 and abs(row - flares["y_px"][j]) <= 1
    assert labels[-1].item() == NO_FLARE_CLASS_INPUT and maps[-2:, 0].abs().max() == 0
    with pytest.raises(ValueError, match="without --augment-rotation"):
        Collate(ClipLogNormalization.for_unit("browse"), 32, None, rotation=5.0, flare_sigma_px=0.7, dataset_size=32)


@pytest.fixture(scope="module")
def flare_run(flare_days, accelerate_launch, tmp_path_factory) -> Path:
    """A tiny flare model trained for 3 steps from a training pack, as on an offline GPU node."""
    from solar_diffusion.pack import write_pack

    root = tmp_path_factory.mktemp("flare-run")
    pack = root / "pack"
    write_pack(flare_days, pack, splits=("train", "validation"), max_mb=None, log=lambda *a: None)
    out = root / "run"
    accelerate_launch("train_ddpm.py", "--dataset", pack, "--out", out, "--preset", "tiny",
                      "--conditioning", "flare", "--train-batch-size", 4, "--max-train-steps", 3, "--lr-warmup-steps",
                      0, "--checkpointing-steps", 3, "--validation-steps", 3, "--sample-steps", 0, "--logger", "none",
                      timeout=240)
    return out


def test_a_flare_model_trains_from_a_pack_and_places_a_flare(flare_days, flare_run):
    out = flare_run
    pipe = SolarFlarePipeline.from_pretrained(out / "pipeline")
    assert pipe.conditioning == "flare" and pipe.unet.config.in_channels == 5 and pipe.unet.config.out_channels == 3
    rows = load_split(flare_days, "train", columns=("flares",))
    usable = {(float(x), float(y)) for f in rows["flares"] for x, y, ok in zip(f["hpc_x"], f["hpc_y"], f["on_disk"]) if ok}
    assert usable and {tuple(p) for p in pipe.config.flare_positions} == usable
    pipe.set_progress_bar_config(disable=True)
    out_images = pipe("M3", flare_position=(-475.0, 397.0), num_inference_steps=2, output_type="model",
                      generator=[torch.Generator().manual_seed(0)])
    assert out_images.images.shape == (1, 3, 32, 32) and torch.isfinite(out_images.images).all()
    assert out_images.metadata[0]["flares"][0]["position_arcsec"] == [-475.0, 397.0]
    assert json.loads((out / "train_summary.json").read_text())["steps_this_run"] == 3
    # two training days, 2 days apart: no day distance to measure, so no novelty guidance (said so in the log)
    assert pipe.config.novelty == {} and out_images.metadata[0]["novelty_target"] == 0.0


def test_flare_signature_finds_real_flares_at_their_hek_positions(shared_data, real_dataset_of_days, tmp_path):
    """On real frames (64 px, three days with M flares in progress at frame times), the brightest 3x3 at
    the HEK position of the largest flare is above the disk's 99th percentile in 94 and 131 Å, and
    it drops when the same frames are read at a position moved by a quarter of the disk."""
    from solar_diffusion.flare_evaluation import disk_percentile, flare_signature
    from solar_diffusion.pipelines import disk_center_px, disk_mask, rsun_px
    from solar_diffusion.splits import dataset_geometry
    from solar_diffusion.splits import frame_flare_inputs

    days = real_dataset_of_days(shared_data, tmp_path / "ds", ["01-19", "03-05", "06-13"], 64,
                                channels=("171", "131", "94"))
    rows = load_split(days, "train", columns=("image", "flares", "flare_class"))
    names = rows.features["flare_class"].names
    picked, where = [], []
    for row in rows:
        if names[row["flare_class"]] in ("M", "X"):
            _, positions, fluxes = frame_flare_inputs(row, 64, 64)
            picked.append(row["image"])
            where.append(positions[int(np.argmax(fluxes))])
    assert len(picked) >= 8
    flare_days = days
    images = ClipLogNormalization.for_unit("browse").forward(torch.from_numpy(np.asarray(picked, np.float32)))
    geometry = dataset_geometry(flare_days, 64)
    mask = disk_mask(64, rsun_px(geometry), center=disk_center_px(geometry))
    at, p99 = flare_signature(images, where), disk_percentile(images, mask)
    moved = flare_signature(images, [(x, y - 0.25 * 2 * rsun_px(geometry)) for x, y in where])
    for channel in (1, 2):  # 131 and 94 Å
        assert np.mean(at[:, channel] / p99[:, channel]) > 1.0
        assert np.mean(at[:, channel]) > np.mean(moved[:, channel]) + 0.05


def test_evaluate_a_flare_model(flare_run, flare_days, tmp_path):
    """``evaluate`` on a flare model: the classes share seeds and positions, and the flare sections
    (signature, moved position, memorisation, diversity, away) come with their sample sizes. The
    encoder is an untrained three-channel one (its training has its own tests)."""
    from solar_diffusion.cli import main as cli
    from solar_diffusion.encoder import FlareClassifier

    encoder = tmp_path / "encoder"
    torch.manual_seed(0)
    FlareClassifier({0: "quiet", 1: "C", 2: "M", 3: "X"}, sample_size=32, in_channels=3, widths=(8, 16),
                    feature_dim=16, normalization=ClipLogNormalization.for_unit("browse").to_dict()
                    ).eval().save_pretrained(encoder)
    out = tmp_path / "eval"
    assert cli(["evaluate", "--model", str(flare_run / "pipeline"), "--dataset", str(flare_days), "--split",
                "validation", "--encoder", str(encoder), "--num-images", "4", "--num-positions", "2", "--steps",
                "2", "--steps-curve", "", "--n-boot", "10", "--min-real", "2", "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    flare = report["flare"]
    classes = report["model"]["classes"]
    assert classes[0] == "quiet" and "X" in classes and len(flare["positions_arcsec"]) == 2
    sig = flare["signature"]
    assert sig["channels"] == ["171", "131", "94"]
    assert sig["classes"]["X"]["generated"]["94"]["n"] == [4]
    assert sig["classes"]["X"][keys.REAL_AT_HEK_POSITIONS]["94"]["n"][0] >= 1  # the X5.4 frames
    for w in sig["channels"]:
        row = sig["classes"]["M"]["generated"][w]
        assert 0 <= row["low"] <= row["value"] <= row["high"] <= 1
    moved = flare["moved"]
    assert moved["class"] == "X" and moved["b_arcsec"] == [-moved["a_arcsec"][0], moved["a_arcsec"][1]]
    assert moved[keys.AT_A]["94"]["n"] == [8]
    memorisation = flare["memorisation"]
    assert memorisation["classes"]["M"]["median"]["value"] > 0
    assert keys.OVER_GENERATED_QUIET in memorisation["classes"]["M"]
    assert keys.REAL_TRAIN_OTHER_DAYS in memorisation  # the two train days are 2 apart
    # a half is never farther than the whole frame it comes from: the nearest hemisphere is at most the nearest frame
    assert memorisation[keys.REAL_HELD_OUT_HEMISPHERE]["value"] <= memorisation[keys.REAL_HELD_OUT_WITH_FLIPS]["value"] + 1e-9
    assert 0 < memorisation["classes"]["M"][keys.OVER_REAL_HELD_OUT_HEMISPHERE]["value"] < 10
    from solar_diffusion.flare_evaluation import nearest_other_days
    from solar_diffusion.splits import LabelledImages

    times = np.array(["2012-03-01T00:00", "2012-03-01T01:00", "2012-03-09T00:00"], dtype="datetime64[s]")
    frames = LabelledImages(torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.1), torch.ones(1, 2, 2)]),
                            np.array(["quiet"] * 3, dtype=object), times)
    # the hour-apart neighbour is skipped: each day's frames are 1.0 and 0.9 from the other day's
    np.testing.assert_allclose(sorted(nearest_other_days(frames, np.random.default_rng(0))), [0.9, 0.9, 1.0])
    assert set(flare["diversity"]["classes"]) == set(classes)  # 4 images at 2 positions: 2 pairs per class
    assert flare["diversity"]["classes"]["quiet"]["n"] == [2]
    assert set(flare["away"]["classes"]) == set(classes)
    assert {"94", "131", "away_within_real_range", "no_copies"} <= set(flare["checks"])
    fid = flare["fidelity"]  # (f): the fidelity issue's figures, each with its interval
    assert fid["size"] == 32 and fid["num_per_class"] == 4 and fid["channels"] == ["171", "131", "94"]
    for bands in fid["power_ratio"]["channels"].values():
        assert all(0 <= b["low"] <= b["value"] <= b["high"] for b in bands.values())
    assert fid["pit"]["channel"] == "171" and fid["pit"]["classes"] == ["M", "X"]
    assert {"top_band_power_ratio_in_range", "pit_median_at_least_real_p10", "limbs_within_real_max",
            "x_very_bright_at_least_0_9_of_quiet"} <= set(fid["checks"])
    assert fid["checks"]["at_64_px_with_32_per_class"] is False  # 32 px, 4 per class: not the protocol
    steps = sig[keys.PAIRED_STEPS]
    assert list(steps) == [keys.paired_step(a, b) for a, b in zip(classes, classes[1:])]
    for w in sig["channels"]:  # image k of both classes shares its seed and position: the mean step is the step of means
        means = {c: sig["classes"][c]["generated"][w]["value"] for c in ("M", "X")}
        assert abs(steps[keys.paired_step("M", "X")][w]["value"] - (means["X"] - means["M"])) < 1e-9
        assert steps[keys.paired_step("M", "X")][w]["n"] == [4]
    assert flare["checks"]["94"]["separated"] in (True, False)
    text = (out / "report.md").read_text()
    assert "(a) Flare signature" in text and "(c) Memorisation" in text and "(e) Away" in text
    for name in ("contact_sheet.png", "contact_sheet_0094.png", "contact_sheet_0131.png", "contact_sheet_0171.png"):
        assert (out / name).stat().st_size > 1000, name


def test_flips_move_the_image_and_its_flare_map_together_and_are_told_to_the_unet(flare_days):
    from solar_diffusion.training.data import random_flips

    rows = load_split(flare_days, "train", columns=TRAINING_COLUMNS + ("flares",))
    collate = Collate(ClipLogNormalization.for_unit("browse"), 32, None, flare_sigma_px=0.7, dataset_size=32,
                      raw=True)  # as training batches: stored, made model space here
    flaring = [i for i in range(len(rows)) if len(rows[i]["flares"]["x_px"])][:8]
    images, _, maps = collate([rows[i] for i in flaring])
    x = collate.to_model_space(images, augment=False)
    torch.manual_seed(0)
    flipped, flipped_maps, planes = random_flips(x, maps, 0.5)
    assert planes.shape == (8, 2, 32, 32) and set(planes.unique().tolist()) <= {0.0, 1.0}
    said = planes[:, :, 0, 0].bool()
    assert 0 < said.sum() < 16  # some flipped, some not, at probability 0.5
    for k in range(8):
        undo_x, undo_map = flipped[k], flipped_maps[k]
        if said[k, 1]:
            undo_x, undo_map = undo_x.flip(-2), undo_map.flip(-2)
        if said[k, 0]:
            undo_x, undo_map = undo_x.flip(-1), undo_map.flip(-1)
        assert torch.equal(undo_x, x[k]) and torch.equal(undo_map, maps[k])  # what the planes say was done
        assert torch.all(planes[k] == said[k].float()[:, None, None])


def test_a_hemisphere_swap_keeps_each_frames_flares_and_takes_the_rest_from_a_flare_free_frame(flare_days):
    from solar_diffusion.pipelines import rsun_px
    from solar_diffusion.splits import dataset_geometry
    from solar_diffusion.training.data import HEMISPHERE_BLEND_RSUN, random_hemisphere_swap

    rows = load_split(flare_days, "train", columns=TRAINING_COLUMNS + ("flares",))
    collate = Collate(ClipLogNormalization.for_unit("browse"), 32, None, flare_sigma_px=0.7, dataset_size=32,
                      raw=True)  # as training batches: stored, made model space here
    flaring = [i for i in range(len(rows)) if len(rows[i]["flares"]["x_px"])][:6]
    quiet = [i for i in range(len(rows)) if not len(rows[i]["flares"]["x_px"])][:4]
    images, labels, maps = collate([rows[i] for i in flaring + quiet])
    x = collate.to_model_space(images, augment=False)
    radius = rsun_px(dataset_geometry(flare_days, 32))
    assert random_hemisphere_swap(x, labels, maps, 0.0, radius)[0] is x  # never asked: untouched
    torch.manual_seed(0)
    swapped, swapped_maps = random_hemisphere_swap(x, labels, maps, 1.0, radius)
    edge = int(np.ceil(HEMISPHERE_BLEND_RSUN * radius))
    north, south = slice(16 + edge, None), slice(None, 16 - edge)  # beyond the blend, FITS rows: north is up
    is_quiet = labels == NO_FLARE_CLASS_INPUT
    changed = 0
    for k in range(len(x)):
        if torch.equal(swapped[k], x[k]):
            continue
        changed += 1
        kept, taken = (north, south) if torch.equal(swapped[k, :, north], x[k, :, north]) else (south, north)
        assert torch.equal(swapped[k, :, kept], x[k, :, kept])
        donors = [j for j in range(len(x)) if j != k and is_quiet[j] and torch.equal(swapped[k, :, taken], x[j, :, taken])]
        assert donors, f"frame {k}: the other hemisphere is no flare-free frame's"
        mass = maps[k, 0].sum()
        assert swapped_maps[k, 0].sum() >= 0.99 * mass - 1e-6 and swapped_maps[k, 0].sum() <= mass + 1e-6
        assert torch.equal(swapped_maps[k, 0].flatten().argmax(), maps[k, 0].flatten().argmax())  # its flare stays
        assert torch.equal(swapped_maps[k, 1], maps[k, 1])
    assert changed >= 6  # the flare-free frames swap among themselves; flaring ones unless a flare sits on the equator

    # a flare on the equator, or no flare-free frame to take from: left as it is
    on_equator = maps[:1].clone()
    on_equator[0, 0] = 0
    on_equator[0, 0, 15:17, 10] = 1.0
    alone, _ = random_hemisphere_swap(x[[0, -1]], labels[[0, -1]], torch.cat([on_equator, maps[-1:]]), 1.0, radius)
    assert torch.equal(alone[0], x[0])
    flares_only, _ = random_hemisphere_swap(x[:6], labels[:6], maps[:6], 1.0, radius)
    assert torch.equal(flares_only, x[:6])


def test_a_flare_model_trains_with_hemisphere_swaps_and_solar_rotation_and_a_resume_keeps_them(flare_days, tmp_path,
                                                                                                 capsys):
    from solar_diffusion.cli import main

    out = tmp_path / "run"
    common = ["train", "--dataset", flare_days, "--out", out, "--preset", "tiny", "--conditioning", "flare",
              "--train-batch-size", "4", "--max-train-steps", "2", "--lr-warmup-steps", "0", "--checkpointing-steps",
              "1", "--validation-steps", "0", "--sample-steps", "0", "--logger", "none", "--augment-solar-rotation", "1"]
    assert main(common + ["--augment-hemispheres", "1.0", "--stop-at-step", "1"]) == 0
    settings = json.loads((out / "run_settings.json").read_text())
    assert settings["augment_hemispheres"] == 1.0 and settings["augment_solar_rotation"] == 1.0
    capsys.readouterr()
    assert main(common + ["--augment-hemispheres", "0.5", "--resume-from-checkpoint", "latest"]) == 2
    assert "--augment-hemispheres 1.0, not 0.5" in capsys.readouterr().err
    # a settings file written before the option existed: the run was made with its default, no swaps
    (out / "run_settings.json").write_text(json.dumps({k: v for k, v in settings.items() if k != "augment_hemispheres"}))
    assert main(common + ["--augment-hemispheres", "1.0", "--resume-from-checkpoint", "latest"]) == 2
    assert "--augment-hemispheres 0.0, not 1.0" in capsys.readouterr().err
    (out / "run_settings.json").write_text(json.dumps(settings))
    assert main(common + ["--augment-hemispheres", "1.0", "--resume-from-checkpoint", "latest"]) == 0
    assert SolarFlarePipeline.from_pretrained(out / "pipeline").unet.config.in_channels == 3 + 2  # no planes of its own


def test_a_flare_model_warm_starts_a_model_with_augmentation_planes_exactly():
    from solar_diffusion import build_unet
    from solar_diffusion.pipelines import AUGMENTATION_PLANES, with_flare_map
    from solar_diffusion.training.train_ddpm import transfer_unet_weights

    torch.manual_seed(0)
    source = build_unet("tiny", 16, 0, 3, "flare").eval()
    target = transfer_unet_weights(source, build_unet("tiny", 16, 0, 3, "flare", augmentation_planes=AUGMENTATION_PLANES),
                                   [171.0, 131.0, 94.0], [171.0, 131.0, 94.0]).eval()
    assert target.config.in_channels == 3 + 2 + AUGMENTATION_PLANES
    x, maps, t = torch.randn(2, 3, 16, 16), torch.rand(2, 2, 16, 16), torch.tensor([10, 500])
    labels = torch.tensor([0.3, -1.0])
    no_flip = torch.zeros(2, AUGMENTATION_PLANES, 16, 16)
    with torch.no_grad():
        before = source(with_flare_map(x, maps), t, class_labels=labels).sample
        after = target(with_flare_map(x, torch.cat([maps, no_flip], 1)), t, class_labels=labels).sample
    assert torch.allclose(before, after, atol=1e-5)  # at step 0, "no flip" is the source model


def test_a_flare_model_trained_with_flips_samples_with_no_flip_asked(flare_days, tmp_path):
    from solar_diffusion.cli import main
    from solar_diffusion.pipelines import AUGMENTATION_PLANES, FLARE_MAP_CHANNELS

    out = tmp_path / "run"
    assert main(["train", "--dataset", flare_days, "--out", out, "--preset", "tiny", "--conditioning", "flare",
                 "--augment-flips", "0.5", "--train-batch-size", "4", "--max-train-steps", "2", "--lr-warmup-steps",
                 "0", "--checkpointing-steps", "2", "--validation-steps", "2", "--sample-steps", "0",
                 "--logger", "none"]) == 0
    pipe = SolarFlarePipeline.from_pretrained(out / "pipeline")
    assert pipe.unet.config.in_channels == 3 + FLARE_MAP_CHANNELS + AUGMENTATION_PLANES and pipe.conditioning == "flare"
    _, maps = pipe.flare_inputs([[{"position_px": (10.0, 20.0), "log10_peak_flux_goes_r": -4.5}]], 32)
    assert maps.shape == (1, FLARE_MAP_CHANNELS + AUGMENTATION_PLANES, 32, 32) and maps[0, FLARE_MAP_CHANNELS:].abs().max() == 0
    pipe.set_progress_bar_config(disable=True)
    images = pipe("M3", flare_position=(-475.0, 397.0), num_inference_steps=2, output_type="model",
                  generator=[torch.Generator().manual_seed(0)]).images
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all()
    assert json.loads((out / "run_settings.json").read_text())["augment_flips"] == 0.5


def test_dropout_acts_in_training_only_and_a_warm_start_keeps_the_weights(flare_days, tmp_path):
    from solar_diffusion import build_unet
    from solar_diffusion.cli import main
    from solar_diffusion.pipelines import AUGMENTATION_PLANES, with_flare_map
    from solar_diffusion.training.train_ddpm import init_from_pipeline

    common = ["--dataset", flare_days, "--preset", "tiny", "--conditioning", "flare", "--augment-flips", "0.5",
              "--train-batch-size", "4", "--max-train-steps", "2", "--lr-warmup-steps", "0", "--checkpointing-steps",
              "2", "--validation-steps", "0", "--sample-steps", "0", "--logger", "none"]
    assert main(["train", "--out", tmp_path / "a", *common]) == 0
    assert main(["train", "--out", tmp_path / "b", "--init-from", tmp_path / "a" / "pipeline", "--dropout", "0.2", *common]) == 0
    saved = SolarFlarePipeline.from_pretrained(tmp_path / "b" / "pipeline").unet
    assert saved.config.dropout == 0.2 and json.loads((tmp_path / "b" / "run_settings.json").read_text())["dropout"] == 0.2

    source = SolarFlarePipeline.from_pretrained(tmp_path / "a" / "pipeline").unet
    unet = init_from_pipeline(build_unet("tiny", 32, 0, 3, "flare", AUGMENTATION_PLANES, dropout=0.2), tmp_path / "a" / "pipeline",
                              {}, [171.0, 131.0, 94.0])
    assert all(torch.equal(a, b) for a, b in zip(unet.state_dict().values(), source.state_dict().values()))
    x = with_flare_map(torch.randn(2, 3, 32, 32), torch.rand(2, 2 + AUGMENTATION_PLANES, 32, 32))
    t, labels = torch.tensor([10, 500]), torch.tensor([0.3, -1.0])
    with torch.no_grad():
        unet.train()
        assert not torch.equal(unet(x, t, class_labels=labels).sample, unet(x, t, class_labels=labels).sample)
        unet.eval()  # as sampled: no dropout, the source's function
        assert torch.equal(unet(x, t, class_labels=labels).sample, source.eval()(x, t, class_labels=labels).sample)


def test_a_solar_rotation_turns_each_latitude_at_its_rate_and_carries_the_flare_with_it(flare_days):
    from astropy import units as u
    from sunpy.sun.models import differential_rotation

    from solar_diffusion.pipelines import disk_center_px, rsun_px
    from solar_diffusion.splits import dataset_geometry
    from solar_diffusion.training.data import random_solar_rotation, synodic_rotation_deg

    latitudes = np.array([0.0, 20.0, 40.0, 60.0])
    ours = synodic_rotation_deg(torch.deg2rad(torch.tensor(latitudes, dtype=torch.float64)), 2.0).numpy()
    sunpy_deg = differential_rotation(2 * u.day, latitudes * u.deg, model="howard", frame_time="synodic").to_value(u.deg)
    assert np.allclose(ours, sunpy_deg, atol=0.01), (ours, sunpy_deg)

    rows = load_split(flare_days, "train", columns=TRAINING_COLUMNS + ("flares",))
    collate = Collate(ClipLogNormalization.for_unit("browse"), 32, None, flare_sigma_px=0.7, dataset_size=32, raw=True)
    flaring = [i for i in range(len(rows)) if len(rows[i]["flares"]["x_px"])][:6]
    quiet = [i for i in range(len(rows)) if not len(rows[i]["flares"]["x_px"])][:4]
    images, labels, maps = collate([rows[i] for i in flaring + quiet])
    x = collate.to_model_space(images, augment=False)
    geometry = dataset_geometry(flare_days, 32)
    radius, (cx, cy) = rsun_px(geometry, 32), disk_center_px(geometry, 32)
    torch.manual_seed(0)
    days = torch.full((len(x),), 2.0)
    turned, turned_maps = random_solar_rotation(x, labels, maps, 1.0, radius, (cx, cy), days=days)
    assert torch.equal(random_solar_rotation(x, labels, maps, 0.0, radius, (cx, cy), days=days)[0], x)  # never asked

    cols, rows_ = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="xy")
    r = torch.sqrt((cols - cx) ** 2 + (rows_ - cy) ** 2)
    assert torch.equal(turned[..., r > radius + 1], x[..., r > radius + 1])  # the corona stays the frame's
    is_quiet = labels == NO_FLARE_CLASS_INPUT
    moved = 0
    for k in range(len(x)):
        if torch.equal(turned[k], x[k]):
            continue
        assert not torch.equal(turned[k, :, r < radius / 2], x[k, :, r < radius / 2])  # the centre turned
        # the limb's ring (and the band turned into view from the far side) is a flare-free frame's, not the frame's own
        band, disk = (r > 0.95 * radius) & (r < radius), (radius - r).clamp(0, 1)  # the disk's edge: its last pixel
        donors = [j for j in range(len(x)) if j != k and is_quiet[j] and torch.allclose(
            turned[k][:, band], (disk * x[j] + (1 - disk) * x[k])[:, band], atol=1e-6)]
        assert band.any() and donors, f"frame {k}: the limb's ring is no flare-free frame's"
        if maps[k, 0].max() > 0:
            moved += 1
            assert torch.isclose(turned_maps[k, 0].max(), maps[k, 0].max(), rtol=1e-5)  # the flux it says stays
            row, col = divmod(int(maps[k, 0].flatten().argmax()), 32)
            latitude = torch.asin(torch.tensor((row - cy) / radius, dtype=torch.float64))
            longitude = torch.asin((col - cx) / radius / torch.cos(latitude))
            expected = cx + radius * torch.cos(latitude) * torch.sin(
                longitude + torch.deg2rad(synodic_rotation_deg(latitude, 2.0)))
            new_row, new_col = divmod(int(turned_maps[k, 0].flatten().argmax()), 32)
            assert new_row == row and abs(new_col - float(expected)) <= 1.0, (k, col, new_col, float(expected))
            assert new_col > col  # west, with the Sun's rotation
    assert moved >= 2
    # a frame without a flare-free partner stays as it is
    alone, _ = random_solar_rotation(x[:6], labels[:6], maps[:6], 1.0, radius, (cx, cy), days=days[:6])
    assert torch.equal(alone, x[:6])
