"""Flare-event sources on the real flare lists in ../shared/data, and HEK queries replayed from them.

Known answers are computed here from the raw files with the csv module (or read off the files
by eye, as noted), not with the code under test.
"""

from __future__ import annotations

import csv
import math
import urllib.error
import warnings

import numpy as np
import pandas as pd
import pytest
from astropy.table import MaskedColumn, Table
from astropy.time import Time

from solar_diffusion.dataset_builder.flares import (
    EVENT_COLUMNS,
    FlareListWarning,
    HEKFlareSource,
    HEKQueryError,
    hek_response_to_events,
    month_chunks,
    read_flare_list,
    read_goes16_summary,
    read_hek_csv,
    read_known_gaps,
    read_swpc_csv,
    report_gaps,
)
from solar_diffusion.pipelines import GOES_R_SCALE, SWPC_SCALE, convert_flux_scale, flare_letter

HEK_CSV = "flare_lists/hek_flares_2003-09_2023-12.csv"
HEK_GAPS = "flare_lists/hek_flares_empty_months.csv"
SWPC_CSV = "flare_lists/swpc_events_1996-2018.csv"
GOES16_CSV = "flare_lists/goes16_flare_summary_2017-2024.csv"
GOES16_NC = "goes_xrs/sci_xrsf-l2-flsum_g16_d20170906_v2-2-0.nc"
ISO = "%Y-%m-%dT%H:%M:%S"


