"""Novelty guidance: a model keeps its training frames' layouts and steers each image away from
the nearest one while the noise is high, on the disk and away from the requested flares."""

import json

import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler

from solar_diffusion import SolarFlarePipeline, build_unet
from solar_diffusion.maps import disk_geometry
from solar_diffusion.pipelines import (NOVELTY_TARGET, layouts_tensor, model_output, novelty_push, predicted_x0,
                                       training_layouts)


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


def test_the_push_moves_an_image_away_from_its_nearest_layout_to_the_target_distance():
    checker = torch.tensor([[0.5, -0.5], [-0.5, 0.5]]).view(1, 1, 2, 2)
    layouts = torch.cat([checker, -checker])
    cells = 0.6 * checker  # 0.2 (RMS) from the first layout, 0.8 from the second
    x0 = torch.nn.functional.interpolate(cells, scale_factor=4)  # 8 x 8 px, uniform within each 4 px cell
    where = torch.ones(1, 1, 8, 8)
    where[..., :2, :2] = 0.0

    def layout_distance(image):
        return float((torch.nn.functional.avg_pool2d(image, 4) - checker).square().mean().sqrt())

    pushed = novelty_push(x0, layouts, 0.3, 4.0, where)
    assert torch.equal(pushed[..., :2, :2], x0[..., :2, :2])  # where it may not act, the image stays
    assert layout_distance(pushed) > layout_distance(x0) + 0.03  # farther from its nearest layout (0.2 -> 0.25)
    assert float(((pushed - x0) * where).sum()) == pytest.approx(0.0, abs=1e-5)  # the mean brightness stays
    assert torch.equal(novelty_push(x0, layouts, 0.1, 4.0, where), x0)  # already farther than asked: untouched
    # the push is (target / distance - 1) times the difference, at most max_push times: 0.5x here, 4x at most
    capped = novelty_push(x0, layouts, 10.0, 4.0, where)
    assert torch.allclose(capped - x0, 8 * (pushed - x0), atol=1e-5)
    # a flare's pixels are not measured: with one masked out, the rest moves as without it
    flared = x0.clone()
    flared[..., 0, 0] = 1.0
    assert torch.allclose(novelty_push(flared, layouts, 0.3, 4.0, where, where)[..., 2:, 2:], pushed[..., 2:, 2:],
                          atol=1e-6)


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
    # DDIM's 3 steps are at t = 666, 333 and 0: the guidance acts at the first two (t >= 150), not the last
    assert [t for t, _ in seen_c] == [666, 333, 0]
    assert not torch.allclose(seen_a[0][1], seen_c[0][1], atol=1e-3)


def test_the_guidance_leaves_the_sky_and_the_requested_flares_alone():
    pipe = _flare_pipe(_layouts())
    flare = {"position_px": [20.0, 12.0]}
    on_disk, off_flares = pipe._novelty_weights([[flare], []], 2, 32)
    assert on_disk.shape == off_flares.shape == (2, 1, 32, 32)
    assert on_disk[:, 0, 0, 0].tolist() == [0.0, 0.0] and on_disk[:, 0, 16, 16].tolist() == [1.0, 1.0]
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
    """The release model, same seeds: with its novelty guidance each image lies farther from its
    nearest training layout (8 px cells of the real January-June frames it keeps) than without."""
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
    own = pipe("M", num_images_per_class=4, generator=seeds, output_type="model", novelty_target=0.0).images
    seeds = [torch.Generator().manual_seed(k) for k in range(4)]
    guided = pipe("M", num_images_per_class=4, generator=seeds, output_type="model").images
    assert (nearest(guided) > 1.25 * nearest(own)).all(), (nearest(own), nearest(guided))  # 1.4-2.2x measured


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
