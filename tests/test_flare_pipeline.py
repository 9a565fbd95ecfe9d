"""The flare-conditioned pipeline: strength and position of each flare reach the UNet as a flare
map beside the image; positions in arcsec or pixels, drawn from the training flares, refused off
the disk; guidance's null condition is an empty map."""

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from solar_diffusion import SolarFlarePipeline, build_unet
from solar_diffusion.maps import disk_geometry
from solar_diffusion.pipelines import (
    FLARE_MAP_CHANNELS,
    FLARE_MAP_SIGMA_RSUN,
    FLARE_POSITION_SPREAD_RSUN,
    NO_FLARE_CLASS_INPUT,
    NULL_FLUX_CLASS_INPUT,
    flare_strength,
    flux_class_input,
    rsun_px,
)

TRAINING_FLARES = [[-400.0, 250.0], [300.0, -200.0], [100.0, 300.0]]


@pytest.fixture
def flare_pipe(tmp_path):
    torch.manual_seed(0)
    unet = build_unet("tiny", 32, num_labels=0, in_channels=3, conditioning="flare").eval()
    geometry = disk_geometry(32, rsun_px=32 / 2.3, date_obs="2012-03-07T00:00:00",
                             wavelengths_angstrom=(171, 131, 94))
    pipe = SolarFlarePipeline(unet, DDIMScheduler(), geometry=geometry, flare_positions=TRAINING_FLARES)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _unet_inputs(pipe, **call):
    seen = []
    hook = pipe.unet.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((args[0].clone(), kwargs["class_labels"].clone())), with_kwargs=True)
    try:
        out = pipe(num_inference_steps=2, output_type="model", **call)
    finally:
        hook.remove()
    return out, seen[0]


def test_a_flare_at_a_position_reaches_the_unet_as_a_mark_there(flare_pipe):
    assert flare_pipe.conditioning == "flare" and flare_pipe.unet.config.in_channels == 3 + FLARE_MAP_CHANNELS
    out, (x, labels) = _unet_inputs(flare_pipe, flare_class="M2.5", flare_position=(-400.0, 250.0),
                                    generator=[torch.Generator().manual_seed(1)])
    assert out.images.shape == (1, 3, 32, 32)
    flare = out.metadata[0]["flares"][0]
    assert flare["flare_class"] == "M2.5" and flare["position_arcsec"] == [-400.0, 250.0]
    col, row = flare["position_px"]
    assert col < 15.5 < row  # east (left) of centre, north (higher rows: FITS order)
    conditioned, null = x[1], x[0]  # guided: the null condition first
    mark = conditioned[3].numpy()
    assert np.unravel_index(mark.argmax(), mark.shape) == (round(row), round(col))
    sigma = FLARE_MAP_SIGMA_RSUN * 32 / 2.3
    offset2 = (round(col) - col) ** 2 + (round(row) - row) ** 2
    expected = flare_strength(np.log10(2.5e-5 / 0.7)) * np.exp(-offset2 / (2 * sigma**2))
    assert mark.max() == pytest.approx(expected, rel=1e-4)
    assert conditioned[4].min() == 1 and null[3:].abs().max() == 0  # the null map is empty and "not conditioned"
    assert labels.tolist() == [NULL_FLUX_CLASS_INPUT, pytest.approx(flux_class_input(np.log10(2.5e-5 / 0.7)), rel=1e-5)]


def test_moving_the_position_moves_the_mark_and_pixels_work_too(flare_pipe):
    marks = []
    for position in [(300.0, -200.0), ("px", 20.0, 9.0)]:
        _, (x, _) = _unet_inputs(flare_pipe, flare_class="X", flare_position=position, guidance_scale=1.0)
        mark = x[0, 3].numpy()
        marks.append(np.unravel_index(mark.argmax(), mark.shape))
    assert marks[0] != marks[1] and marks[1] == (9, 20)


