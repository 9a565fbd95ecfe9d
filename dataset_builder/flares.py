"""Flare-event sources: local flare lists (HEK, NOAA SWPC, GOES-R XRS flare summaries) and HEK online.

Every source returns one common table, a `pandas.DataFrame` with exactly these columns:

============== ================================================================================
``start``      flare start, ``datetime64[ns]``, UTC (tz-naive)
``peak``       time of the 1-8 A peak, same type
``end``        flare end, same type; NaT only where a GOES-R summary gives none (see
               `read_goes16_summary`)
``goes_class`` the GOES class as the list publishes it, e.g. ``"M2.5"`` (str)
``peak_flux``  peak 1-8 A flux in W m^-2 (linear, not log10) on the GOES-R (unscaled) scale
               (float); a lower bound where the class is one ("X18+": the detector
               saturated). Built datasets store log10 of it: ``flare_log10_peak_flux_goes_r``
``hpc_x``      helioprojective longitude of the flare in arcsec, NaN if unknown (float)
``hpc_y``      helioprojective latitude in arcsec, NaN if unknown (float)
``noaa_ar``    NOAA active-region number, ``<NA>`` if unknown (``Int64``)
``source``     where the row comes from: ``"hek"``, ``"swpc"``, ``"goes16_flsum"``, ... (str)
============== ================================================================================

Rows are sorted by start; rows with the same start, peak, end and class are kept once. A row
that cannot be read (a time or class that does not parse) is skipped and reported with a
`FlareListWarning` naming the file and the line; it never stops the rest of the read.

Classes in HEK and the SWPC list are on the SWPC scale (they include NOAA's 0.7 factor), so
their ``peak_flux`` is the class flux divided by 0.7; the GOES-R flare summary is science data
without that factor, so its ``xrsb_flux`` at the peak is used as it is. The 2017-09-06 flare is
"X9.3" in HEK and SWPC (1.33e-3 W m^-2 unscaled) and "X14.6" in the GOES-16 summary.
"""

from __future__ import annotations

import contextlib
import csv
import re
import socket
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from solar_diffusion.dataset_builder.network import with_retries
from solar_diffusion.pipelines import GOES_R_SCALE, SWPC_SCALE, convert_flux_scale, parse_flare_class
from solar_diffusion.times import utc_times

__all__ = [
    "EVENT_COLUMNS",
    "MAX_RUN_IN",
    "FlareListWarning",
    "HEKFlareSource",
    "HEKQueryError",
    "empty_events",
    "hek_response_to_events",
    "month_chunks",
    "read_flare_list",
    "read_goes16_summary",
    "read_hek_csv",
    "read_known_gaps",
    "read_swpc_csv",
    "report_gaps",
]

#: The columns of every flare-event table, in order.
EVENT_COLUMNS = ("start", "peak", "end", "goes_class", "peak_flux", "hpc_x", "hpc_y", "noaa_ar", "source")
_TIME_COLUMNS = ("start", "peak", "end")
_DEDUP_COLUMNS = ("start", "peak", "end", "goes_class")

#: Columns of the HEK CSV export (SSW latest events, "GEV_" keys).
HEK_CSV_COLUMNS = ("GEV_START", "GEV_PEAK", "GEV_END", "GOES_CLASS")
#: Columns of a HEK online response for GOES flare events, and their names in the common table.
HEK_RESPONSE_COLUMNS = {
    "event_starttime": "start",
    "event_peaktime": "peak",
    "event_endtime": "end",
    "fl_goescls": "goes_class",
    "hpc_x": "hpc_x",
    "hpc_y": "hpc_y",
    "ar_noaanum": "noaa_ar",
}
SWPC_COLUMNS = ("start_time", "max_time", "end_time", "goes_class", "noaa_ar")
FLARE_SUMMARY_COLUMNS = ("time", "xrsb_flux", "status", "flare_class", "flare_id")

#: How many bad rows one warning lists by name before it only counts the rest.
_MAX_LISTED = 20


class FlareListWarning(UserWarning):
    """A flare list has rows or chunks that were skipped; the message names the file and rows."""


class HEKQueryError(RuntimeError):
    """A HEK query chunk still failed after all retries."""


# --------------------------------------------------------------------------------------------
# The common table
# --------------------------------------------------------------------------------------------


def empty_events() -> pd.DataFrame:
    """An event table with no rows and the common columns and dtypes.

    >>> list(empty_events().columns) == list(EVENT_COLUMNS)
    True
    """
    return _finish_events(pd.DataFrame({name: [] for name in EVENT_COLUMNS}))


