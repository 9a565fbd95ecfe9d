"""The cascade's pipeline side: a flare model with an upscaler makes high-resolution images by
default (one ``from_pretrained``), super-resolves real low-resolution frames, chains a further
stage, and records the geometry of the size it wrote. The upscaler's training is in
``test_upscaler_training.py``."""

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler

from solar_diffusion import SolarFlarePipeline, build_unet
from solar_diffusion.maps import disk_geometry
from solar_diffusion.pipelines import noise_level_input, upsample


def test_a_cascade_makes_its_upscalers_size_by_default_and_the_base_size_when_asked(make_cascade):
    pipe = make_cascade()
    call = dict(flare_class="M5", flare_position=("px", 4.0, 10.0), num_inference_steps=2, output_type="model")
    high = pipe(**call, generator=[torch.Generator().manual_seed(3)])
    base = pipe(**call, generator=[torch.Generator().manual_seed(3)], image_size=16)
    assert high.images.shape == (1, 3, 32, 32) and base.images.shape == (1, 3, 16, 16)
    # the high-resolution image is the upsampled base image plus the residual times its spread
    tight = make_cascade(residual_std=1e-8)
    assert (tight(**call, generator=[torch.Generator().manual_seed(3)]).images
            - upsample(base.images, 32)).abs().max() < 1e-3
    assert (high.images - upsample(base.images, 32)).abs().max() > 0.1
    geometry = high.metadata[0]["geometry"]
    assert geometry["image_size"] == 32 and geometry["plate_scale_arcsec"] == pytest.approx(
        base.metadata[0]["geometry"]["plate_scale_arcsec"] / 2)
    assert high.metadata[0]["flares"][0]["position_px"] == [8.5, 20.5]  # the same place, in 32 px pixels
    assert base.metadata[0]["flares"][0]["position_px"] == [4.0, 10.0]
    with pytest.raises(ValueError, match="makes 16 or 32 px images, not 64 px"):
        pipe(**call, image_size=64)
    # a model can keep its base size as the default (its upscaler then runs when asked)
    pipe.register_to_config(upscaling=dict(pipe.config.upscaling, default_image_size=16))
    assert pipe.output_size() == 16 and pipe(**call, generator=[torch.Generator().manual_seed(3)]).images.shape[-1] == 16


def test_the_bundled_model_is_a_cascade_that_makes_256_px_by_default():
    """The bundled model's default output is its upscaler's 256 px (no ``default_image_size`` in
    its ``upscaling``); 64 px is its base stage, on request. A call at 256 px holds one image,
    one at 64 px sixteen (``default_batch_size``)."""
    from solar_diffusion.defaults import bundled_model
    from solar_diffusion.generate import default_batch_size

    if bundled_model() is None:
        pytest.skip("no bundled model in this checkout")
    pipe = SolarFlarePipeline.from_pretrained(bundled_model())
    assert "default_image_size" not in pipe.config.upscaling
    assert pipe.output_size() == 256 and pipe.output_size(64) == 64 and pipe.unet.config.sample_size == 64
    assert default_batch_size(pipe) == 1 and default_batch_size(pipe, 64) == 16


