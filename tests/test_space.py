"""The demo Space driven in headless Chromium on localhost: open the page, ask for an M2.5 flare at
S15W30, click Generate, wait for the images and check them and the FITS files it offers."""

import json
import urllib.request

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the Space needs gradio (pip install solar-diffusion[space])")
pytest.importorskip("selenium", reason="the browser test drives Chromium through selenium")

from space.browser import chromium_paths, generate_in_browser, start_space  # noqa: E402

pytestmark = pytest.mark.skipif(chromium_paths() is None,
                                reason="chromium and chromedriver are missing (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def space_url():
    demo, url = start_space()
    yield url
    demo.close()


def test_space_generates_a_flare_where_asked_in_a_real_browser(space_url, tmp_path):
    from astropy.io import fits

    from solar_diffusion.defaults import BUNDLED_MODEL
    from solar_diffusion.generate import load_pipeline
    from solar_diffusion.positions import helioprojective_arcsec

    result = generate_in_browser(space_url, "M2.5", "S15W30", seed=3, steps=2)
    assert "error" not in result, result
    assert len(result["images"]) == 3 and all(w > 50 and h > 50 for w, h in result["sizes"])
    request = json.loads(result["request"])
    pipe = load_pipeline(BUNDLED_MODEL)
    expected = helioprojective_arcsec("S15W30", pipe.config.geometry["date_obs"])
    assert request["flare_class"] == "M2.5" and request["seed"] == 3
    np.testing.assert_allclose(request["flares"][0]["position_arcsec"], expected, atol=0.5)
    wavelengths = []
    for k, href in enumerate(result["fits"]):
        path = tmp_path / f"{k}.fits"
        path.write_bytes(urllib.request.urlopen(href, timeout=30).read())
        with fits.open(path, checksum=True) as hdul:
            header, data = hdul[0].header, hdul[0].data
            assert header["DETECTOR"] == "AIA" and header["SYNTHETC"] and np.isfinite(data).all() and data.shape == (256, 256)
            wavelengths.append(int(header["WAVELNTH"]))
    assert sorted(wavelengths) == [94, 131, 171]


def test_space_shows_why_a_position_behind_the_limb_is_refused(space_url):
    result = generate_in_browser(space_url, "X", "S15W95", seed=0, steps=2)
    assert "behind the limb" in result.get("error", ""), result