def _finish_events(events: pd.DataFrame) -> pd.DataFrame:
    """Cast to the common dtypes, drop duplicate flares and sort by start."""
    out = pd.DataFrame(
        {
            **{name: pd.to_datetime(events[name]).astype("datetime64[ns]") for name in _TIME_COLUMNS},
            "goes_class": events["goes_class"].astype(str),
            "peak_flux": pd.to_numeric(events["peak_flux"]).astype(float),
            "hpc_x": pd.to_numeric(events["hpc_x"]).astype(float),
            "hpc_y": pd.to_numeric(events["hpc_y"]).astype(float),
            "noaa_ar": pd.array(events["noaa_ar"], dtype="Int64"),
            "source": events["source"].astype(str),
        }
    )
    out = out.drop_duplicates(subset=list(_DEDUP_COLUMNS))
    return out.sort_values(list(_DEDUP_COLUMNS), kind="stable").reset_index(drop=True)


def _class_flux(classes: pd.Series, scale: str) -> pd.Series:
    """GOES-R peak flux of each class given on ``scale``; NaN where a class does not parse."""
    lookup = {}
    for flare_class in pd.unique(classes):
        try:
            # "X18+": the detector saturated and the class is a lower bound; so is the flux.
            magnitude = str(flare_class).strip().removesuffix("+")
            lookup[flare_class] = convert_flux_scale(parse_flare_class(magnitude), scale, GOES_R_SCALE)
        except (TypeError, ValueError):
            lookup[flare_class] = np.nan
    return classes.map(lookup).astype(float)


def _active_region(values) -> pd.Series:
    """NOAA active-region numbers; 0, negative or missing values mean unknown."""
    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    return pd.array(numbers.where(numbers > 0).round(), dtype="Int64")


def _warn_skipped(where: str, labels, reasons) -> None:
    """One warning naming ``where`` and each skipped row (the first ``_MAX_LISTED`` of them)."""
    listed = [f"{label} ({reason})" for label, reason in zip(labels, reasons)]
    more = f"; and {len(listed) - _MAX_LISTED} more" if len(listed) > _MAX_LISTED else ""
    warnings.warn(
        f"{where}: skipped {len(listed)} bad row(s): {'; '.join(listed[:_MAX_LISTED])}{more}",
        FlareListWarning,
        stacklevel=3,
    )


def _drop_bad_rows(events, raw, labels, where, times=_TIME_COLUMNS) -> pd.DataFrame:
    """Drop rows with a time or class that did not parse, and warn naming each of them.

    ``events`` holds the parsed columns (NaT/NaN where parsing failed), ``raw`` the published
    text of the same rows in the same order under the same names, ``labels`` a name for each
    row in messages (e.g. "line 12"), ``times`` the time columns a row must have.
    """
    checks = [(name, name, events[name].isna()) for name in times]
    checks.append(("class", "goes_class", events["peak_flux"].isna()))  # no flux: the class did not parse
    bad = np.zeros(len(events), dtype=bool)
    reasons = {}
    for name, column, missing in checks:
        for i in np.flatnonzero(missing.to_numpy()):
            reasons.setdefault(i, []).append(f"{name} {raw[column].iloc[i]!r} does not parse")
        bad |= missing.to_numpy()
    if reasons:
        rows = sorted(reasons)
        _warn_skipped(where, [labels[i] for i in rows], ["; ".join(reasons[i]) for i in rows])
    return events[~bad]


# --------------------------------------------------------------------------------------------
# CSV plumbing
# --------------------------------------------------------------------------------------------


