"""The fidelity measures on real AIA frames at 64 px: each statistic moves the way it should when a
real frame is given the defect it measures (grain, a dark pit beside the flare, dimmed bright
pixels, colour speckle, a squashed limb, a flipped copy of a training frame), and the criteria
read a report as the issue states them."""

import numpy as np
import pytest
import torch

from solar_diffusion import evaluation_keys as keys
from solar_diffusion.fidelity import (POWER_RATIO_RANGE, colour_speckle, darkest_near, fidelity_check, flare_pit,
                                      limb_fit, power_ratio, very_bright_ratio, very_bright_threshold)
from solar_diffusion.flare_evaluation import nearest_distances
from solar_diffusion.pipelines import disk_mask

FRAMES = ("20120119_1200_aia_171_131_094.jpg", "20120127_1200_aia_171_131_094.jpg",
          "20120307_1200_aia_171_131_094.jpg", "20120309_1200_aia_171_131_094.jpg",
          "20120613_1200_aia_171_131_094.jpg", "20120810_1200_aia_171_131_094.jpg")
CENTER = (31.5, 31.5)
CHANNELS = ["171", "131", "94"]


@pytest.fixture(scope="module")
def real(shared_data):
    """Six real 2012 browse composites (171, 131, 94 Å) of six days at 64 px, in model space, and the
    solar radius in pixels."""
    from solar_diffusion.dataset_builder.images import crop_and_resize, read_frame

    folder = shared_data / "sdo_browse_2012" / "images"
    paths = [folder / name for name in FRAMES if (folder / name).exists()]
    if len(paths) < 4:
        pytest.skip(f"the shared 2012 browse frames are not in {folder}")
    frames = [read_frame(p, channels=tuple(CHANNELS)) for p in paths]
    images, radii = zip(*(crop_and_resize(f, 64, limb_mask=None) for f in frames))
    data = np.stack(images).astype(np.float64) / 127.5 - 1  # browse brightness 0..255 to model space
    return data, float(np.median(radii)), np.array([p.name[:8] for p in paths])


def test_white_noise_raises_the_top_band_and_lowers_the_channel_agreement(real):
    images, radius, days = real
    seeds = np.arange(len(images))
    same = power_ratio(images, images, CENTER, radius, seeds, days, CHANNELS, n_boot=20)
    assert same["bands_cycles_per_image"] == [[2, 4], [4, 8], [8, 16], [16, 32]]  # 256 px bands at 64 px
    for w in CHANNELS:
        assert all(abs(row["value"] - 1) < 1e-9 for row in same["channels"][w].values())
    grainy = np.clip(images + np.random.default_rng(0).normal(scale=0.1, size=images.shape), -1, 1)
    ratio = power_ratio(grainy, images, CENTER, radius, seeds, days, CHANNELS, n_boot=20)["channels"]
    for w in CHANNELS:
        assert ratio[w]["16-32"]["value"] > POWER_RATIO_RANGE[1], (w, ratio[w])  # the grain is in the top band
        assert ratio[w]["16-32"]["low"] > 1
        assert abs(ratio[w]["2-4"]["value"] - 1) < 0.1  # the large scales are untouched
    speckle = colour_speckle(grainy, images, CENTER, radius, seeds, days, CHANNELS, n_boot=20)["pairs"]
    assert list(speckle) == ["171-131", "171-94", "131-94"]
    for name, row in speckle.items():
        assert row[keys.REAL_SPLIT]["value"] > 0.5, name  # real channels share their fine structure
        assert row[keys.GENERATED_MINUS_REAL]["high"] < -0.1, name  # independent noise per channel breaks it


def test_a_dark_pixel_beside_the_flare_is_found(real):
    images, radius, days = real
    where = [(40.0, 25.0)] * len(images)
    before = darkest_near(images, where)
    pitted = images.copy()
    pitted[:, 0, 25, 42] = -1.0  # a black 171 Å pixel 2 px right of the flare
    assert (darkest_near(pitted, where) == 0).all() and (before > 0).all()
    far = images.copy()
    far[:, 0, 25, 44] = -1.0  # 4 px away: outside the 3 px
    np.testing.assert_array_equal(darkest_near(far, where), before)
    assert (darkest_near(pitted[:, 1:], where) == darkest_near(images[:, 1:], where)).all()  # 131 Å untouched
    seeds = np.arange(len(images))
    pit = flare_pit(pitted, where, seeds, images, where, days, n_boot=20)
    assert pit["generated_below_real_min"]["value"] == 1.0
    assert pit["generated_median"]["value"] < pit["real_p10"]["value"] <= pit["real_median"]["value"]
    check = fidelity_check({"fidelity": {"pit": pit}})
    assert check["pit_median_at_least_real_p10"] is False and check["pit_at_most_10_percent_below_real_min"] is False
    assert fidelity_check({"fidelity": {"pit": flare_pit(images, where, seeds, images, where, days, n_boot=20)}}
                          )["pit_median_at_least_real_p10"] is True


