"""Python takes the command line's position forms: ``pipe("X", flare_position="S15W01")`` and a
``SkyCoord`` land where the command line's conversion (``positions.flare_positions``) puts them,
through the one sunpy conversion; the pipeline file alone refuses them with one line."""

import sys

import astropy.units as u
import pytest
import torch
from astropy.coordinates import SkyCoord
from sunpy.coordinates import HeliographicStonyhurst

from solar_diffusion import SolarFlarePipeline
from solar_diffusion.defaults import bundled_model
from solar_diffusion.positions import flare_positions

pytestmark = pytest.mark.skipif(bundled_model() is None, reason="no bundled model in this checkout")


@pytest.fixture(scope="module")
def pipe():
    pipe = SolarFlarePipeline.from_pretrained(bundled_model())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _flares(pipe, flare_class, flare_position):
    out = pipe(flare_class, flare_position=flare_position, num_inference_steps=2, output_type="model", image_size=64,
               generator=torch.Generator().manual_seed(0))
    return [record["flares"][0] for record in out.metadata]


def test_a_noaa_location_and_a_skycoord_land_where_the_command_line_puts_them(pipe):
    (cli,) = flare_positions(["S15W01"], pipe)  # the command line's conversion, at the model's nominal date
    date = pipe.config.geometry["date_obs"]
    coord = SkyCoord(1 * u.deg, -15 * u.deg, frame=HeliographicStonyhurst(obstime=date))
    for position in ("S15W01", coord):
        (flare,) = _flares(pipe, "X", position)
        assert flare["position_arcsec"] == pytest.approx(list(cli), abs=1e-6), position
    assert _flares(pipe, "X", tuple(cli))[0]["position_px"] == pytest.approx(flare["position_px"], abs=1e-9)
    assert cli[1] < -100  # 15 degrees south (B0 is -6 degrees in April): below the disk centre


def test_one_position_per_class_in_any_form(pipe):
    (noaa, arcsec) = flare_positions(["N20E45", "-475,397"], pipe)
    flares = _flares(pipe, ["M2", "X", "C"], ["N20E45", "-475,397", ("px", 20.0, 9.0)])
    assert flares[0]["position_arcsec"] == pytest.approx(list(noaa), abs=1e-6)
    assert flares[1]["position_arcsec"] == pytest.approx(list(arcsec), abs=1e-6)
    assert flares[2]["position_px"] == [20.0, 9.0]


@pytest.mark.parametrize("position, message", [("S15", "not a NOAA location"), ("N95W10", "at most 90"),
                                               ("S10E120", "behind the limb"), ("a,b", "is not a position")])
def test_a_bad_position_text_is_a_one_line_error(pipe, position, message):
    with pytest.raises(ValueError, match=message) as error:
        _flares(pipe, "X", position)
    assert "\n" not in str(error.value)


def test_without_the_package_a_noaa_location_or_skycoord_is_refused_in_one_line(pipe, monkeypatch):
    """The pipeline file loaded alone (a Hub ``pipeline.py``, no solar-diffusion installed): its one
    import of the package fails, and it says what to pass instead; arcsec and pixels still work."""
    monkeypatch.setitem(sys.modules, "solar_diffusion.positions", None)  # `import` now raises ImportError
    coord = SkyCoord(1 * u.deg, -15 * u.deg, frame=HeliographicStonyhurst(obstime="2012-04-04"))
    for position in ("S15W01", coord):
        with pytest.raises(ValueError, match=r"needs the solar-diffusion package \(sunpy\).*\(x, y\) or \('px', x, y\)") \
                as error:
            _flares(pipe, "X", position)
        assert "\n" not in str(error.value)
    assert _flares(pipe, "X", ("px", 20.0, 9.0))[0]["position_px"] == [20.0, 9.0]