def _read_csv_text(path, expected_fields=None) -> tuple[list[str], pd.DataFrame]:
    """Header and rows of a CSV file as text, with a ``line`` column (1-based line numbers).

    Rows whose number of fields differs from the header's are skipped with a warning, except
    that ``expected_fields`` may name another accepted count (e.g. a leading index column).
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8", errors="replace") as stream:
        reader = csv.reader(stream)
        header = [name.strip() for name in next(reader, [])]
        accepted = {len(header), expected_fields or len(header)}
        rows, lines, bad_lines, bad_reasons = [], [], [], []
        for row in reader:
            if not row or not any(field.strip() for field in row):
                continue
            if len(row) not in accepted:
                bad_lines.append(f"line {reader.line_num}")
                bad_reasons.append(f"{len(row)} fields, expected {len(header)}")
                continue
            rows.append(row)
            lines.append(reader.line_num)
    if bad_lines:
        _warn_skipped(str(path), bad_lines, bad_reasons)
    width = max((len(r) for r in rows), default=len(header))
    names = header if width == len(header) else ["_index"] + header
    rows = [row if len(row) == width else [""] + row for row in rows]
    table = pd.DataFrame(rows, columns=names, dtype=object) if rows else pd.DataFrame(columns=names, dtype=object)
    table = table.apply(lambda column: column.str.strip())
    table["line"] = [f"line {n}" for n in lines]
    return header, table


def _csv_header(path) -> list[str]:
    with open(path, newline="", encoding="utf-8", errors="replace") as stream:
        return [name.strip() for name in next(csv.reader(stream), [])]


def _require_columns(path, header, required, kind: str) -> None:
    missing = [name for name in required if name not in header]
    if missing:
        raise ValueError(f"{path}: not a {kind}: missing column(s) {', '.join(missing)}")


# --------------------------------------------------------------------------------------------
# HEK
# --------------------------------------------------------------------------------------------


def read_hek_csv(path) -> pd.DataFrame:
    """Read a HEK / SSW latest-events GOES flare CSV export into the common table.

    Columns used: ``GEV_START``, ``GEV_PEAK``, ``GEV_END``, ``GOES_CLASS`` (SWPC scale) and,
    where present, ``AIA_XCEN``/``AIA_YCEN`` (arcsec). The export has no active-region numbers.

    Parameters
    ----------
    path : str or pathlib.Path
        The CSV file, e.g. ``hek_flares_2003-09_2023-12.csv``.

    Returns
    -------
    pandas.DataFrame
        The common event table (see the module docstring), ``source == "hek"``.
    """
    header, raw = _read_csv_text(path)
    _require_columns(path, header, HEK_CSV_COLUMNS, "HEK flare CSV")
    raw = raw.rename(columns={"GEV_START": "start", "GEV_PEAK": "peak", "GEV_END": "end", "GOES_CLASS": "goes_class"})
    events = pd.DataFrame(
        {
            "start": utc_times(raw["start"]),
            "peak": utc_times(raw["peak"]),
            "end": utc_times(raw["end"]),
            "goes_class": raw["goes_class"],
            "peak_flux": _class_flux(raw["goes_class"], SWPC_SCALE),
            "hpc_x": pd.to_numeric(raw.get("AIA_XCEN", np.nan), errors="coerce"),
            "hpc_y": pd.to_numeric(raw.get("AIA_YCEN", np.nan), errors="coerce"),
            "noaa_ar": pd.NA,
            "source": "hek",
        },
        index=raw.index,
    )
    events = _drop_bad_rows(events, raw, raw["line"].tolist(), str(path))
    return _finish_events(events)


def read_known_gaps(path) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Read the list of windows a HEK export has no events for (lines like ``2004-1-29 to 2004-2-28``).

    The dates are midnight UTC; a line that does not parse is skipped with a warning.

    Returns
    -------
    list of (pandas.Timestamp, pandas.Timestamp)
        ``(start, end)`` of each window, in file order.
    """
    pattern = re.compile(r"(\d{4}-\d{1,2}-\d{1,2})\s+to\s+(\d{4}-\d{1,2}-\d{1,2})")
    gaps, bad_lines, bad_reasons = [], [], []
    with open(path, encoding="utf-8", errors="replace") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            match = pattern.search(line)
            try:
                gap = tuple(pd.Timestamp(date) for date in match.groups()) if match else None
            except ValueError:
                gap = None
            if gap is None or gap[1] < gap[0]:
                bad_lines.append(f"line {number}")
                bad_reasons.append(f"{line.strip()!r} is not 'YYYY-M-D to YYYY-M-D'")
                continue
            gaps.append(gap)
    if bad_lines:
        _warn_skipped(str(path), bad_lines, bad_reasons)
    return gaps


