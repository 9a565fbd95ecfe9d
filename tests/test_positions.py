"""NOAA/HEK locations and SkyCoords to helioprojective arcsec, checked against HEK's own
positions of real flares."""

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from sunpy.coordinates import HeliographicStonyhurst

from solar_diffusion.positions import helioprojective_arcsec, parse_location


def _hek_2012(shared_data):
    hek = pd.read_csv(shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv").drop_duplicates()
    rows = hek[hek["GEV_PEAK"].str.startswith("2012-03") & hek["AIA_LOC"].notna()].head(40)
    return rows[[abs(parse_location(loc)[1]) < 70 for loc in rows["AIA_LOC"]]]


def test_real_flare_positions_go_round_trip(shared_data):
    """HEK's helioprojective centre of each flare, as a NOAA location (two decimals), comes back."""
    from sunpy.coordinates import Helioprojective, get_earth

    rows = _hek_2012(shared_data)
    assert len(rows) >= 20
    for _, row in rows.iterrows():
        observer = get_earth(row["GEV_PEAK"])
        hpc = SkyCoord(row["AIA_XCEN"] * u.arcsec, row["AIA_YCEN"] * u.arcsec,
                       frame=Helioprojective(observer=observer, obstime=observer.obstime))
        hgs = hpc.make_3d().transform_to(HeliographicStonyhurst(obstime=observer.obstime))
        lat, lon = hgs.lat.to_value(u.deg), hgs.lon.to_value(u.deg)
        location = f"{'N' if lat >= 0 else 'S'}{abs(lat):.2f}{'W' if lon >= 0 else 'E'}{abs(lon):.2f}"
        x, y = helioprojective_arcsec(location, row["GEV_PEAK"])
        assert np.hypot(x - row["AIA_XCEN"], y - row["AIA_YCEN"]) < 2.0, (row["GEV_PEAK"], location)


def test_hek_location_longitudes_agree_with_its_centres(shared_data):
    """HEK's AIA_LOC agrees with its AIA_XCEN in longitude; its latitudes do not match its YCEN in
    the Stonyhurst frame (off by about twice the B0 angle in March), so positions are taken from
    AIA_XCEN/AIA_YCEN, never from AIA_LOC."""
    rows = _hek_2012(shared_data)
    x_errors = [helioprojective_arcsec(loc, peak)[0] - xcen
                for loc, peak, xcen in zip(rows["AIA_LOC"], rows["GEV_PEAK"], rows["AIA_XCEN"])]
    assert np.median(np.abs(x_errors)) < 15  # whole-degree rounding: about 17 arcsec at disk centre


def test_skycoords_and_arcsec_pairs_and_the_far_side():
    coord = SkyCoord(-34 * u.deg, 29 * u.deg, frame=HeliographicStonyhurst(obstime="2012-03-07T00:24"))
    assert helioprojective_arcsec(coord, "2012-03-07T00:24") == pytest.approx(
        helioprojective_arcsec("N29E34", "2012-03-07T00:24"), abs=1e-6)
    assert helioprojective_arcsec((-475.0, 397.0), "2012-03-07") == (-475.0, 397.0)
    with pytest.raises(ValueError, match="behind the limb"):
        helioprojective_arcsec("S10E120", "2012-03-07")
    for bad in ("S15", "W01S15", "N95W10"):
        with pytest.raises(ValueError, match="NOAA location|at most 90"):
            parse_location(bad)


def test_command_line_positions_are_seen_at_the_date_asked_or_the_models(make_pipeline):
    """``--flare-position`` values: a NOAA location is converted at ``--date``, else at the model's
    nominal date; arcsec (a negative x too) and pixels pass as they are; a class model takes none."""
    from solar_diffusion.positions import flare_positions

    class FlareModel:
        conditioning = "flare"
        config = type("Config", (), {"geometry": {"date_obs": "2012-03-07T00:00:00"}})

    nominal, asked = (flare_positions(["S15W01", "-475,397", "px:20,9"], FlareModel(), date) for date in
                      (None, "2017-09-06"))
    assert nominal[0] == pytest.approx(helioprojective_arcsec("S15W01", "2012-03-07T00:00:00"))
    assert asked[0] == pytest.approx(helioprojective_arcsec("S15W01", "2017-09-06"))
    assert abs(asked[0][1] - nominal[0][1]) > 50  # B0 is -7.2 degrees in March, +7.2 in September
    assert nominal[1:] == asked[1:] == [(-475.0, 397.0), ("px", 20.0, 9.0)]
    with pytest.raises(ValueError, match="needs a flare model; this model is class-conditioned"):
        flare_positions(["S15W01"], make_pipeline())
