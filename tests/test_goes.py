"""GOES XRS flux: reading real files, the flux scale, quality, merging, and the fetch path.

Known answers are computed here independently: straight from the netCDF variables with
h5netcdf, or from sunpy's own reading of a file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5netcdf
import numpy as np
import pandas as pd
import pytest
import sunpy.timeseries
from sunpy.data.test import get_test_filepath

from solar_diffusion.dataset_builder.goes import GOESXRSSource, XRSFlux, flux_scale, read_xrs
from solar_diffusion.pipelines import GOES_R_SCALE, SWPC_SCALE, flare_letter

GOES16_DAYS = [f"2017090{d}" for d in range(4, 9)]
SUNPY_XRS_FILES = [
    "go1520110607.fits",
    "go1520120601.fits.gz",
    "sci_xrsf-l2-avg1m_g16_d20210101_truncated.nc",
    "sci_xrsf-l2-flx1s_g17_d20201016_truncated.nc",
    "sci_gxrs-l2-irrad_g13_d20170901_truncated.nc",
    "sci_gxrs-l2-irrad_g15_d20131028_truncated.nc",
    "goes_13_leap_second.nc",
    "sci_xrsf-l2-avg1m_g15_d20190102_truncated.nc",
]


@pytest.fixture(scope="module")
def goes16_files(shared_data) -> dict[str, Path]:
    """The real GOES-16 1-minute XRS files of 2017-09-04..08, by day (YYYYMMDD)."""
    folder = shared_data / "goes_xrs"
    files = {day: folder / f"sci_xrsf-l2-avg1m_g16_d{day}_v2-2-0.nc" for day in GOES16_DAYS}
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        pytest.skip(f"GOES-16 XRS files missing from {folder}: {missing}")
    return files


@pytest.fixture(scope="module")
def goes16(goes16_files) -> XRSFlux:
    return read_xrs(list(goes16_files.values()))


def sunpy_xrsb(path) -> pd.Series:
    """sunpy's XRS-B column of a file, as stored."""
    return sunpy.timeseries.TimeSeries(str(path)).to_dataframe()["xrsb"].astype(float)


# --------------------------------------------------------------------------------------------
# GOES-16 science data (goes-r scale) around the X9.3 flare of 2017-09-06
# --------------------------------------------------------------------------------------------


def test_flux_at_x93_peak_equals_netcdf_value(goes16, goes16_files, netcdf_xrsb):
    raw = netcdf_xrsb(goes16_files["20170906"])
    peak_time = pd.Timestamp("2017-09-06 12:02")
    expected = raw.loc[peak_time, "flux"]

    assert goes16.flux_at(peak_time)[0] == pytest.approx(expected, rel=1e-6)
    assert goes16.flux_at([peak_time + pd.Timedelta("20s")])[0] == pytest.approx(expected, rel=1e-6)
    assert flare_letter(goes16.flux_at("2017-09-06 12:02")[0]) == "X"
    # the day's largest flux is this peak; unscaled it is above the SWPC-scale X9.3 (9.3e-4)
    assert raw["flux"].idxmax() == peak_time
    assert expected > 9.3e-4


def test_goes16_files_are_on_goes_r_scale(goes16):
    assert [f.flux_scale for f in goes16.files] == [GOES_R_SCALE] * 5
    assert {f.satellite for f in goes16.files} == {"GOES-16"}
    assert all(f.cadence == pd.Timedelta("1min") for f in goes16.files)
    assert goes16.data.index.tz is None
    assert list(goes16.data.columns[:3]) == ["flux", "quality_ok", "satellite"]


def test_quality_follows_the_file_flag(goes16, goes16_files, netcdf_xrsb):
    raw = netcdf_xrsb(goes16_files["20170906"])
    good = ((raw["flag"] & 3) == 0) & (raw["flux"] > 0)  # good_data: flag_masks 3, value 0
    day = goes16.data.loc["2017-09-06"]
    assert (day["quality_ok"].to_numpy() == good.to_numpy()).all()
    assert (~good).sum() > 30  # the daily eclipse around 05:30 UT


