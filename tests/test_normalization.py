import astropy.units as u
import numpy as np
import pytest
import sunpy.map
import torch

from solar_diffusion import ClipLogNormalization
from solar_diffusion.units import BROWSE, data_unit, to_model_space, to_quantity


def test_real_aia_level1_round_trip(aia171_level1_file):
    aia = sunpy.map.Map(aia171_level1_file)
    dn_per_s = (aia.data / aia.exposure_time.to_value(u.s)).astype(np.float32)
    norm = ClipLogNormalization()
    model = norm.forward(dn_per_s)
    assert model.min() >= -1 and model.max() <= 1
    # the real image has pixels below 5 DN/s (off-disk) that the clip changes
    assert (dn_per_s < norm.lo).any()
    np.testing.assert_allclose(norm.inverse(model), np.clip(dn_per_s, norm.lo, norm.hi), rtol=2e-6)


def test_torch_and_numpy_agree():
    norm = ClipLogNormalization()
    x = np.geomspace(1, 1e4, 50).astype(np.float32)
    # torch's and numpy's float32 log10 differ by an ulp or two, and by CPU (SIMD paths): in model
    # space that is an absolute error of ~1e-7, which a relative tolerance alone rejects at values
    # near 0. atol 1e-5 allows a few such errors and stays 400 times finer than one 8-bit grey level.
    np.testing.assert_allclose(norm.forward(torch.from_numpy(x)).numpy(), norm.forward(x), rtol=1e-5, atol=1e-5)
    assert norm.forward(np.float32(5.0)) == pytest.approx(-1.0)


def test_browse_is_linear_and_not_dn():
    norm = ClipLogNormalization.for_browse()
    assert norm.unit == "browse" and data_unit(norm) is BROWSE
    x = np.arange(256, dtype=np.float32)
    np.testing.assert_allclose(norm.inverse(norm.forward(x)), x, atol=1e-4)


def test_serialisation_round_trip():
    norm = ClipLogNormalization(lo=10, hi=8000)
    assert ClipLogNormalization.from_dict(norm.to_dict()) == norm


@pytest.mark.parametrize("kwargs", [dict(lo=5, hi=5), dict(lo=0, hi=10), dict(lo=np.nan, hi=10)])
def test_bad_bounds(kwargs):
    with pytest.raises(ValueError, match="lo"):
        ClipLogNormalization(**kwargs)


def test_units_at_the_boundary():
    norm = ClipLogNormalization()
    assert to_model_space(3.5 * u.DN / u.ms, norm) == pytest.approx(1.0)
    assert to_quantity(np.array([-1.0]), norm).to(u.DN / u.s).value == pytest.approx([5.0])
    with pytest.raises(u.UnitConversionError, match="DN / s"):
        to_model_space(3 * u.erg, norm)
