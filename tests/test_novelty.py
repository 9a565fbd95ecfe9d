"""Novelty guidance: a model keeps its training frames' layouts and steers each image away from
the nearest one while the noise is high, on the disk and in the corona, away from the requested
flares, keeping each region's brightness and contrast."""

import json

import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler

from solar_diffusion import SolarFlarePipeline, build_unet
from solar_diffusion.maps import disk_geometry
from solar_diffusion.novelty import training_layouts
from solar_diffusion.pipelines import NOVELTY_TARGET, layouts_tensor, model_output, novelty_push, predicted_x0


def _flare_pipe(novelty=None, scheduler=None) -> SolarFlarePipeline:
    torch.manual_seed(0)
    unet = build_unet("tiny", 32, num_labels=0, in_channels=3, conditioning="flare").eval()
    geometry = disk_geometry(32, rsun_px=32 / 2.3, date_obs="2012-03-07T00:00:00", wavelengths_angstrom=(171, 131, 94))
    pipe = SolarFlarePipeline(unet, scheduler or DDIMScheduler(), geometry=geometry,
                              flare_positions=[[-400.0, 250.0]], novelty=novelty)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _layouts(n=5, seed=1) -> dict:
    images = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return training_layouts(images, day_distance=0.1, pool_px=8)