def test_several_flares_in_one_image_and_quiet(flare_pipe):
    out, (x, labels) = _unet_inputs(flare_pipe, flares=[("C3", (300.0, -200.0)), ("X2", (-400.0, 250.0))],
                                    num_images_per_class=2, guidance_scale=1.0)
    assert [f["flare_class"] for f in out.metadata[0]["flares"]] == ["C3.0", "X2.0"]
    assert labels[0].item() == pytest.approx(flux_class_input(np.log10(2e-4 / 0.7)), rel=1e-5)  # the largest
    assert (x[0, 3] > 0.5).sum() > (x[0, 3] > 0.9).sum() > 0  # two marks, the X one higher
    _, (x, labels) = _unet_inputs(flare_pipe, flare_class="quiet", guidance_scale=1.0)
    assert labels.tolist() == [NO_FLARE_CLASS_INPUT] and x[0, 3].abs().max() == 0 and x[0, 4].min() == 1


def test_positions_are_drawn_from_the_training_flares_by_seed(flare_pipe):
    def drawn(seed):
        out = flare_pipe("M", generator=[torch.Generator().manual_seed(seed)], num_inference_steps=1, output_type="model")
        return out.metadata[0]["flares"][0]["position_arcsec"]

    assert drawn(3) == drawn(3)  # reproducible from the seed
    positions = np.array([drawn(s) for s in range(40)])
    rsun_arcsec = rsun_px(flare_pipe.config.geometry) * flare_pipe.config.geometry["plate_scale_arcsec"]
    nearest = np.min(np.hypot(*(positions[:, None, :] - np.array(TRAINING_FLARES)[None]).transpose(2, 0, 1)), axis=1)
    # around the training flares (spread 0.1 R_sun: 4 sigma), never exactly on one, always on the disk
    assert nearest.max() < 4 * FLARE_POSITION_SPREAD_RSUN * rsun_arcsec and nearest.min() > 0
    assert np.hypot(positions[:, 0], positions[:, 1]).max() <= 0.95 * rsun_arcsec
    assert len({tuple(p) for p in positions}) == 40


def test_bad_positions_are_refused_with_the_reason(flare_pipe, make_pipeline):
    with pytest.raises(ValueError, match="off the visible disk"):
        flare_pipe("X", flare_position=(1100.0, 0.0), num_inference_steps=1)
    with pytest.raises(ValueError, match="outside the 32 px image"):
        flare_pipe("X", flare_position=("px", 40.0, 3.0), num_inference_steps=1)
    with pytest.raises(ValueError, match="class-conditioned: it takes no flare positions"):
        make_pipeline()("X", flare_position=(0.0, 0.0), num_inference_steps=1)


def test_a_saved_flare_model_loads_with_its_flare_positions(flare_pipe, tmp_path):
    flare_pipe.save_pretrained(tmp_path / "flare-model")
    loaded = SolarFlarePipeline.from_pretrained(tmp_path / "flare-model")
    assert loaded.conditioning == "flare" and loaded.config.flare_positions == TRAINING_FLARES
    loaded.set_progress_bar_config(disable=True)
    a = loaded("X", flare_position=(0.0, 0.0), generator=[torch.Generator().manual_seed(0)], num_inference_steps=2,
               output_type="model").images
    b = flare_pipe("X", flare_position=(0.0, 0.0), generator=[torch.Generator().manual_seed(0)], num_inference_steps=2,
                   output_type="model").images
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_the_command_line_places_flares_given_as_noaa_locations_arcsec_or_pixels(flare_pipe, tiny_model_dir, tmp_path):
    import json

    from solar_diffusion.cli import main
    from solar_diffusion.positions import helioprojective_arcsec

    flare_pipe.save_pretrained(tmp_path / "flare-model")
    out = tmp_path / "out"
    assert main(["generate", "--model", str(tmp_path / "flare-model"), "--flare-class", "M2", "--flare-position",
                 "N17E31", "--flare-class", "X", "--flare-position", "px:20,9", "--flare-class", "C", "--num-images",
                 "1", "--steps", "2", "--out", str(out)]) == 0
    images = json.loads((out / "generation.json").read_text())["images"]
    flares = [image["flares"][0] for image in images]
    assert [f["flare_class"] for f in flares] == ["M2.0", "X3.2", "C3.2"]  # a bare letter: its decade's centre
    assert flares[0]["position_arcsec"] == pytest.approx(list(helioprojective_arcsec("N17E31", "2012-03-07T00:00:00")))
    assert flares[1]["position_px"] == [20.0, 9.0] and flares[2]["position_arcsec"] not in TRAINING_FLARES  # drawn
    assert main(["generate", "--model", str(tiny_model_dir), "--flare-position", "N17E31", "--steps", "1",
                 "--out", str(tmp_path / "no")]) == 2  # a class model takes no positions
    assert main(["generate", "--model", str(tmp_path / "flare-model"), "--flare-class", "X", "--flare-position",
                 "N10W95", "--steps", "1", "--out", str(tmp_path / "far")]) == 2  # behind the limb