def _merge_intervals(intervals) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _quiet_stretches(events: pd.DataFrame, start, end, max_quiet) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Stretches of ``[start, end]`` longer than ``max_quiet`` in which no flare is in progress."""
    flares = pd.DataFrame({"start": events["start"], "stop": events["end"].fillna(events["peak"])})
    flares = flares[(flares["stop"] >= start) & (flares["start"] <= end)].sort_values("start")
    stretches, covered_to = [], start
    for flare_start, flare_stop in zip(flares["start"], flares["stop"]):
        if flare_start - covered_to > max_quiet:
            stretches.append((covered_to, flare_start))
        covered_to = max(covered_to, flare_stop)
    if end - covered_to > max_quiet:
        stretches.append((covered_to, end))
    return stretches


def report_gaps(events, start, end, known_gaps, max_quiet=None) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The parts of ``[start, end]`` where an event list cannot be trusted to be complete.

    These are the known gaps of the list (e.g. from `read_known_gaps`) clipped to the range,
    and, with ``max_quiet``, every stretch longer than that in which ``events`` has no flare in
    progress (a hole the gap list does not mention). Labels inside them are unreliable.

    Parameters
    ----------
    events : pandas.DataFrame
        A common event table (only used with ``max_quiet``).
    start, end : str or pandas.Timestamp
        The requested range.
    known_gaps : list of (start, end)
        Windows the list is known to miss.
    max_quiet : str or pandas.Timedelta, optional
        Report event-free stretches longer than this too. Near solar minimum weeks without a
        flare are real, so choose it for the activity of the range (e.g. ``"7D"`` near maximum).

    Returns
    -------
    list of (pandas.Timestamp, pandas.Timestamp)
        Sorted, merged intervals.

    Examples
    --------
    >>> gaps = [(pd.Timestamp("2004-01-29"), pd.Timestamp("2004-02-28"))]
    >>> report_gaps(empty_events(), "2004-02-01", "2004-03-01", gaps)
    [(Timestamp('2004-02-01 00:00:00'), Timestamp('2004-02-28 00:00:00'))]
    """
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if end < start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    intervals = [
        (max(pd.Timestamp(a), start), min(pd.Timestamp(b), end))
        for a, b in known_gaps
        if pd.Timestamp(a) < end and pd.Timestamp(b) > start
    ]
    if max_quiet is not None:
        intervals += _quiet_stretches(events, start, end, pd.Timedelta(max_quiet))
    return _merge_intervals(intervals)


def _column_values(column, unit=None) -> list:
    """Plain Python values of an astropy or pandas column; masked entries become None.

    Times become ISO strings (UTC); quantities become numbers in ``unit`` (or their own unit).
    """
    from astropy import units as u
    from astropy.time import Time

    if isinstance(column, pd.Series):
        return column.tolist()
    if isinstance(column, Time):
        text = column.utc.isot
        if isinstance(text, np.ma.MaskedArray):
            text, mask = text.filled(""), np.ma.getmaskarray(text)
        else:
            mask = np.broadcast_to(np.asarray(getattr(text, "mask", False)), np.shape(text))
            text = np.asarray(getattr(text, "unmasked", text))
        return [None if masked else value for value, masked in zip(text.tolist(), mask.tolist())]
    if isinstance(column, u.Quantity):
        return column.to_value(unit).tolist() if unit is not None else column.value.tolist()
    values = column.tolist()
    if getattr(column, "unit", None) is not None and unit is not None:
        scale = u.Unit(column.unit).to(unit)
        values = [None if v is None else v * scale for v in values]
    return [_plain_value(v, unit) for v in values]


def _plain_value(value, unit=None):
    from astropy import units as u
    from astropy.time import Time

    if value is None or value is np.ma.masked:
        return None
    if isinstance(value, Time):
        return value.utc.isot
    if isinstance(value, u.Quantity):
        return value.to_value(unit) if unit is not None else value.value
    return value


def hek_response_to_events(response, where: str = "HEK response") -> pd.DataFrame:
    """Convert a HEK response for GOES flare events into the common table.

    ``response`` is what ``sunpy.net.hek.HEKClient().search(...)`` returns (an astropy Table,
    parsed or ``.raw``) or a `pandas.DataFrame` with HEK's column names: ``event_starttime``,
    ``event_peaktime``, ``event_endtime``, ``fl_goescls`` (SWPC scale), ``hpc_x``, ``hpc_y``
    (arcsec) and ``ar_noaanum``. Rows with a missing or bad time or class are skipped with a
    warning naming ``where`` and the row.
    """
    from astropy import units as u

    if response is None or len(response) == 0:
        return empty_events()
    names = list(response.columns) if isinstance(response, pd.DataFrame) else response.colnames
    required = ("event_starttime", "event_peaktime", "event_endtime", "fl_goescls")
    missing = [name for name in required if name not in names]
    if missing:
        raise ValueError(f"{where}: not a HEK flare response: missing column(s) {', '.join(missing)}")
    raw = pd.DataFrame(
        {
            ours: _column_values(response[theirs], unit=u.arcsec if ours.startswith("hpc") else None)
            if theirs in names
            else [None] * len(response)
            for theirs, ours in HEK_RESPONSE_COLUMNS.items()
        },
        dtype=object,
    )
    classes = raw["goes_class"].map(lambda c: c.strip() if isinstance(c, str) else c)
    events = pd.DataFrame(
        {
            "start": utc_times(raw["start"]),
            "peak": utc_times(raw["peak"]),
            "end": utc_times(raw["end"]),
            "goes_class": classes,
            "peak_flux": _class_flux(classes, SWPC_SCALE),
            "hpc_x": pd.to_numeric(raw["hpc_x"], errors="coerce"),
            "hpc_y": pd.to_numeric(raw["hpc_y"], errors="coerce"),
            "noaa_ar": _active_region(raw["noaa_ar"]),
            "source": "hek",
        }
    )
    events = _drop_bad_rows(events, raw, [f"row {i}" for i in range(len(raw))], where)
    return _finish_events(events)


