import math

import pytest

from solar_diffusion import (
    GOES_R_SCALE,
    SWPC_SCALE,
    convert_flux_scale,
    flare_letter,
    format_flare_class,
    label_vocabulary,
    parse_flare_class,
)


@pytest.mark.parametrize(
    "flare_class, flux",
    [("A1.0", 1e-8), ("B3.2", 3.2e-7), ("C1", 1e-6), ("M2.5", 2.5e-5), ("X9.3", 9.3e-4), ("X17.2", 1.72e-3)],
)
def test_class_flux_round_trip(flare_class, flux):
    assert parse_flare_class(flare_class) == pytest.approx(flux, rel=1e-12)
    assert format_flare_class(flux) == (flare_class if "." in flare_class else flare_class + ".0")
    assert flare_letter(flux) == flare_class[0]


def test_bare_letter_and_lowercase():
    assert parse_flare_class("M") == pytest.approx(1e-5)
    assert parse_flare_class(" m2.5 ") == pytest.approx(2.5e-5)


def test_letter_boundaries():
    assert flare_letter(9.99e-6) == "C"
    assert flare_letter(1e-5) == "M"
    assert flare_letter(3e-9) == "A"  # below A1 is still the A range
    assert flare_letter(2e-3) == "X"


@pytest.mark.parametrize("bad", ["Q3", "", "M-2", "MM1", "3.5", "X0"])
def test_bad_classes_are_rejected(bad):
    with pytest.raises(ValueError, match="GOES"):
        parse_flare_class(bad)


@pytest.mark.parametrize("bad", [-1e-6, 0.0, math.nan, math.inf])
def test_bad_fluxes_are_rejected(bad):
    with pytest.raises(ValueError, match="positive finite"):
        flare_letter(bad)
    with pytest.raises(ValueError, match="positive finite"):
        convert_flux_scale(bad, SWPC_SCALE, GOES_R_SCALE)


def test_swpc_scaling():
    # An X1.0 in the SWPC lists (scaled by 0.7) is 1.43e-4 W m^-2 of GOES-R science flux.
    swpc_x1 = parse_flare_class("X1.0")
    true_flux = convert_flux_scale(swpc_x1, SWPC_SCALE, GOES_R_SCALE)
    assert true_flux == pytest.approx(1e-4 / 0.7)
    assert format_flare_class(true_flux) == "X1.4"
    # A GOES-R M9.8 is an X-class on neither scale but crosses to M6.9 on the SWPC one.
    assert format_flare_class(convert_flux_scale(9.8e-5, GOES_R_SCALE, SWPC_SCALE)) == "M6.9"
    assert convert_flux_scale(3e-6, GOES_R_SCALE, GOES_R_SCALE) == 3e-6
    with pytest.raises(ValueError, match="unknown GOES flux scale"):
        convert_flux_scale(3e-6, "goes-15", GOES_R_SCALE)


def test_label_vocabulary_orders_lowest_first():
    assert label_vocabulary(["X", "A", "quiet", "B"]) == {0: "quiet", 1: "A", 2: "B", 3: "X"}
    with pytest.raises(ValueError, match="unknown labels"):
        label_vocabulary(["C", "flare"])