def test_layouts_round_trip_to_8_bit_and_the_x0_conversions_invert():
    images = torch.rand(3, 2, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    novelty = training_layouts(images, day_distance=0.2, pool_px=4, target=1.5, max_push=3.0, until_timestep=300)
    assert (novelty["target"], novelty["max_push"], novelty["until_timestep"], novelty["pool_px"]) == (1.5, 3.0, 300, 4)
    assert torch.allclose(layouts_tensor(novelty), torch.nn.functional.avg_pool2d(images, 4), atol=1 / 254)
    json.dumps(novelty)  # it lives in model_index.json
    z, x0, a = torch.randn(2, 1, 4, 4), torch.rand(2, 1, 4, 4), torch.tensor(0.4)
    for kind in ("v_prediction", "epsilon", "sample"):
        assert torch.allclose(predicted_x0(model_output(x0, z, a, kind), z, a, kind), x0, atol=1e-5)
    with pytest.raises(ValueError, match="divisible by 8"):
        training_layouts(torch.zeros(1, 1, 12, 12), day_distance=0.1, pool_px=8)
    with pytest.raises(ValueError, match="day distance"):
        training_layouts(torch.zeros(1, 1, 8, 8), day_distance=0.0, pool_px=8)


def _mean_spread(image, mask):
    values = image[..., mask.bool()]
    return float(values.mean()), float(values.std(unbiased=False))


def test_the_push_moves_an_image_away_from_its_nearest_layout_keeping_its_brightness_and_contrast():
    checker = torch.tensor([[0.5, -0.5], [-0.5, 0.5]]).view(1, 1, 2, 2)
    layouts = torch.cat([checker, -checker])
    cells = 0.6 * checker + torch.tensor([[0.1, -0.1], [0.1, -0.1]]).view(1, 1, 2, 2)  # 0.22 (RMS) from the first
    x0 = torch.nn.functional.interpolate(cells, scale_factor=4)  # 8 x 8 px, uniform within each 4 px cell
    where = torch.ones(1, 1, 8, 8)
    where[..., :2, :2] = 0.0

    def layout_distance(image):
        return float((torch.nn.functional.avg_pool2d(image, 4) - checker).square().mean().sqrt())

    pushed = novelty_push(x0, layouts, 0.3, 4.0, where)
    assert torch.equal(pushed[..., :2, :2], x0[..., :2, :2])  # where it may not act, the image stays
    assert layout_distance(pushed) > layout_distance(x0) + 0.02  # farther from its nearest layout
    # where it acts, the mean brightness (the exposure) and the spread (the contrast) stay
    assert _mean_spread(pushed, where[0, 0]) == pytest.approx(_mean_spread(x0, where[0, 0]), abs=1e-5)
    assert torch.allclose(novelty_push(x0, layouts, 0.1, 4.0, where), x0, atol=1e-6)  # already farther: untouched
    # a farther target pushes farther, up to max_push times the difference
    assert layout_distance(novelty_push(x0, layouts, 10.0, 4.0, where)) > layout_distance(pushed) + 0.02
    assert torch.allclose(novelty_push(x0, layouts, 10.0, 4.0, where), novelty_push(x0, layouts, 20.0, 4.0, where))
    # a flare's pixels are not measured: with one masked out, the rest moves as without it
    flared = x0.clone()
    flared[..., 0, 0] = 1.0
    assert torch.allclose(novelty_push(flared, layouts, 0.3, 4.0, where, where)[..., 2:, 2:], pushed[..., 2:, 2:],
                          atol=1e-6)


def test_each_region_keeps_its_own_brightness_and_contrast():
    layouts = torch.rand(4, 2, 4, 4, generator=torch.Generator().manual_seed(2)) * 2 - 1
    x0 = torch.nn.functional.interpolate(layouts[:1], scale_factor=4) * 0.8 + 0.1  # near the first layout
    x0 = x0 + 0.05 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    disk = torch.zeros(16, 16)
    disk[4:12, 4:12] = 1.0
    regions = torch.stack([disk, 1 - disk])[None]
    pushed = novelty_push(x0, layouts, 1.0, 4.0, torch.ones(1, 1, 16, 16), regions=regions)
    assert not torch.allclose(pushed, x0, atol=1e-3)
    for region in (disk, 1 - disk):  # the disk and the corona each move, each keeping its own statistics
        for channel in range(2):
            assert not torch.allclose(pushed[0, channel][region.bool()], x0[0, channel][region.bool()], atol=1e-3)
            assert _mean_spread(pushed[0, channel], region) == pytest.approx(_mean_spread(x0[0, channel], region),
                                                                             abs=1e-5)


def _predictions(pipe, **call) -> list:
    """The (guided) UNet predictions the scheduler steps with, one per step."""
    seen, step = [], pipe.scheduler.step
    pipe.scheduler.step = lambda output, t, sample, **kw: seen.append((int(t), output.clone())) or step(output, t, sample,
                                                                                                          **kw)
    try:
        out = pipe(generator=torch.Generator().manual_seed(0), num_inference_steps=3, output_type="model", **call)
    finally:
        del pipe.scheduler.step
    return out, seen


def test_without_novelty_the_images_are_the_models_own_and_with_it_they_differ():
    plain = _flare_pipe()
    kept = _flare_pipe(_layouts())
    call = dict(flare_class="M2", flare_position=(300.0, -200.0))
    a, seen_a = _predictions(plain, **call)
    b, _ = _predictions(kept, novelty_target=0.0, **call)
    c, seen_c = _predictions(kept, novelty_target=50.0, **call)  # far beyond any layout: every step it may push
    assert torch.equal(a.images, b.images)
    assert a.metadata[0]["novelty_target"] == 0.0 and c.metadata[0]["novelty_target"] == 50.0
    assert kept(**call, num_inference_steps=1).metadata[0]["novelty_target"] == NOVELTY_TARGET  # the model's own
    # DDIM's 3 steps are at t = 666, 333 and 0: the guidance acts at the first two (t >= 60), not the last
    assert [t for t, _ in seen_c] == [666, 333, 0] and kept.config.novelty["until_timestep"] == 60
    assert not torch.allclose(seen_a[0][1], seen_c[0][1], atol=1e-3)
    novelty = kept.prepare_novelty(50.0, c.metadata[0]["flares"] and [c.metadata[0]["flares"]], 1, "cpu")
    sample, prediction = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    pushed = [novelty(prediction, sample, t, kept.scheduler.alphas_cumprod, "epsilon") for t in (60, 59, 0)]
    assert not torch.allclose(pushed[0], prediction, atol=1e-3)  # at the last timestep it acts
    assert torch.equal(pushed[1], prediction) and torch.equal(pushed[2], prediction)  # below it, left alone


def test_the_guidance_acts_on_the_disk_and_the_corona_apart_and_leaves_the_requested_flares_alone():
    pipe = _flare_pipe(_layouts())
    flare = {"position_px": [20.0, 12.0]}
    regions, off_flares = pipe._novelty_weights([[flare], []], 2, 32)
    assert regions.shape == (1, 2, 32, 32) and off_flares.shape == (2, 1, 32, 32)
    assert regions[0, :, 16, 16].tolist() == [1.0, 0.0] and regions[0, :, 0, 0].tolist() == [0.0, 1.0]
    assert (regions.sum(axis=1) == 1).all()  # every pixel in one region
    assert off_flares[0, 0, 12, 20] == 0.0 and off_flares[1, 0, 12, 20] == 1.0  # the flare's place, its image only
    assert off_flares[0, 0, 16, 10] == 1.0 and off_flares[0, 0, 0, 0] == 1.0


def test_bad_novelty_requests_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="novelty layouts are"):
        _flare_pipe(training_layouts(torch.zeros(2, 1, 32, 32), day_distance=0.1, pool_px=8))  # 1 channel, not 3
    plain, kept = _flare_pipe(), _flare_pipe(_layouts())
    with pytest.raises(ValueError, match="keeps no training layouts"):
        plain("M2", num_inference_steps=1, novelty_target=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        kept("M2", num_inference_steps=1, novelty_target=-1.0)
    euler = _flare_pipe(_layouts(), EulerDiscreteScheduler())
    with pytest.raises(ValueError, match="EulerDiscreteScheduler"):
        euler("M2", num_inference_steps=1, novelty_target=1.0)
    out = euler("M2", num_inference_steps=1, output_type="model")  # its default: off, and said so
    assert out.metadata[0]["novelty_target"] == 0.0


def test_the_bundled_model_draws_days_it_never_saw():
    """The release model, same seeds: with novelty guidance at 2 day distances (its default
    is 1 since 2026-12-08) each image lies farther from its nearest training layout (8 px
    cells of the real January-June frames it keeps) than without, and the median by a quarter at
    least (the retrained model: 1.19 to 2.5 times per image, the push moving least those already
    far from every training day)."""
    from solar_diffusion.defaults import BUNDLED_MODEL
    from solar_diffusion.generate import load_pipeline

    pipe = load_pipeline(BUNDLED_MODEL)
    pipe.set_progress_bar_config(disable=True)
    layouts = layouts_tensor(pipe.config.novelty).flatten(1)
    assert pipe.config.novelty["shape"][0] > 2000

    def nearest(images):
        cells = torch.nn.functional.avg_pool2d(images, pipe.config.novelty["pool_px"]).flatten(1)
        return torch.cdist(cells, layouts).min(dim=1).values / cells.shape[1] ** 0.5

    seeds = [torch.Generator().manual_seed(k) for k in range(4)]
    own = pipe("M", num_images_per_class=4, generator=seeds, output_type="model", novelty_target=0.0,
               image_size=64).images  # guidance off; the base stage, where the layouts are kept
    assert pipe.novelty_setting(None) == 1.0  # the model's own default (model_index.json)
    seeds = [torch.Generator().manual_seed(k) for k in range(4)]
    guided = pipe("M", num_images_per_class=4, generator=seeds, output_type="model", novelty_target=2.0,
                  image_size=64).images
    assert (nearest(guided) > nearest(own)).all(), (nearest(own), nearest(guided))
    assert nearest(guided).median() > 1.25 * nearest(own).median(), (nearest(own), nearest(guided))


def test_the_novelty_command_keeps_a_models_training_layouts(real_64, tiny_dataset, tmp_path, make_pipeline, capsys):
    from solar_diffusion.cli import main
    from solar_diffusion.hub import save_pipeline
    from solar_diffusion.pipelines import ClipLogNormalization
    from solar_diffusion.splits import load_split

    model = save_pipeline(make_pipeline(sample_size=16, normalization=ClipLogNormalization.for_unit("browse")),
                          tmp_path / "model")
    before = json.loads((model / "model_index.json").read_text())
    assert main(["novelty", "--model", str(model), "--dataset", str(real_64), "--pool-px", "5"]) == 2
    assert "--pool-px 5 does not divide the model's 16 px images" in capsys.readouterr().err
    assert main(["novelty", "--model", str(model), "--dataset", str(tiny_dataset)]) == 2  # 2012-03-07 and 03-09 only
    assert "spans no two frames more than 3 days apart" in capsys.readouterr().err
    assert json.loads((model / "model_index.json").read_text()) == before  # a refused run leaves the model alone
    assert main(["novelty", "--model", str(model), "--dataset", str(real_64), "--pool-px", "4", "--target", "1.5"]) == 0
    pipe = SolarFlarePipeline.from_pretrained(model)
    frames = len(load_split(real_64, "train", columns=("flare_class",)))
    assert pipe.config.novelty["shape"] == [frames, 1, 4, 4] and pipe.config.novelty["target"] == 1.5
    assert 0 < pipe.config.novelty["day_distance"] < 1  # real days of March 2012 more than 3 days apart
    assert main(["generate", "--model", str(model), "--flare-class", "X", "--num-images", "1", "--steps", "2",
                 "--out", str(tmp_path / "out"), "--novelty-target", "0.5"]) == 0
    settings = json.loads((tmp_path / "out" / "generation.json").read_text())
    assert settings["settings"]["novelty_target"] == 0.5 and settings["images"][0]["novelty_target"] == 0.5
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert main(["generate", "--model", str(model), "--flare-class", "X", "--num-images", "1", "--steps", "2",
                 "--out", str(tmp_path / "out"), "--novelty-target", "-1", "--overwrite"]) == 2
    assert "novelty_target must be a finite number >= 0, got -1.0" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before  # the earlier run is still there