def test_a_position_for_quiet_or_a_bad_later_request_fails_before_any_image_is_written(flare_pipe, tmp_path):
    from solar_diffusion.generate import generate_to_folder

    with pytest.raises(ValueError, match="for 'quiet'"):
        flare_pipe("quiet", flare_position=(0.0, 0.0), num_inference_steps=1)
    with pytest.raises(ValueError, match="off the visible disk"):
        generate_to_folder(flare_pipe, tmp_path / "out", flare_classes=["C", "X"], num_images=1, num_inference_steps=1,
                           flare_positions=[(0.0, 0.0), (2000.0, 0.0)])
    assert not list((tmp_path / "out").glob("*.png"))


def test_contact_sheets_per_channel_mark_the_requested_positions(flare_pipe, tmp_path):
    from PIL import Image

    from solar_diffusion.generate import generate_to_folder

    records = generate_to_folder(flare_pipe, tmp_path / "out", flare_classes=["M2", "X"], num_images=1,
                                 num_inference_steps=1, flare_positions=[(-400.0, 250.0), ("px", 20.0, 9.0)])
    assert [r["flares"][0]["position_px"][:2] for r in records][1] == [20.0, 9.0]
    sheets = {w: np.asarray(Image.open(tmp_path / "out" / f"contact_sheet_{w:04d}.png").convert("RGB"))
              for w in (171, 131, 94)}
    assert (tmp_path / "out" / "contact_sheet.png").exists()
    assert not np.array_equal(sheets[171], sheets[94])  # each channel in its own colour map

    def cyan(pixels):
        r, g, b = (pixels[..., k].astype(int) for k in range(3))
        return int(((g > 200) & (b > 200) & (r < 80)).sum())

    generate_to_folder(flare_pipe, tmp_path / "quiet", flare_classes=["quiet"], num_images=2, num_inference_steps=1)
    unmarked = np.asarray(Image.open(tmp_path / "quiet" / "contact_sheet_0171.png").convert("RGB"))
    assert cyan(sheets[171]) > 20 and cyan(unmarked) == 0


def test_the_bundled_model_puts_the_flare_where_it_is_asked():
    """The release model, same seeds, an X flare asked at A and at its mirror image B across the
    central meridian: in 94 and 131 Å the brightest 3x3 pixels at A are brighter when the flare is
    asked at A than when it is asked at B, and the same at B (the brightening follows the request)."""
    from solar_diffusion.defaults import BUNDLED_MODEL
    from solar_diffusion.flare_evaluation import flare_signature, positions_px
    from solar_diffusion.generate import load_pipeline, sample_batches

    pipe = load_pipeline(BUNDLED_MODEL)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.conditioning == "flare" and pipe.config.geometry["wavelengths_angstrom"] == [171.0, 131.0, 94.0]
    a, b = (-400.0, 250.0), (400.0, 250.0)
    at_a = next(sample_batches(pipe, ["X"] * 2, seed=11, positions=[a] * 2, image_size=64)).images  # base stage
    at_b = next(sample_batches(pipe, ["X"] * 2, seed=11, positions=[b] * 2, image_size=64)).images
    pa, pb = positions_px(pipe, [a, b])
    gain_a = flare_signature(at_a, [pa] * 2) - flare_signature(at_b, [pa] * 2)
    gain_b = flare_signature(at_b, [pb] * 2) - flare_signature(at_a, [pb] * 2)
    for channel in (1, 2):  # 131 and 94 Å
        assert (gain_a[:, channel] > 0.1).all() and (gain_b[:, channel] > 0.1).all(), (gain_a, gain_b)