def read_with_warnings(reader, path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        events = reader(path)
    return events, [w for w in caught if issubclass(w.category, FlareListWarning)]


def keys(events):
    """(start, peak, end, class) of each event, as text."""
    return set(zip(events["start"].dt.strftime(ISO), events["peak"].dt.strftime(ISO),
                   events["end"].dt.strftime(ISO), events["goes_class"]))


def raw_rows(path):
    """(line number, row dict) of a CSV file, read with the csv module."""
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        return [(reader.line_num, row) for row in reader]


@pytest.fixture(scope="module")
def hek(shared_data):
    return read_with_warnings(read_hek_csv, shared_data / HEK_CSV)


@pytest.fixture(scope="module")
def hek_raw(shared_data):
    return [row for _, row in raw_rows(shared_data / HEK_CSV)]


@pytest.fixture(scope="module")
def swpc(shared_data):
    return read_with_warnings(read_swpc_csv, shared_data / SWPC_CSV)


@pytest.fixture(scope="module")
def goes16(shared_data):
    return read_with_warnings(read_goes16_summary, shared_data / GOES16_CSV)


def one(events, **where):
    """The single event whose columns equal ``where`` (times as text)."""
    mask = np.ones(len(events), dtype=bool)
    for name, value in where.items():
        mask &= (events[name] == (pd.Timestamp(value) if name in ("start", "peak", "end") else value)).to_numpy()
    assert mask.sum() == 1, f"{mask.sum()} events match {where}"
    return events[mask].iloc[0]


# ------------------------------------------------------------------------------------------
# HEK CSV export
# ------------------------------------------------------------------------------------------


def test_hek_csv_is_the_common_table_of_the_unique_rows(hek, hek_raw):
    events, caught = hek
    assert tuple(events.columns) == EVENT_COLUMNS
    assert all(events[name].dtype == "datetime64[ns]" for name in ("start", "peak", "end"))
    assert events["peak_flux"].dtype == np.float64 and events["noaa_ar"].dtype == "Int64"
    assert events["start"].is_monotonic_increasing and (events["source"] == "hek").all()
    unique_rows = {(r["GEV_START"], r["GEV_PEAK"], r["GEV_END"], r["GOES_CLASS"]) for r in hek_raw}
    assert len(hek_raw) == 27422 and len(unique_rows) == 27422 - 17  # the export repeats 17 rows
    assert len(events) == len(unique_rows) and keys(events) == unique_rows
    assert caught == []  # every row parses, "X18+" included
    assert events["noaa_ar"].isna().all()  # the export has no active-region numbers


def test_hek_x_class_flares_of_2012(hek, hek_raw):
    events, _ = hek
    expected = {tuple(r.values())[:4] for r in hek_raw
                if r["GOES_CLASS"].startswith("X") and r["GEV_START"].startswith("2012")}
    got = events[(events["start"].dt.year == 2012) & events["goes_class"].str.startswith("X")]
    assert len(got) == len(expected) == 7
    # The letter of the GOES-R peak flux, back on the SWPC scale, is the published letter.
    letters = [flare_letter(convert_flux_scale(f, GOES_R_SCALE, SWPC_SCALE)) for f in got["peak_flux"]]
    assert letters == ["X"] * len(got)


def test_hek_x18_plus_is_kept_as_a_lower_bound(hek):
    events, _ = hek
    flare = one(events, start="2003-11-04 19:29", goes_class="X18+")
    assert flare["peak"] == pd.Timestamp("2003-11-04 19:44")
    assert flare["peak_flux"] == pytest.approx(1.8e-3 / 0.7)


# ------------------------------------------------------------------------------------------
# The X5.4 flare of 2012-03-07 in HEK and SWPC
# ------------------------------------------------------------------------------------------


def test_x54_of_2012_03_07_in_hek_and_swpc(hek, swpc):
    times = {"start": "2012-03-07 00:02", "peak": "2012-03-07 00:24", "end": "2012-03-07 00:40"}
    in_hek = one(hek[0], goes_class="X5.4", **times)
    in_swpc = one(swpc[0], goes_class="X5.4", **times)
    for flare in (in_hek, in_swpc):
        assert flare["peak_flux"] == pytest.approx(5.4e-4 / 0.7, rel=1e-9)
    assert (in_hek["hpc_x"], in_hek["hpc_y"]) == (-475.076, 397.083) and pd.isna(in_hek["noaa_ar"])
    assert in_swpc["noaa_ar"] == 11429 and math.isnan(in_swpc["hpc_x"])


# ------------------------------------------------------------------------------------------
# NOAA SWPC event list
# ------------------------------------------------------------------------------------------


def test_swpc_peak_after_midnight_is_on_the_next_day(swpc):
    events, _ = swpc
    # Line 84 of the file: start 1997-08-10 23:42, max_time 0003, end_time "1997-08-10 00:19".
    flare = one(events, start="1997-08-10 23:42")
    assert (flare["peak"], flare["end"]) == (pd.Timestamp("1997-08-11 00:03"), pd.Timestamp("1997-08-11 00:19"))
    assert flare["goes_class"] == "C5.5" and pd.isna(flare["noaa_ar"])  # noaa_ar 0: unknown


def test_swpc_times_and_regions_against_the_raw_rows(shared_data, swpc):
    events, _ = swpc
    with open(shared_data / SWPC_CSV, newline="") as stream:
        rows = list(csv.reader(stream))
    header, rows = rows[0], rows[1:]
    assert len(header) == 12 and {len(r) for r in rows} == {13}  # a leading index column has no name
    good = [r for r in rows if r[4] != "////"]
    assert len(events) == len(good) == 23285 - 14
    # The peak is on the next day exactly where max_time (HHMM) is earlier than the start's clock.
    after_midnight = sum(r[4] < r[3][11:16].replace(":", "") for r in good)
    assert after_midnight > 0
    next_day = events["peak"].dt.normalize() - events["start"].dt.normalize() == pd.Timedelta("1D")
    assert next_day.sum() == after_midnight
    assert (events["peak"] >= events["start"]).all() and (events["end"] - events["start"] < pd.Timedelta("1D")).all()
    # noaa_ar 0 means unknown.
    assert events["noaa_ar"].isna().sum() == sum(r[11].strip() == "0" for r in good)
    assert sorted(events["noaa_ar"].dropna().astype(int)) == sorted(int(r[11]) for r in good if r[11].strip() != "0")


def test_swpc_bad_peak_times_are_reported_not_fatal(shared_data, swpc):
    _, caught = swpc
    with open(shared_data / SWPC_CSV, newline="") as stream:
        reader = csv.reader(stream)
        bad_lines = [reader.line_num for row in reader if row[4] == "////"]  # index column first
    assert len(bad_lines) == 14 and len(caught) == 1
    message = str(caught[0].message)
    assert str(shared_data / SWPC_CSV) in message and "skipped 14 bad row(s)" in message
    assert all(f"line {n} " in message for n in bad_lines)


def test_swpc_decimal_comma_class(swpc):
    flare = one(swpc[0], start="1999-05-27 15:15")  # published as "C6,2"
    assert flare["goes_class"] == "C6.2" and flare["peak_flux"] == pytest.approx(6.2e-6 / 0.7)


# ------------------------------------------------------------------------------------------
# GOES-16 XRS flare summary
# ------------------------------------------------------------------------------------------


def test_goes16_summary_joins_start_peak_end(shared_data, goes16):
    events, caught = goes16
    rows = [row for _, row in raw_rows(shared_data / GOES16_CSV)]
    with_peak = {r["flare_id"] for r in rows if r["status"] == "EVENT_PEAK"}
    without_peak = {r["flare_id"] for r in rows} - with_peak
    assert len(events) == len(with_peak) == 9940
    assert len(caught) == 1
    assert f"skipped {len(without_peak)} flare_id(s) without an EVENT_PEAK" in str(caught[0].message)
    assert (events["source"] == "goes16_flsum").all() and (events["peak"] >= events["start"]).all()
    # A flare the next one ran into (no EVENT_END) ends where the next starts: lines 15-17.
    flare = one(events, start="2017-02-09 02:55")
    assert (flare["peak"], flare["end"]) == (pd.Timestamp("2017-02-09 02:59"), pd.Timestamp("2017-02-09 03:03"))


def test_2017_09_06_flare_in_goes16_hek_and_swpc(hek, swpc, goes16):
    """The same flare: X9.3 on the SWPC scale (HEK, SWPC), X14.6 in GOES-16 science data."""
    g16 = one(goes16[0], peak="2017-09-06 12:02")
    assert (g16["goes_class"], g16["start"], g16["end"]) == (
        "X14.6", pd.Timestamp("2017-09-06 11:52"), pd.Timestamp("2017-09-06 12:11"))
    assert g16["peak_flux"] == pytest.approx(0.0014662761, rel=1e-7)  # xrsb_flux as published, no 0.7
    for table in (hek[0], swpc[0]):
        flare = one(table, peak="2017-09-06 12:02", goes_class="X9.3")
        assert flare["peak_flux"] == pytest.approx(9.3e-4 / 0.7)
        assert abs(flare["peak_flux"] / g16["peak_flux"] - 1) < 0.15  # on one scale they agree
    assert abs(9.3e-4 / g16["peak_flux"] - 1) > 0.3  # without the 0.7 they would not


def test_goes16_netcdf_and_csv_agree(shared_data, goes16):
    from_nc, caught = read_with_warnings(read_goes16_summary, shared_data / GOES16_NC)
    from_csv = goes16[0]
    day = from_csv[(from_csv["start"] >= "2017-09-06") & (from_csv["start"] < "2017-09-07")]
    assert caught == [] and len(from_nc) == 11
    pd.testing.assert_frame_equal(from_nc, day.reset_index(drop=True), rtol=1e-6)
    assert one(from_nc, goes_class="X14.6")["peak"] == pd.Timestamp("2017-09-06 12:02")


# ------------------------------------------------------------------------------------------
# Reading any of them; bad files and bad rows
# ------------------------------------------------------------------------------------------


def head_copy(source, target, lines):
    with open(source) as stream:
        target.write_text("".join(stream.readline() for _ in range(lines)))
    return target


@pytest.mark.parametrize(
    ("name", "source", "count"),
    [(HEK_CSV, "hek", 50), (SWPC_CSV, "swpc", 50), (GOES16_CSV, "goes16_flsum", 15), (GOES16_NC, "goes16_flsum", 11)],
)
def test_read_flare_list_recognises_each_list(shared_data, tmp_path, name, source, count):
    path = shared_data / name
    if path.suffix == ".csv":  # the first 50 rows of the real file
        path = head_copy(path, tmp_path / path.name, 51)
    events = read_flare_list(path)
    assert tuple(events.columns) == EVENT_COLUMNS and len(events) == count and (events["source"] == source).all()


def test_read_flare_list_rejects_other_files(shared_data, tmp_path):
    with pytest.raises(ValueError, match=r"hek_flares_empty_months\.csv.*read_known_gaps"):
        read_flare_list(shared_data / HEK_GAPS)
    xrs = shared_data / "goes_xrs" / "sci_xrsf-l2-avg1m_g16_d20170906_v2-2-0.nc"
    with pytest.raises(ValueError, match=r"avg1m_g16_d20170906.*not a GOES-R XRS flare summary"):
        read_flare_list(xrs)
    with pytest.raises(ValueError, match=r"sdo_aia171_2010_2023/index\.csv: not a known flare list"):
        read_flare_list(shared_data / "sdo_aia171_2010_2023" / "index.csv")
    with pytest.raises(FileNotFoundError, match="no_such_list.csv"):
        read_flare_list(tmp_path / "no_such_list.csv")
    not_netcdf = tmp_path / "flsum.nc"
    not_netcdf.write_text("time,status\n")
    with pytest.raises(ValueError, match=r"flsum\.nc: not a netCDF-4"):
        read_flare_list(not_netcdf)


def test_bad_rows_are_skipped_and_named(shared_data, tmp_path):
    lines = open(shared_data / HEK_CSV).readlines()[:6]
    lines[2] = lines[2].replace("2003-09-25T13:08:00", "2003-09-25T25:08:00")  # line 3: bad start
    lines[3] = lines[3].replace('"C1.1"', '"Q1.1"')  # line 4: bad class
    lines[4] = lines[4].rsplit(",", 3)[0] + "\n"  # line 5: too few fields
    path = tmp_path / "hek_broken.csv"
    path.write_text("".join(lines))
    events, caught = read_with_warnings(read_hek_csv, path)
    assert len(events) == 2 and len(caught) == 2
    messages = " | ".join(str(w.message) for w in caught)
    assert str(path) in messages
    assert "line 3 (start '2003-09-25T25:08:00' does not parse)" in messages
    assert "line 4 (class 'Q1.1' does not parse)" in messages and "line 5 (4 fields, expected 7)" in messages


def test_swpc_bad_end_time_is_named(shared_data, tmp_path):
    lines = open(shared_data / SWPC_CSV).readlines()[:4]
    lines[2] = lines[2].replace("1996-08-07 23:24:00", "1996-08-07 23:24:xx")  # line 3: bad end
    path = tmp_path / "swpc_broken.csv"
    path.write_text("".join(lines))
    with pytest.warns(FlareListWarning, match=r"swpc_broken\.csv: skipped 1 bad row\(s\): line 3 \(end '1996-08-07"):
        events = read_swpc_csv(path)
    assert events["start"].tolist() == [pd.Timestamp("1996-08-06 19:10"), pd.Timestamp("1996-08-22 07:34")]


# ------------------------------------------------------------------------------------------
# Known gaps
# ------------------------------------------------------------------------------------------


def test_known_gaps_are_empty_in_the_export(shared_data, hek):
    gaps = read_known_gaps(shared_data / HEK_GAPS)
    assert len(gaps) == len(open(shared_data / HEK_GAPS).read().split()) // 3 == 50
    assert gaps[0] == (pd.Timestamp("2004-01-29"), pd.Timestamp("2004-02-28"))
    assert gaps[-1] == (pd.Timestamp("2023-11-15"), pd.Timestamp("2023-12-15"))
    starts = hek[0]["start"]
    assert not any(((starts >= a) & (starts < b)).any() for a, b in gaps)


def test_report_gaps_clips_and_merges_known_gaps(shared_data, hek):
    gaps = read_known_gaps(shared_data / HEK_GAPS)
    assert report_gaps(hek[0], "2004-01-01", "2004-04-30", gaps) == [
        (pd.Timestamp("2004-01-29"), pd.Timestamp("2004-02-28")),
        (pd.Timestamp("2004-03-29"), pd.Timestamp("2004-04-30")),  # two abutting gaps, clipped
    ]
    assert report_gaps(hek[0], "2012-01-01", "2013-01-01", gaps) == []


def test_report_gaps_finds_a_hole_the_gap_list_misses(shared_data, hek, swpc):
    gaps = read_known_gaps(shared_data / HEK_GAPS)
    assert report_gaps(hek[0], "2014-04-01", "2014-06-01", gaps) == []
    holes = report_gaps(hek[0], "2014-04-01", "2014-06-01", gaps, max_quiet="7D")
    assert len(holes) == 1
    start, end = holes[0]
    assert pd.Timestamp("2014-04-18") < start < pd.Timestamp("2014-04-19") and end == pd.Timestamp("2014-05-23 04:51")
    in_hole = swpc[0][(swpc[0]["start"] > start) & (swpc[0]["start"] < end)]
    assert len(in_hole) > 100  # NOAA lists over a hundred C/M flares there: a hole in the export


# ------------------------------------------------------------------------------------------
# HEK online, replayed from the real export
# ------------------------------------------------------------------------------------------


class ReplayedHEK:
    """A HEK search serving the real HEK export's GOES flares as HEK responses.

    Like HEK, it returns the events overlapping ``[start, end]``, with HEK's column names (an
    astropy Table with Time columns as sunpy's ``HEKClient.search`` gives, or that table as a
    DataFrame). ``failures`` maps a chunk start to how many times that chunk fails first.
    """

    def __init__(self, export: pd.DataFrame, as_frame=False, failures=None):
        self.export = export
        self.as_frame = as_frame
        self.failures = {pd.Timestamp(k): v for k, v in (failures or {}).items()}
        self.calls = []
        self.rows_served = 0

    def __call__(self, start, end):
        self.calls.append((start, end))
        left = self.failures.get(start, 0)
        if left > 0:
            self.failures[start] = left - 1
            raise TimeoutError("timed out") if left % 2 else urllib.error.URLError("connection reset")
        rows = self.export[(self.export["t_end"] >= start) & (self.export["t_start"] <= end)]
        self.rows_served += len(rows)
        table = Table()
        table["event_type"] = ["FL"] * len(rows)
        table["frm_name"] = ["SSW Latest Events"] * len(rows)
        for theirs, ours in [("event_starttime", "GEV_START"), ("event_peaktime", "GEV_PEAK"),
                             ("event_endtime", "GEV_END")]:
            table[theirs] = Time(list(rows[ours]), format="isot", scale="utc")
        table["fl_goescls"] = list(rows["GOES_CLASS"])
        table["hpc_x"] = rows["AIA_XCEN"].to_numpy(float)
        table["hpc_y"] = rows["AIA_YCEN"].to_numpy(float)
        table["ar_noaanum"] = MaskedColumn(np.zeros(len(rows), int), mask=np.ones(len(rows), bool))
        return table.to_pandas() if self.as_frame else table


@pytest.fixture(scope="module")
def hek_export(shared_data):
    export = pd.read_csv(shared_data / HEK_CSV, dtype=str)
    return export.assign(t_start=pd.to_datetime(export["GEV_START"]), t_end=pd.to_datetime(export["GEV_END"]))


def overlapping(export, start, end):
    rows = export[(export["t_end"] >= pd.Timestamp(start)) & (export["t_start"] <= pd.Timestamp(end))]
    return set(zip(rows["GEV_START"], rows["GEV_PEAK"], rows["GEV_END"], rows["GOES_CLASS"]))


def test_month_chunks():
    assert len(month_chunks("2011-01-01", "2013-01-01")) == 24
    one_chunk = [(pd.Timestamp("2012-03-05 12:00"), pd.Timestamp("2012-03-06"))]
    assert month_chunks("2012-03-05 12:00", "2012-03-06") == one_chunk


@pytest.mark.parametrize("as_frame", [False, True], ids=["astropy", "pandas"])
def test_hek_multi_year_query_is_split_into_months(hek_export, as_frame):
    search = ReplayedHEK(hek_export, as_frame=as_frame)
    waits = []
    events = HEKFlareSource(search=search, sleep=waits.append).events("2011-01-01", "2013-01-01")
    assert search.calls == month_chunks("2011-01-01", "2013-01-01") and len(search.calls) == 24
    assert search.calls[0] == (pd.Timestamp("2011-01-01"), pd.Timestamp("2011-02-01"))
    expected = overlapping(hek_export, "2011-01-01", "2013-01-01")
    assert search.rows_served > len(expected)  # flares across a month boundary came twice
    assert len(events) == len(expected) and keys(events) == expected and waits == []
    assert tuple(events.columns) == EVENT_COLUMNS and events["start"].is_monotonic_increasing
    x54 = one(events, goes_class="X5.4")
    assert (x54["hpc_x"], x54["peak_flux"]) == (-475.076, pytest.approx(5.4e-4 / 0.7))
    assert events["noaa_ar"].isna().all()


def test_hek_failed_chunk_is_retried_with_backoff(hek_export):
    search = ReplayedHEK(hek_export, failures={"2012-03-01": 2})
    waits = []
    source = HEKFlareSource(search=search, retries=3, backoff=2.0, sleep=waits.append)
    events = source.events("2012-02-01", "2012-05-01")
    assert waits == [2.0, 4.0]
    assert [c[0] for c in search.calls].count(pd.Timestamp("2012-03-01")) == 3
    assert keys(events) == overlapping(hek_export, "2012-02-01", "2012-05-01")


def test_hek_chunk_that_always_fails_is_named(hek_export):
    waits = []
    source = HEKFlareSource(search=ReplayedHEK(hek_export, failures={"2012-03-01": math.inf}), sleep=waits.append)
    with pytest.raises(HEKQueryError, match=r"chunk 2012-03-01T00:00:00\.\.2012-04-01T00:00:00 failed after 4 tries"):
        source.events("2012-02-01", "2012-05-01")
    assert waits == [2.0, 4.0, 8.0]

    with pytest.warns(FlareListWarning, match=r"2012-03-01T00:00:00\.\.2012-04-01T00:00:00"):
        events = source.events("2012-02-01", "2012-05-01", on_error="warn")
    assert source.failed_chunks == [(pd.Timestamp("2012-03-01"), pd.Timestamp("2012-04-01"))]
    expected = overlapping(hek_export, "2012-02-01", "2012-03-01") | overlapping(hek_export, "2012-04-01", "2012-05-01")
    assert keys(events) == expected
    assert not ((events["start"] > "2012-03-02") & (events["end"] < "2012-03-31")).any()


def test_hek_response_with_a_bad_row(hek_export):
    table = ReplayedHEK(hek_export)(pd.Timestamp("2012-03-07"), pd.Timestamp("2012-03-08"))
    table["fl_goescls"] = table["fl_goescls"].astype(object)
    table["fl_goescls"][0] = ""
    message = r"HEK chunk X: skipped 1 bad row\(s\): row 0 \(class '' does not parse\)"
    with pytest.warns(FlareListWarning, match=message):
        events = hek_response_to_events(table, where="HEK chunk X")
    assert len(events) == len(table) - 1
    assert len(hek_response_to_events(Table())) == 0


@pytest.mark.live
def test_live_hek_one_day(request):
    if "live" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("talks to HEK: run with -m live")
    events = HEKFlareSource(timeout=60, retries=2).events("2012-03-07", "2012-03-08")
    assert tuple(events.columns) == EVENT_COLUMNS
    x54 = events[events["goes_class"] == "X5.4"]
    assert len(x54) and (x54["peak"] == pd.Timestamp("2012-03-07 00:24")).any()


def test_a_parse_error_is_not_retried_and_names_the_request(hek_export):
    """Only network failures are retried: a response that cannot be read fails at once."""
    from solar_diffusion.dataset_builder.network import with_retries

    calls, waits = [], []

    def broken(chunk):
        calls.append(chunk)
        raise ValueError("unexpected token '<' in JSON")

    with pytest.raises(ValueError, match=r"HEK chunk 2012-03: unexpected token"):
        with_retries(broken, "2012-03", sleep=waits.append, what="HEK chunk 2012-03")
    assert calls == ["2012-03"] and waits == []