@contextlib.contextmanager
def _socket_timeout(seconds):
    """Give sockets opened inside (sunpy's ``urlopen`` calls) a timeout; restored afterwards."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def month_chunks(start, end, chunk="MS") -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Split ``[start, end]`` at calendar boundaries (``chunk`` is a pandas frequency).

    >>> [(a.strftime("%m-%d"), b.strftime("%m-%d")) for a, b in month_chunks("2011-01-15", "2011-03-10")]
    [('01-15', '02-01'), ('02-01', '03-01'), ('03-01', '03-10')]
    """
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if end <= start:
        raise ValueError(f"the range ends ({end}) at or before it starts ({start})")
    edges = sorted({start, end, *pd.date_range(start, end, freq=chunk)})
    return list(zip(edges[:-1], edges[1:]))


def _chunk_name(chunk) -> str:
    return f"{chunk[0].isoformat()}..{chunk[1].isoformat()}"


class HEKFlareSource:
    """GOES flare events from the Heliophysics Event Knowledgebase, queried chunk by chunk.

    Parameters
    ----------
    search : callable, optional
        ``search(start, end) -> table`` runs one query (a HEK response: astropy Table or
        DataFrame with HEK's column names). The default asks HEK through sunpy for events of
        type ``FL`` observed by GOES, with ``timeout`` on each connection.
    chunk : str
        pandas frequency at which the range is split; calendar months by default, so a
        multi-year range is many small queries rather than one that hangs.
    timeout : float
        Seconds before a HEK connection gives up (default search only).
    retries : int
        Further tries of a failed chunk; the k-th waits ``backoff * 2**k`` seconds first.
    backoff : float
        The first wait, in seconds.
    sleep : callable
        How to wait (``time.sleep``; tests pass a recorder).

    Examples
    --------
    >>> source = HEKFlareSource()
    >>> events = source.events("2012-03-07", "2012-03-08")  # doctest: +SKIP
    >>> events.loc[events["goes_class"] == "X5.4", ["start", "peak", "end"]]  # doctest: +SKIP
    """

    def __init__(self, search=None, chunk="MS", timeout=60, retries=3, backoff=2.0, sleep=time.sleep):
        self.search = search if search is not None else self._hek_search
        self.chunk = chunk
        self.timeout = timeout
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.sleep = sleep
        self.failed_chunks: list[tuple[pd.Timestamp, pd.Timestamp]] = []

    def _hek_search(self, start, end):
        """One HEK query for GOES flare events between ``start`` and ``end`` (sunpy)."""
        from sunpy.net import attrs
        from sunpy.net.hek import HEKClient

        with _socket_timeout(self.timeout):
            return HEKClient().search(
                attrs.Time(start, end), attrs.hek.EventType("FL"), attrs.hek.OBS.Observatory == "GOES"
            )

    def _search_with_retries(self, chunk):
        return with_retries(self.search, *chunk, retries=self.retries, backoff=self.backoff, sleep=self.sleep,
                            what=f"HEK query for chunk {_chunk_name(chunk)}", error_type=HEKQueryError)

    def events(self, start, end, on_error="raise") -> pd.DataFrame:
        """GOES flare events overlapping ``[start, end]`` as the common table.

        Parameters
        ----------
        start, end : str or pandas.Timestamp
            The range, UTC.
        on_error : {"raise", "warn"}
            What to do with a chunk that still fails after the retries: raise `HEKQueryError`
            naming it, or warn, list it in ``self.failed_chunks`` and return the rest.
        """
        if on_error not in ("raise", "warn"):
            raise ValueError(f"on_error must be 'raise' or 'warn', got {on_error!r}")
        self.failed_chunks = []
        tables = []
        for chunk in month_chunks(start, end, self.chunk):
            try:
                response = self._search_with_retries(chunk)
            except HEKQueryError as error:
                if on_error == "raise":
                    raise
                self.failed_chunks.append(chunk)
                warnings.warn(f"{error}; its events are missing", FlareListWarning, stacklevel=2)
                continue
            tables.append(hek_response_to_events(response, where=f"HEK chunk {_chunk_name(chunk)}"))
        tables = [table for table in tables if len(table)]
        return _finish_events(pd.concat(tables, ignore_index=True)) if tables else empty_events()


