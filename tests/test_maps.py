import astropy.units as u
import numpy as np
import pytest
import sunpy.map
import torch
from astropy.coordinates import SkyCoord

from solar_diffusion.maps import synthetic_map, write_fits
from solar_diffusion.pipelines import rsun_px


def test_fits_from_pipeline_output_opens_as_a_synthetic_aia_map(tiny_pipeline, tmp_path):
    out = tiny_pipeline(["X"], generator=[torch.Generator().manual_seed(7)], num_inference_steps=2,
                        output_type="physical")
    path = write_fits(tmp_path / "x.fits", out.images[0], out.metadata[0], model="tiny-test")
    aia = sunpy.map.Map(path)
    assert aia.wavelength == 171 * u.AA
    assert aia.unit == u.DN / u.s
    assert aia.meta["synthetc"] is True and aia.meta["origin"] == "solar-diffusion"
    assert aia.meta["flarecls"] == "X" and aia.meta["genseed"] == 7 and aia.meta["genmodel"] == "tiny-test"
    np.testing.assert_allclose(aia.data, out.images[0, 0])

    geometry = out.metadata[0]["geometry"]
    # The disk centre of the config is where the WCS puts Sun centre.
    centre = aia.wcs.world_to_pixel(SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=aia.coordinate_frame))
    np.testing.assert_allclose(centre, geometry["disk_center_px"], atol=1e-6)
    # And the solar radius of the config in pixels is the WCS's.
    assert (aia.rsun_obs / aia.scale.axis1).to_value(u.pix) == pytest.approx(rsun_px(geometry), rel=1e-6)
    limb = SkyCoord(aia.rsun_obs, 0 * u.arcsec, frame=aia.coordinate_frame)
    x, _ = aia.wcs.world_to_pixel(limb)
    assert x - geometry["disk_center_px"][0] == pytest.approx(rsun_px(geometry), rel=1e-3)


def test_map_scales_the_wcs_to_a_resized_image(tiny_pipeline):
    out = tiny_pipeline("C", num_inference_steps=1, output_type="physical")
    big = np.kron(out.images[0, 0], np.ones((2, 2), dtype=np.float32))
    aia = synthetic_map(big, out.metadata[0])
    assert (aia.rsun_obs / aia.scale.axis1).to_value(u.pix) == pytest.approx(2 * rsun_px(out.metadata[0]["geometry"]))


def test_model_space_images_are_refused(tiny_pipeline):
    out = tiny_pipeline("C", num_inference_steps=1, output_type="pt")
    with pytest.raises(ValueError, match="output_type='physical'"):
        synthetic_map(out.images[0].numpy(), out.metadata[0])