def test_a_guidance_table_sets_each_images_scale_by_its_requested_flux(flare_pipe, tmp_path):
    """With a ``guidance_by_flux`` table and no scale given, each image is guided by its own
    flux's scale (the same image as asking that scale alone); a scale given overrides the table."""
    from solar_diffusion.pipelines import guidance_by_flux

    table = {"log10_flux": [-5.4, -4.4], "scale": [1.5, 3.0], "quiet": 2.0}
    pipe = SolarFlarePipeline(flare_pipe.unet, flare_pipe.scheduler, geometry=flare_pipe.config.geometry,
                              flare_positions=TRAINING_FLARES, guidance_by_flux=table)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.guidance_setting() is None and pipe.guidance_setting(4.0) == 4.0 and pipe.inference_steps() == 10
    where = [(-300.0, 200.0), (250.0, -150.0), None]
    seeds = [torch.Generator().manual_seed(k) for k in range(3)]
    out = pipe(["C3", "M5", "quiet"], flare_position=where, generator=seeds, num_inference_steps=2, output_type="model")
    scales = [m["guidance_scale"] for m in out.metadata]
    assert scales == guidance_by_flux(table, [m.get("flares", []) for m in out.metadata])
    assert 1.5 < scales[0] < 1.6 and scales[1:] == [3.0, 2.0]
    for k, (request, position) in enumerate(zip(["C3", "M5", "quiet"], where)):  # the same as asking that scale alone
        alone = pipe(request, flare_position=position, generator=torch.Generator().manual_seed(k), num_inference_steps=2,
                     output_type="model", guidance_scale=scales[k]).images
        torch.testing.assert_close(out.images[k:k + 1], alone, atol=1e-4, rtol=0)  # batched vs alone: float rounding
    given = pipe(["C3"], flare_position=[where[0]], generator=[torch.Generator().manual_seed(0)], num_inference_steps=2,
                 output_type="model", guidance_scale=3.0)
    assert given.metadata[0]["guidance_scale"] == 3.0 and not torch.allclose(given.images, out.images[:1], atol=1e-3)
    saved = tmp_path / "model"
    pipe.save_pretrained(saved)
    assert SolarFlarePipeline.from_pretrained(saved).config.guidance_by_flux == table
    for bad in ({"log10_flux": [-4.4, -5.4], "scale": [1.5, 3.0], "quiet": 3.0},
                {"log10_flux": [-5.4, -4.4], "scale": [1.5], "quiet": 3.0},
                {"log10_flux": [-5.4, -4.4], "scale": [1.5, float("nan")], "quiet": 3.0}):
        with pytest.raises(ValueError, match="guidance_by_flux needs increasing finite log10_flux"):
            SolarFlarePipeline(flare_pipe.unet, flare_pipe.scheduler, guidance_by_flux=bad)
    from solar_diffusion.cli import main

    assert main(["generate", "--model", str(saved), "--flare-class", "C3", "--flare-class", "M5", "--num-images", "1",
                 "--steps", "1", "--out", str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "generation.json").read_text())
    assert record["settings"]["guidance_scale"] is None and record["settings"]["guidance_by_flux"] == table
    assert [r["guidance_scale"] for r in record["images"]] == scales[:2]  # the same requests, the same scales
    # the table set from the command line, by class (SWPC scale) or GOES-R flux, read back by the pipeline
    assert main(["guidance-table", "--model", str(saved), "--point", "X1:3", "--point", "3.9e-6:1.5",
                 "--quiet", "2.5"]) == 0
    table = SolarFlarePipeline.from_pretrained(saved).config.guidance_by_flux
    assert table == {"log10_flux": [-5.4089, -3.8451], "scale": [1.5, 3.0], "quiet": 2.5}
    assert main(["guidance-table", "--model", str(saved), "--point", "M1:2"]) == 2  # no --quiet: refused, kept
    assert main(["guidance-table", "--model", str(saved), "--point", "M1:2", "--point", "M1.0:3", "--quiet", "1"]) == 2
    assert SolarFlarePipeline.from_pretrained(saved).config.guidance_by_flux == table
    assert main(["guidance-table", "--model", str(saved)]) == 0  # no points: the table removed
    assert SolarFlarePipeline.from_pretrained(saved).config.guidance_by_flux == {}
