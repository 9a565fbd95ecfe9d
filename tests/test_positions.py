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