def test_dimming_the_brightest_171_pixels_lowers_the_very_bright_ratio(real):
    images, radius, days = real
    mask = disk_mask(64, radius, center=CENTER)
    threshold = very_bright_threshold(images, mask, q=99.0)
    seeds = np.arange(len(images))
    same = very_bright_ratio(images, images, mask, threshold, seeds, seeds, n_boot=20)
    assert same["value"] == 1.0 and same["n"] == [len(images)]
    dimmed = images.copy()
    bright = (dimmed[:, 0] + 1) / 2 > threshold
    dimmed[:, 0][bright & (np.random.default_rng(0).random(bright.shape) < 0.5)] = 0.0  # half of them to mid-grey
    ratio = very_bright_ratio(dimmed, images, mask, threshold, seeds, seeds, n_boot=20)
    assert 0.3 < ratio["value"] < 0.7 and ratio["high"] < 0.9
    assert fidelity_check({"fidelity": {"very_bright": {keys.GENERATED: {"X": ratio}}}}
                          )["x_very_bright_at_least_0_9_of_quiet"] is False


def test_a_squashed_disk_has_a_larger_limb_residual(real):
    images, radius, _ = real
    fits = limb_fit(images, CENTER, radius)
    assert np.isfinite(fits).all()
    assert fits[:, 3].max() < 0.6  # px: real limbs are circles to a fraction of a pixel at 64 px
    assert np.hypot(fits[:, 0] - CENTER[0], fits[:, 1] - CENTER[1]).max() < 0.5  # where the builder centred them
    assert (np.abs(fits[:, 2] / radius - 1.04) < 0.03).all()  # the EUV limb's edge, just outside 1 R_sun
    squashed = torch.nn.functional.interpolate(torch.from_numpy(images), size=(54, 64), mode="bilinear",
                                               antialias=True, align_corners=False)
    squashed = torch.nn.functional.pad(squashed, (0, 0, 5, 5), value=-1.0).numpy()  # 85% as tall, sky above and below
    assert (limb_fit(squashed, CENTER, radius)[:, 3] > 2 * fits[:, 3].max()).all()
    shifted = limb_fit(np.roll(images, 2, axis=-1), CENTER, radius)  # 2 px right: near the rays' end at 1.13 R_sun
    assert (np.abs(shifted[:, 0] - fits[:, 0] - 2.0) < 0.5).all() and (np.abs(shifted[:, 1] - fits[:, 1]) < 0.3).all()


def test_a_flipped_training_frame_is_found_at_distance_0(real):
    images, _, _ = real
    train = torch.from_numpy(images).float()
    copies = torch.stack([train[0].flip(-1), train[1].flip(-2), train[2].flip(-2, -1)])
    assert (nearest_distances(copies, train, flips=True) == 0).all()
    assert (nearest_distances(copies, train) > 0.05).all()  # the plain search misses them
    np.testing.assert_array_equal(nearest_distances(train, train), 0)


def test_the_criteria_read_a_report_as_the_issue_states_them():
    def row(value, low=None, high=None):
        return {"value": value, "n": [32]} | ({} if low is None else {"low": low, "high": high})

    bands = {"2-4": row(1.0), "4-8": row(1.1), "8-16": row(1.2), "16-32": row(1.24)}
    flare = {
        "fidelity": {"size": 64, "num_per_class": 32,
                     "power_ratio": {"channels": {"171": bands, "131": bands | {"16-32": row(0.79)}}},
                     "pit": {"generated_median": row(0.30), "real_p10": row(0.28),
                             "generated_below_real_min": row(0.09)},
                     "very_bright": {keys.GENERATED: {"M": row(0.5), "X": row(0.91)}},
                     "limb": {"generated_within_real_max": row(1.0)}},
        "signature": {"classes": {"M": {keys.GENERATED: {"94": row(0.94), "171": row(0.80)},
                                        keys.REAL_AT_HEK_POSITIONS: {"94": row(0.83, 0.78, 0.88),
                                                                     "171": row(0.83, 0.78, 0.88)}}}},
        "memorisation": {"novelty_target": 2.0, "classes": {
            c: {keys.OVER_REAL_HELD_OUT_WITH_FLIPS: row(0.9), keys.OVER_REAL_HELD_OUT_WITH_FLIPS_WITHOUT_NOVELTY: row(v)}
            for c, v in (("M", 0.76), ("X", 0.74))}}}
    assert fidelity_check(flare) == {
        "at_64_px_with_32_per_class": True,
        "top_band_power_ratio_in_range": {"171": True, "131": False},
        "pit_median_at_least_real_p10": True,
        "pit_at_most_10_percent_below_real_min": True,
        "x_very_bright_at_least_0_9_of_quiet": True,
        "m_within_real_interval": {"94": False, "171": True},
        "limbs_within_real_max": True,
        "no_copies_with_flips_without_novelty": False,  # X 0.74 < 0.75 without novelty guidance
    }
    del flare["memorisation"]["novelty_target"]  # a run without novelty guidance: its own images are judged
    flare["fidelity"]["num_per_class"] = 16
    checks = fidelity_check(flare)
    assert checks["no_copies_with_flips_without_novelty"] is True and checks["at_64_px_with_32_per_class"] is False
    assert fidelity_check({}) == dict.fromkeys(checks)  # nothing measured