# --------------------------------------------------------------------------------------------
# NOAA SWPC event list
# --------------------------------------------------------------------------------------------


def _time_of_day(hhmm: pd.Series) -> pd.Series:
    """``"HHMM"`` text as a time since midnight; NaT where it is not a valid HHMM."""
    parts = hhmm.str.extract(r"^(\d{2})(\d{2})$").astype(float)
    valid = (parts[0] < 24) & (parts[1] < 60)
    minutes = (parts[0] * 60 + parts[1]).where(valid)
    return pd.to_timedelta(minutes, unit="min")


def _next_day_if_before(times: pd.Series, start: pd.Series) -> pd.Series:
    """Times that fall before their flare's start belong to the next day."""
    return times + pd.to_timedelta((times < start).astype(int), unit="D")


def read_swpc_csv(path) -> pd.DataFrame:
    """Read a NOAA SWPC GOES X-ray event list CSV into the common table.

    The file's rows begin with an index column the header does not name; once that is set
    aside the names fit: ``start_time`` and ``end_time`` are date-times, ``max_time`` is HHMM
    only, and ``goes_class`` is on the SWPC scale. The peak and the end carry the start's date,
    so a peak or end after midnight is moved to the next day. ``noaa_ar`` 0 means unknown.
    A decimal comma in a class ("C6,2") is read as a point; "////" as a peak time is a bad row.

    Returns
    -------
    pandas.DataFrame
        The common event table, ``source == "swpc"``, no positions.
    """
    header = _csv_header(path)
    _require_columns(path, header, SWPC_COLUMNS, "SWPC event list")
    header, raw = _read_csv_text(path, expected_fields=len(header) + 1)
    raw["goes_class"] = raw["goes_class"].str.replace(",", ".", regex=False)
    start = utc_times(raw["start_time"])
    midnight = start.dt.normalize()
    peak = _next_day_if_before(midnight + _time_of_day(raw["max_time"]), start)
    end_clock = utc_times(raw["end_time"])
    end = _next_day_if_before(midnight + (end_clock - end_clock.dt.normalize()), start)
    events = pd.DataFrame(
        {
            "start": start,
            "peak": peak,
            "end": end,
            "goes_class": raw["goes_class"],
            "peak_flux": _class_flux(raw["goes_class"], SWPC_SCALE),
            "hpc_x": np.nan,
            "hpc_y": np.nan,
            "noaa_ar": _active_region(raw["noaa_ar"]),
            "source": "swpc",
        }
    )
    raw = raw.rename(columns={"start_time": "start", "max_time": "peak", "end_time": "end"})
    events = _drop_bad_rows(events, raw, raw["line"].tolist(), str(path))
    return _finish_events(events)


# --------------------------------------------------------------------------------------------
# GOES-R XRS flare summary (CSV or netCDF)
# --------------------------------------------------------------------------------------------


def _summary_source(path, platform=None) -> str:
    """``"goes16_flsum"`` for a GOES-16 summary, from the platform attribute or the file name."""
    match = re.search(r"g(\d{2})", str(platform or "")) or re.search(r"goes-?(\d{2})|_g(\d{2})_", Path(path).name)
    number = next((group for group in match.groups() if group), None) if match else None
    return f"goes{int(number)}_flsum" if number else "goes_flsum"


def _is_netcdf4(path) -> bool:
    """Whether a file is netCDF-4 (HDF5 inside), by its signature; other ``.nc`` files are an error."""
    with open(path, "rb") as stream:
        signature = stream.read(8)
    if signature == b"\x89HDF\r\n\x1a\n":
        return True
    if Path(path).suffix.lower() in (".nc", ".nc4", ".h5") or signature.startswith(b"CDF"):
        raise ValueError(f"{path}: not a netCDF-4 (HDF5) file; GOES-R flare summaries are netCDF-4")
    return False