def test_flux_at_skips_flagged_samples_and_gaps(goes16, goes16_files, netcdf_xrsb):
    raw = netcdf_xrsb(goes16_files["20170906"])
    bad = raw.index[(raw["flag"] & 3) != 0]
    first_bad = bad[0]
    # at the first flagged sample, the nearest good one (a minute earlier) is used
    expected = raw.loc[first_bad - pd.Timedelta("1min"), "flux"]
    assert goes16.flux_at(first_bad)[0] == pytest.approx(expected, rel=1e-6)
    # mid-eclipse, more than 5 minutes from any good sample
    middle = bad[len(bad) // 2]
    assert np.isnan(goes16.flux_at(middle)[0])
    assert not np.isnan(goes16.flux_at(middle, max_gap=pd.Timedelta("2h"))[0])
    # outside the files, and NaT
    assert np.isnan(goes16.flux_at(["2017-09-10 00:00", pd.NaT])).all()


def test_flux_at_accepts_aware_and_astropy_times(goes16):
    from astropy.time import Time

    naive = goes16.flux_at("2017-09-06 12:02")
    assert goes16.flux_at("2017-09-06T14:02:00+02:00") == pytest.approx(naive)
    assert goes16.flux_at(Time("2017-09-06T12:02:00", scale="utc")) == pytest.approx(naive)


def test_coverage_splits_at_eclipses(goes16, goes16_files, netcdf_xrsb):
    ranges = goes16.coverage()
    assert ranges[0][0] == pd.Timestamp("2017-09-04 00:00")
    assert ranges[-1][1] == pd.Timestamp("2017-09-08 23:59")
    assert len(ranges) == 6  # one eclipse gap a day
    for day, path in goes16_files.items():
        raw = netcdf_xrsb(path)
        middle = raw.index[(raw["flag"] & 3) != 0][30]
        assert not any(start <= middle <= end for start, end in ranges), day


# --------------------------------------------------------------------------------------------
# The files sunpy ships: every kind, and the swpc scale of the SDAC FITS files
# --------------------------------------------------------------------------------------------


def test_all_sunpy_xrs_files_read_with_their_scale():
    paths = [get_test_filepath(name) for name in SUNPY_XRS_FILES]
    with pytest.warns(Warning, match="leap second"):  # sunpy's own note on goes_13_leap_second.nc
        xrs = read_xrs(paths)
    scales = {Path(f.path).name: (f.satellite, f.flux_scale) for f in xrs.files}
    assert scales == {
        "go1520110607.fits": ("GOES-15", SWPC_SCALE),
        "go1520120601.fits.gz": ("GOES-15", SWPC_SCALE),
        "sci_xrsf-l2-avg1m_g16_d20210101_truncated.nc": ("GOES-16", GOES_R_SCALE),
        "sci_xrsf-l2-flx1s_g17_d20201016_truncated.nc": ("GOES-17", GOES_R_SCALE),
        "sci_gxrs-l2-irrad_g13_d20170901_truncated.nc": ("GOES-13", GOES_R_SCALE),
        "sci_gxrs-l2-irrad_g15_d20131028_truncated.nc": ("GOES-15", GOES_R_SCALE),
        "goes_13_leap_second.nc": ("GOES-13", GOES_R_SCALE),
        "sci_xrsf-l2-avg1m_g15_d20190102_truncated.nc": ("GOES-15", GOES_R_SCALE),
    }
    assert xrs.skipped == []
    assert len(xrs) == sum(f.n_samples for f in xrs.files)  # no overlaps among these


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # sunpy's FITS reader on pandas 3
def test_goes15_fits_flux_is_sunpy_value_over_0p7():
    path = get_test_filepath("go1520110607.fits")
    expected = sunpy_xrsb(path)
    xrs = read_xrs(path)
    got = xrs.data["flux"].to_numpy()
    assert got == pytest.approx(expected.to_numpy() / 0.7, rel=1e-6, nan_ok=True)
    # the M2.5 flare of 2011-06-07 (SWPC class) peaks at 2.56e-5 in the file, 3.65e-5 unscaled
    assert expected.max() == pytest.approx(2.5554e-5, rel=1e-4)
    assert xrs.data["flux"].max() == pytest.approx(expected.max() / 0.7)
    assert xrs.files[0].flux_scale == SWPC_SCALE
    assert xrs.data["quality_ok"].all() == bool((expected > 0).all())


@pytest.mark.parametrize(
    "name", ["sci_gxrs-l2-irrad_g15_d20131028_truncated.nc", "sci_xrsf-l2-avg1m_g15_d20190102_truncated.nc"]
)
def test_reprocessed_goes15_flux_is_unchanged(name):
    path = get_test_filepath(name)
    xrs = read_xrs(path)
    assert xrs.data["flux"].to_numpy() == pytest.approx(sunpy_xrsb(path).to_numpy(), rel=1e-6)
    assert xrs.files[0].flux_scale == GOES_R_SCALE


def test_electron_correction_bits_are_not_bad_data():
    # every XRS-B flag in this file is 16 (electron_correction_interp); good_data is flag & 7 == 0
    path = get_test_filepath("sci_xrsf-l2-avg1m_g15_d20190102_truncated.nc")
    with h5netcdf.File(path, "r") as nc:
        flags = np.asarray(nc["xrsb_flag"])
    assert set(flags.tolist()) == {16}
    assert read_xrs(path).data["quality_ok"].all()


def test_flux_scale_needs_evidence():
    with pytest.raises(ValueError, match="flux scale"):
        flux_scale({"title": "something"}, "unknown")


# --------------------------------------------------------------------------------------------
# Bad files are reported and skipped; overlaps are merged
# --------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")
@pytest.mark.parametrize("name", ["go1520110607.fits", "sci_gxrs-l2-irrad_g15_d20131028_truncated.nc"])
def test_truncated_file_is_reported_and_skipped(tmp_path, name):
    real = Path(get_test_filepath(name))
    truncated = tmp_path / real.name
    truncated.write_bytes(real.read_bytes()[:2048])
    other = get_test_filepath("sci_xrsf-l2-avg1m_g16_d20210101_truncated.nc")

    with pytest.warns(UserWarning, match=f"skipping GOES XRS file .*{real.name}"):
        xrs = read_xrs([truncated, other])

    assert [Path(f.path).name for f in xrs.files] == [Path(other).name]
    assert [Path(p).name for p, _ in xrs.skipped] == [real.name]
    assert flare_letter(xrs.flux_at("2021-01-01 23:00")[0]) == "A"


def test_flare_summary_and_image_files_are_not_xrs_flux(goes16_files, aia171_level1_file):
    summary = goes16_files["20170906"].with_name("sci_xrsf-l2-flsum_g16_d20170906_v2-2-0.nc")
    with pytest.warns(UserWarning, match="skipping GOES XRS file") as record:
        xrs = read_xrs([summary, aia171_level1_file, goes16_files["20170906"]])
    messages = " ".join(str(w.message) for w in record)
    assert summary.name in messages and aia171_level1_file.name in messages
    assert len(xrs.files) == 1 and len(xrs) == 1440


def test_same_file_twice_gives_no_duplicates(goes16_files):
    path = goes16_files["20170906"]
    once, twice = read_xrs(path), read_xrs([path, path])
    assert len(twice) == len(once)
    assert twice.data.index.is_unique


def test_overlap_prefers_good_samples(tmp_path, goes16_files, netcdf_xrsb):
    """A real-derived copy with every flag set to bad_data loses to the real file, first or not."""
    real = goes16_files["20170906"]
    flagged = tmp_path / "flagged" / real.name
    flagged.parent.mkdir()
    shutil.copy(real, flagged)
    with h5netcdf.File(flagged, "r+") as nc:
        nc["xrsb_flag"][...] = 2
    xrs = read_xrs([flagged, real])
    raw = netcdf_xrsb(real)
    good = ((raw["flag"] & 3) == 0) & (raw["flux"] > 0)
    assert len(xrs) == 1440 and xrs.data.index.is_unique
    assert int(xrs.data["quality_ok"].sum()) == int(good.sum())
    assert xrs.flux_at("2017-09-06 12:02")[0] == pytest.approx(raw.loc["2017-09-06 12:02", "flux"], rel=1e-6)


@pytest.mark.parametrize(
    ("primary", "winner", "factor"), [(None, "GOES-17", 2.0), ("GOES-16", "GOES-16", 1.0)]
)
def test_overlap_prefers_the_primary_satellite(tmp_path, goes16_files, primary, winner, factor, netcdf_xrsb):
    """A real-derived copy relabelled GOES-17 (flux doubled to tell it apart) overlaps the real day."""
    real = goes16_files["20170906"]
    relabelled = tmp_path / real.name.replace("_g16_", "_g17_")
    shutil.copy(real, relabelled)
    with h5netcdf.File(relabelled, "r+") as nc:
        nc.attrs["id"] = relabelled.name
        nc.attrs["platform"] = "g17"
        nc["xrsb_flux"][...] = 2 * np.asarray(nc["xrsb_flux"])
    xrs = read_xrs([real, relabelled], primary_satellite=primary)
    expected = netcdf_xrsb(real).loc["2017-09-06 12:02", "flux"] * factor
    assert len(xrs) == 1440
    assert set(xrs.data["satellite"]) == {winner}
    assert xrs.flux_at("2017-09-06 12:02")[0] == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------------------------
# GOESXRSSource: the fetch path, replayed from the real files
# --------------------------------------------------------------------------------------------


class ReplayFetch:
    """Returns the real file of each requested UTC day; fails the first call for some days."""

    def __init__(self, files_by_day, fail_once=(), fail_always=()):
        self.files_by_day = files_by_day
        self.fail_once = set(fail_once)
        self.fail_always = set(fail_always)
        self.calls = []

    def __call__(self, start, end):
        day = start.strftime("%Y%m%d")
        self.calls.append((start, end))
        if day in self.fail_always or day in self.fail_once:
            self.fail_once.discard(day)
            raise ConnectionError(f"replayed network failure for {day}")
        return [self.files_by_day[day]] if day in self.files_by_day else []


def test_source_fetches_each_day_and_retries(goes16_files, netcdf_xrsb):
    fetch = ReplayFetch(goes16_files, fail_once={"20170906"})
    waits = []
    source = GOESXRSSource(fetch=fetch, retries=3, sleep=waits.append)

    xrs = source.flux("2017-09-05 20:00", "2017-09-07 03:00")

    days = [start.strftime("%Y%m%d") for start, _ in fetch.calls]
    assert days == ["20170905", "20170906", "20170906", "20170907"]
    assert fetch.calls[0] == (pd.Timestamp("2017-09-05 20:00"), pd.Timestamp("2017-09-06 00:00"))
    assert waits == [2.0]
    assert xrs.data.index[0] == pd.Timestamp("2017-09-05 20:00")
    assert xrs.data.index[-1] == pd.Timestamp("2017-09-07 03:00")
    expected = netcdf_xrsb(goes16_files["20170906"]).loc["2017-09-06 12:02", "flux"]
    assert xrs.flux_at("2017-09-06 12:02")[0] == pytest.approx(expected, rel=1e-6)


def test_source_leaves_out_a_day_that_keeps_failing(goes16_files):
    fetch = ReplayFetch(goes16_files, fail_always={"20170906"})
    waits = []
    source = GOESXRSSource(fetch=fetch, retries=2, sleep=waits.append, backoff=1.0)

    with pytest.warns(UserWarning, match="2017-09-06 left out after 3 tries"):
        xrs = source.flux("2017-09-05", "2017-09-08")

    assert waits == [1.0, 2.0]
    assert np.isnan(xrs.flux_at("2017-09-06 12:02")[0])
    assert not np.isnan(xrs.flux_at("2017-09-05 12:02")[0])
    assert not np.isnan(xrs.flux_at("2017-09-07 12:02")[0])
    assert [day for day, _ in xrs.skipped] == ["2017-09-06"]


def test_source_rejects_an_empty_range():
    with pytest.raises(ValueError, match="after start"):
        GOESXRSSource(fetch=lambda s, e: []).flux("2017-09-06", "2017-09-06")


def test_default_fetch_builds_the_fido_query(tmp_path):
    from sunpy.net import attrs as a

    source = GOESXRSSource(download_dir=tmp_path)
    query = source.fetch.query("2017-09-06", "2017-09-07")
    assert source.fetch.download_dir == tmp_path
    assert any(isinstance(attr, a.Instrument) and attr.value.lower() == "xrs" for attr in query)
    assert any(isinstance(attr, a.Resolution) and attr.value == "avg1m" for attr in query)


@pytest.mark.live
def test_live_fido_one_day(tmp_path, request):
    markexpr = request.config.getoption("markexpr", "") or ""
    if "live" not in markexpr or "not live" in markexpr:
        pytest.skip("talks to NOAA through Fido: opt in with -m live")
    xrs = GOESXRSSource(download_dir=tmp_path, primary_satellite="GOES-16").flux(
        "2017-09-06 11:00", "2017-09-06 13:00"
    )
    assert xrs.files, xrs.skipped
    assert flare_letter(xrs.flux_at("2017-09-06 12:02")[0]) == "X"
    assert flare_letter(float(np.nanmax(xrs.data["flux"]))) == "X"