def test_the_upscaler_sees_the_flare_map_at_its_size_and_the_noise_level(make_cascade):
    pipe = make_cascade()
    seen = []
    hook = pipe.upscaler.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((args[0].clone(), kwargs["class_labels"].clone())), with_kwargs=True)
    try:
        pipe("X", flare_position=("px", 4.0, 10.0), num_inference_steps=1, generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    model_input, levels = seen[0]
    assert model_input.shape == (1, 8, 32, 32) and levels.tolist() == [pytest.approx(noise_level_input(0.05))]
    flare_channel = model_input[0, 6]
    y, x = np.unravel_index(int(flare_channel.argmax()), flare_channel.shape)
    assert (x, y) in {(8, 20), (9, 20), (8, 21), (9, 21)} and model_input[0, 7].min() == 1  # conditioned
    # a forecast model's flare is still to come: the base stage is told where, the upscaler draws none
    pipe.register_to_config(forecast={"horizon_hours": 24.0})
    seen.clear()
    hook = pipe.upscaler.register_forward_pre_hook(lambda m, args, kwargs: seen.append(args[0].clone()), with_kwargs=True)
    try:
        result = pipe("X", flare_position=("px", 4.0, 10.0), num_inference_steps=1, generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert seen[0][0, 6].abs().max() == 0 and seen[0][0, 7].min() == 1  # known: no flare in progress
    assert result.metadata[0]["forecast"] == {"horizon_hours": 24.0}
    assert result.metadata[0]["flares"][0]["position_px"] == [8.5, 20.5]


def test_real_low_resolution_frames_are_super_resolved_and_a_further_stage_chains(make_cascade, make_upscaler):
    pipe = make_cascade()
    low = torch.rand(2, 3, 16, 16) * 2 - 1  # "real" frames in model space
    high = pipe.super_resolve(low, generator=torch.Generator().manual_seed(0))
    assert high.shape == (2, 3, 32, 32) and torch.isfinite(high).all()
    # 16 -> 32 -> 64: the next stage is another pipeline's upscaler on this output
    torch.manual_seed(1)
    second = SolarFlarePipeline(build_unet("tiny", 32, num_labels=0, in_channels=3, conditioning="flare").eval(),
                                DDIMScheduler(), geometry=disk_geometry(32, rsun_px=32 / 2.3),
                                upscaler=make_upscaler(64, seed=1), upscaler_scheduler=DPMSolverMultistepScheduler(),
                                upscaling={"residual_std": 0.05, "num_inference_steps": 2})
    second.set_progress_bar_config(disable=True)
    highest = second.super_resolve(high, generator=torch.Generator().manual_seed(0))
    assert highest.shape == (2, 3, 64, 64)
    assert (highest - upsample(high, 64)).abs().mean() < (highest - upsample(low, 64)).abs().mean() + 0.5


def test_a_saved_cascade_loads_both_ways_and_a_bad_upscaler_is_refused(tmp_path, make_cascade, make_upscaler):
    pipe = make_cascade()
    pipe.save_pretrained(tmp_path / "cascade")
    loaded = SolarFlarePipeline.from_pretrained(tmp_path / "cascade")
    loaded.set_progress_bar_config(disable=True)
    call = dict(flare_class="M5", flare_position=("px", 4.0, 10.0), num_inference_steps=2, output_type="model")
    for name in ("unet", "upscaler"):  # the weights come back exactly
        saved, back = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert saved.keys() == back.keys() and all(torch.equal(saved[k], back[k]) for k in saved)
    a = pipe(**call, generator=[torch.Generator().manual_seed(1)]).images
    b = loaded(**call, generator=[torch.Generator().manual_seed(1)]).images
    # the same sampling; a CPU's kernels may sum in another order for another tensor layout (1.6e-5 seen)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    remote = DiffusionPipeline.from_pretrained(tmp_path / "cascade", custom_pipeline=str(tmp_path / "cascade"),
                                               trust_remote_code=True)
    assert type(remote).__name__ == "SolarFlarePipeline" and remote.upscaler.config.sample_size == 32
    with pytest.raises(ValueError, match="over this base model it needs 8 and 3"):
        SolarFlarePipeline(pipe.unet, pipe.scheduler, geometry=pipe.config.geometry, upscaler=make_upscaler(32, maps=0),
                           upscaler_scheduler=DPMSolverMultistepScheduler(), upscaling={"residual_std": 0.1})
    with pytest.raises(ValueError, match="residual_std"):
        SolarFlarePipeline(pipe.unet, pipe.scheduler, geometry=pipe.config.geometry, upscaler=make_upscaler(32),
                           upscaler_scheduler=DPMSolverMultistepScheduler(), upscaling={})


def test_the_cascade_evaluation_measures_generated_and_super_resolved_frames_against_real(flare_days, tmp_path,
                                                                                          capsys, make_cascade):
    from solar_diffusion.cascade_evaluation import by_group, evaluate_cascade, report_lines, write_report
    from solar_diffusion.fine_structure import block_peak
    from solar_diffusion.cli import main
    from solar_diffusion.hub import save_pipeline
    from solar_diffusion.pipelines import ClipLogNormalization

    from solar_diffusion.encoder import FlareClassifier

    browse = ClipLogNormalization(lo=0.0, hi=255.0, log=False, unit="browse").to_dict()
    pipe = make_cascade(normalization=browse)
    torch.manual_seed(0)
    encoder = FlareClassifier(id2label={0: "quiet", 1: "C"}, sample_size=32, in_channels=3, widths=(4, 8),
                              feature_dim=6, normalization=browse).eval()
    with pytest.raises(ValueError, match="the encoder reads 16 px"):
        evaluate_cascade(pipe, flare_days, "validation", encoder=FlareClassifier(
            id2label={0: "quiet"}, sample_size=16, in_channels=3, widths=(4,), feature_dim=4, normalization=browse))
    regression = make_cascade(normalization=browse, objective="regression")
    report = evaluate_cascade(pipe, flare_days, "validation", num_images=2, real_limit=6, batch_size=4,
                              encoder=encoder, control=regression)
    assert report["settings"]["real_frames"] == 6 and report["settings"]["real_days"] == 1
    assert "block_peak" not in report["real"]  # 59 cycles per image lie beyond a 32 px spectrum: not measured
    distances = report["encoder"]  # quiet and C: 2 generated each, so 4 against 4 real and 4 floor frames
    assert distances["n"] == 4
    assert distances["per_class"] == {"quiet": 2, "C": 2} and report["settings"]["distance_classes"] == ["quiet", "C"]
    from solar_diffusion.cascade_evaluation import encoder_section

    with pytest.raises(ValueError, match=r"distance classes \['B'\]: the generated images are of quiet, C, M, X"):
        encoder_section(encoder, pipe, flare_days, "validation", torch.zeros(2, 3, 32, 32), ["B", "B"], ["0", "1"],
                        None, {}, np.array(["d"]), classes=("B",))
    assert set(distances["frechet_distance"]) == {"real_train", "generated", "upscaler", "bicubic",
                                                  "bicubic_plus_shaped_noise", "control_upscaler"}
    assert all(f["low"] <= f["value"] <= f["high"] for f in distances["frechet_distance"].values())
    assert distances["frechet_distance"]["generated"]["n"][0] == 2  # two seeds, each a quiet and a C image
    assert set(distances["upscaler_minus_control"]) == {"bicubic", "bicubic_plus_shaped_noise", "control_upscaler"}
    assert all(v["value"] > 0 for v in distances["distance_to_original"].values())
    for figures in (report["generated"], *report["super_resolved"].values()):
        for channel in ("channel_0", "channel_1", "channel_2"):
            for figure in (*figures[channel]["power_ratio"].values(), figures[channel]["kurtosis"]):
                assert figure["low"] <= figure["value"] <= figure["high"]
        assert figures["consistency_rms"]["value"] >= 0
    controls = report["super_resolved"]
    # bicubic upsampling of the real frames: consistent with them at the base size, and blurred
    assert controls["bicubic"]["consistency_rms"]["value"] < 0.05
    assert controls["bicubic"]["channel_0"]["power_ratio"]["64-128"]["value"] < 0.5
    assert controls["bicubic_plus_shaped_noise"]["channel_0"]["power_ratio"]["64-128"]["value"] > \
        controls["bicubic"]["channel_0"]["power_ratio"]["64-128"]["value"]
    signature = report["flare_signature"]  # 5x5 within 6 px at 256 px: 1x1 within 0.75 px at 32 px
    assert signature["box_px"] == 1 and signature["radius_px"] == 0.75 and set(signature["classes"]) == {"quiet", "C", "M", "X"}
    assert signature["classes"]["M"]["generated"]["94"]["n"] == [2]
    assert signature["classes"]["X"]["real_at_hek_positions"]["94"]["n"][0] >= 1  # the X5.4 frames of the tiny build
    assert {"ordered", "m_within_real"} == set(signature["checks"]["131"])
    spread = report["seed_spread"]  # 8 seeds of one base frame draw different detail, less than zero never
    assert spread["seeds"] == 8 and all(v > 0 for v in spread["spread"]) and all(v > 0 for v in spread["real_detail_rms"])
    tiles = report["tiles"]  # 32 px outputs in 8 px tiles: the tiled run is another image, of the same frames
    assert tiles["tile_px"] == 8 and tiles["frames"] == 6 and set(tiles["rows"]) == {"whole_frame", "tiles_8px"}
    assert tiles["rows"]["whole_frame"]["rms_to_original"] != tiles["rows"]["tiles_8px"]["rms_to_original"]
    assert type(pipe.upscaler).__name__ == "UNet2DModel"  # put back
    memo = report["memorisation"]  # the training split's every frame, searched plain and with flips
    assert memo["held_out_frames"] == 6 and memo["train_frames"] > 6 and set(memo["classes"]) == {"quiet", "C", "M", "X"}
    for row in memo["classes"].values():
        plain, flips = row["over_real_plain"], row["over_real_with_flips"]
        assert plain["low"] <= plain["value"] <= plain["high"] and flips["low"] <= flips["value"] <= flips["high"]
        assert plain["n"] == [2, 1] and plain["value"] > 0
    assert memo["real_median_with_flips"]["value"] <= memo["real_median_plain"]["value"]  # more frames searched
    sweep = report["noise_level_sweep"]
    assert [row["noise_level"] for row in sweep] == [0.0, 0.05, 0.1, 0.2]
    assert all(row["rms_to_original"] > 0 and set(row["power_ratio"]) == {"32-64", "64-128"} for row in sweep)
    generated = [row["generated"] for row in sweep]  # the generated images (8: 2 per class) at each level
    assert all(set(g["power_ratio"]) == {"32-64", "64-128"} and len(g["kurtosis"]) == 3 for g in generated)
    assert generated[0]["consistency_rms"] != generated[-1]["consistency_rms"]  # the level reaches them
    text = write_report(report, tmp_path / "report").read_text()
    assert "## The browse JPEG blocks" not in text  # not measured at 32 px
    assert "Generated base images (the first of each class in turn, 8) super-resolved at each level" in text
    # at 256 px every set gets the block peak of its spectra (fine_structure.block_peak): the table
    spectra = np.ones((6, 3, 128))
    spectra[:, 0, 57:62] = 2.0
    with_peak = dict(report, real=dict(report["real"], block_peak={
        f"channel_{c}": by_group(lambda rows, c=c: float(block_peak(spectra)[rows, c].mean()), np.arange(6))
        for c in range(3)}))
    for figures in (with_peak["generated"], *with_peak["super_resolved"].values()):
        for c in range(3):
            figures[f"channel_{c}"]["block_peak"] = with_peak["real"]["block_peak"][f"channel_{c}"]
    lines = "\n".join(report_lines(with_peak))
    assert "| real | 2 [2, 2] | 1 [1, 1] | 1 [1, 1] |" in lines and "| generated | 2 [2, 2] |" in lines
    assert "The peak shows in the real frames (interval above 1) in: 171 Å." in lines
    assert "| generated | 171 Å |" in text and "super-resolved by bicubic plus shaped noise" in text
    assert "## Invented detail" in text and "| 0.2 |" in text and "## The flare at 32 px" in text
    assert "| tiles 8px |" in text and "## Copies? Distance to the nearest training frame at 32 px" in text
    assert "| real 16 px super-resolved by control upscaler | 171 Å |" in text
    with pytest.raises(ValueError, match="the control takes 16 px to 64 px .3 channels, 'browse'.; this cascade 16 "
                                         "px to 32 px"):
        evaluate_cascade(pipe, flare_days, "validation", control=make_cascade(size=64, normalization=browse))
    assert "## Fréchet distance in a 32 px encoder (2 quiet, 2 C of each set; n = 4 against 4 real validation " \
           "frames; intervals resample days and seeds)" in text
    model = save_pipeline(pipe, tmp_path / "cascade")
    assert main(["evaluate-cascade", "--model", str(model), "--dataset", str(flare_days), "--split", "validation",
                 "--num-images", "1", "--real-frames", "4", "--upscaler-steps", "1", "--spread-seeds", "2",
                 "--sweep-levels", "0.1", "--sweep-frames", "2", "--no-memorisation", "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "metrics.json").exists() and "report.md" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert "memorisation" not in metrics and metrics["settings"]["command"].startswith(
        f"solar-diffusion evaluate-cascade --model {model} --dataset")  # the command as typed, for the results page


def test_a_base_trained_with_flip_planes_takes_the_same_upscaler(make_upscaler):
    """A base model trained with ``--augment-flips`` has two more inputs (the flip planes, zero at
    sampling); its upscaler takes the flare map only, as over any flare model."""
    torch.manual_seed(0)
    unet = build_unet("tiny", 16, num_labels=0, in_channels=3, conditioning="flare", augmentation_planes=2).eval()
    geometry = disk_geometry(16, rsun_px=16 / 2.3, date_obs="2012-03-07T00:00:00", wavelengths_angstrom=(171, 131, 94))
    pipe = SolarFlarePipeline(unet, DDIMScheduler(), geometry=geometry, flare_positions=[[-400.0, 250.0]],
                              upscaler=make_upscaler(32), upscaler_scheduler=DPMSolverMultistepScheduler(),
                              upscaling={"residual_std": 0.1, "num_inference_steps": 2})
    pipe.set_progress_bar_config(disable=True)
    out = pipe("M5", num_inference_steps=2, output_type="model", generator=torch.Generator().manual_seed(0))
    assert unet.config.in_channels == 7 and out.images.shape == (1, 3, 32, 32)