def _read_summary_netcdf(path) -> tuple[pd.DataFrame, str]:
    """Records of a GOES-R ``xrsf-l2-flsum`` netCDF file as text/number columns, and its source."""
    import h5netcdf

    def text(values):
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]

    with h5netcdf.File(path, "r") as nc:
        missing = [name for name in FLARE_SUMMARY_COLUMNS if name not in nc.variables]
        if missing:
            raise ValueError(f"{path}: not a GOES-R XRS flare summary: missing variable(s) {', '.join(missing)}")
        seconds = np.asarray(nc.variables["time"][...], dtype=float)
        units = str(nc.variables["time"].attrs.get("units", ""))
        epoch = re.fullmatch(r"\s*seconds since (.+?)\s*", units)
        if epoch is None:
            raise ValueError(f"{path}: time units {units!r} are not 'seconds since ...'")
        fill = nc.variables["time"].attrs.get("_FillValue", np.nan)
        times = pd.Timestamp(epoch.group(1)) + pd.to_timedelta(np.where(seconds == fill, np.nan, seconds), unit="s")
        status = ["" if s == "NO_STATUS" else s for s in text(nc.variables["status"][...])]
        records = pd.DataFrame(
            {
                "time": pd.Series(times).astype("datetime64[ns]"),
                "xrsb_flux": np.asarray(nc.variables["xrsb_flux"][...], dtype=float),
                "status": status,
                "flare_class": [c.strip() for c in text(nc.variables["flare_class"][...])],
                "flare_id": [str(i) for i in np.asarray(nc.variables["flare_id"][...])],
            }
        )
        platform = nc.attrs.get("platform")
    records["line"] = [f"record {i}" for i in range(len(records))]
    return records, _summary_source(path, platform)


_SUMMARY_STATUSES = ("EVENT_START", "EVENT_PEAK", "EVENT_END")
#: A GOES-R flare without EVENT_END ends where the next flare starts if that is at most this long
#: after its peak (the longest peak-to-end decay in the 2017-2024 GOES-16 summary is 1 h 44 min).
MAX_RUN_IN = pd.Timedelta(hours=2)


def _flare_id_times(flare_ids: pd.Series) -> pd.Series:
    """Start times encoded in GOES-R ``flare_id`` numbers (YYYYMMDDHHMM)."""
    text = flare_ids.map(lambda i: f"{int(i):012d}")
    return pd.to_datetime(text, format="%Y%m%d%H%M", errors="coerce").astype("datetime64[ns]")


def _summary_events(records: pd.DataFrame, where: str, source: str) -> pd.DataFrame:
    """One flare per ``flare_id``: its START, PEAK (class, flux) and END records joined."""
    records = records.assign(flare_id=pd.to_numeric(records["flare_id"], errors="coerce"))
    records = records[records["flare_id"].notna()]
    marked = records[records["status"].isin(_SUMMARY_STATUSES)].drop_duplicates(["flare_id", "status"])
    by_status = {status: marked[marked["status"] == status].set_index("flare_id") for status in _SUMMARY_STATUSES}
    peaks = by_status["EVENT_PEAK"]
    flare_ids = peaks.index.to_series()
    start = by_status["EVENT_START"]["time"].reindex(peaks.index).fillna(_flare_id_times(flare_ids))
    end = by_status["EVENT_END"]["time"].reindex(peaks.index)
    # No EVENT_END: the next flare began before this one decayed; it lasted at least until then.
    # A next start long after the peak means a data gap, not a run-in: the end stays unknown.
    all_starts = np.sort(pd.concat([_flare_id_times(pd.Series(records["flare_id"].unique())),
                                    by_status["EVENT_START"]["time"]]).dropna().unique())
    following = np.searchsorted(all_starts, start.to_numpy(), side="right")
    next_start = pd.Series(np.append(all_starts, np.datetime64("NaT"))[following], index=peaks.index)
    next_start = next_start.where(next_start - peaks["time"] <= MAX_RUN_IN)
    classes = peaks["flare_class"].fillna("").astype(str).str.strip()
    class_flux = _class_flux(classes, GOES_R_SCALE)
    flux = pd.to_numeric(peaks["xrsb_flux"], errors="coerce")
    flux = flux.where((flux > 0) & np.isfinite(flux), class_flux).where(class_flux.notna())
    events = pd.DataFrame(
        {
            "start": start,
            "peak": peaks["time"],
            "end": end.fillna(next_start),
            "goes_class": classes,
            "peak_flux": flux,
            "hpc_x": np.nan,
            "hpc_y": np.nan,
            "noaa_ar": pd.NA,
            "source": source,
        }
    )
    raw = pd.DataFrame({"start": flare_ids.astype("int64").astype(str), "peak": peaks["time"].astype(str),
                        "goes_class": classes})
    events = _drop_bad_rows(events, raw, peaks["line"].tolist(), where, times=("start", "peak"))

    without_peak = sorted(set(records["flare_id"]) - set(flare_ids))
    if without_peak:
        listed = ", ".join(f"{int(i)}" for i in without_peak[:_MAX_LISTED])
        more = f" and {len(without_peak) - _MAX_LISTED} more" if len(without_peak) > _MAX_LISTED else ""
        warnings.warn(
            f"{where}: skipped {len(without_peak)} flare_id(s) without an EVENT_PEAK record (no class): "
            f"{listed}{more}",
            FlareListWarning,
            stacklevel=3,
        )
    return _finish_events(events)


def read_goes16_summary(path) -> pd.DataFrame:
    """Read a GOES-R XRS flare summary (NOAA's CSV export or the ``xrsf-l2-flsum`` netCDF).

    Rows with status EVENT_START / EVENT_PEAK / EVENT_END are joined by ``flare_id``; the
    class and ``xrsb_flux`` come from the PEAK row and are on the GOES-R scale already (no
    0.7). A flare without a START row starts at its ``flare_id`` (YYYYMMDDHHMM of the start);
    one without an END row, because the next flare began first, ends where the next one
    starts if that is within `MAX_RUN_IN` of its peak, else its end is NaT (a data gap or the
    end of the file); flares without a PEAK row (no class, e.g. rows with a blank status) are
    skipped and listed in one warning.

    Returns
    -------
    pandas.DataFrame
        The common event table, ``source`` e.g. ``"goes16_flsum"``, no positions.
    """
    path = Path(path)
    if _is_netcdf4(path):
        records, source = _read_summary_netcdf(path)
    else:
        header, raw = _read_csv_text(path)
        _require_columns(path, header, FLARE_SUMMARY_COLUMNS, "GOES-R XRS flare summary")
        records = raw.assign(time=utc_times(raw["time"]), xrsb_flux=pd.to_numeric(raw["xrsb_flux"], errors="coerce"))
        source = _summary_source(path)
        bad_time = records["time"].isna()
        if bad_time.any():
            _warn_skipped(str(path), records.loc[bad_time, "line"].tolist(),
                          [f"time {t!r} does not parse" for t in raw.loc[bad_time, "time"]])
            records = records[~bad_time]
    return _summary_events(records, str(path), source)


# --------------------------------------------------------------------------------------------
# Any of them
# --------------------------------------------------------------------------------------------


def read_flare_list(path) -> pd.DataFrame:
    """Read any supported flare list, recognised by its columns (CSV) or variables (netCDF).

    HEK CSV exports (``GEV_START`` ...), NOAA SWPC event lists (``start_time``, ``max_time``
    ...) and GOES-R XRS flare summaries (CSV or netCDF) are supported.

    Raises
    ------
    ValueError
        Naming the file, if it is none of these.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such flare list")
    if _is_netcdf4(path):
        return read_goes16_summary(path)
    header = _csv_header(path)
    if set(HEK_CSV_COLUMNS) <= set(header):
        return read_hek_csv(path)
    if set(SWPC_COLUMNS) <= set(header):
        return read_swpc_csv(path)
    if set(FLARE_SUMMARY_COLUMNS) <= set(header):
        return read_goes16_summary(path)
    hint = ""
    if header and re.search(r"\d{4}-\d{1,2}-\d{1,2}\s+to\s+\d{4}", ",".join(header)):
        hint = " (it looks like a list of known gaps: read it with read_known_gaps)"
    raise ValueError(
        f"{path}: not a known flare list{hint}: expected a HEK CSV ({', '.join(HEK_CSV_COLUMNS)}), an SWPC "
        f"event list ({', '.join(SWPC_COLUMNS)}) or a GOES-R XRS flare summary ({', '.join(FLARE_SUMMARY_COLUMNS)}); "
        f"the header is {header[:8]}"
    )
