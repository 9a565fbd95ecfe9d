"""Observation and event times: one parser for every file, list and index the project reads."""

from __future__ import annotations

import numpy as np
import pandas as pd


def utc_times(values) -> pd.Series:
    """Times as tz-naive UTC ``datetime64[ns]``; what does not parse becomes NaT.

    Reads ISO 8601 in any of its spellings (mixed in one column), datetimes (aware ones are
    converted to UTC, naive ones are UTC), ``astropy.time.Time`` and whatever
    ``sunpy.time.parse_time`` reads ("2012/03/07 00:02", "2012-Mar-07 00:02:00"). A Series keeps
    its index.

    >>> utc_times(["2012-07-01T20:14:24", "2012-01-01 00:00:01", "2012/03/07 00:02", "nonsense"]).tolist()
    [Timestamp('2012-07-01 20:14:24'), Timestamp('2012-01-01 00:00:01'), Timestamp('2012-03-07 00:02:00'), NaT]
    """
    try:
        from astropy.time import Time
    except ImportError:  # a node without astropy (an offline GPU machine): ISO strings and datetimes still parse
        Time = None

    index = values.index if isinstance(values, pd.Series) else None
    if Time is not None and isinstance(values, Time):
        values = np.atleast_1d(values.utc.datetime64)
    if isinstance(values, (np.ndarray, pd.Series, pd.Index)) and values.dtype.kind == "M":  # already times
        parsed = pd.Series(pd.to_datetime(np.asarray(values), utc=True), index=index)
        return parsed.dt.tz_localize(None).astype("datetime64[ns]")
    raw = pd.Series(np.atleast_1d(np.asarray(values, dtype=object)), index=index, dtype=object)
    raw = raw.map(lambda v: v.strip() if isinstance(v, str) else None if isinstance(v, (int, float)) else v)
    parsed = pd.to_datetime(raw, format="ISO8601", errors="coerce", utc=True)
    retry = parsed.isna() & raw.map(lambda v: isinstance(v, str) and bool(v))
    if retry.any():
        parsed = parsed.astype(object)
        parsed[retry] = raw[retry].map(_sunpy_time)
        parsed = pd.to_datetime(parsed, utc=True)
    return parsed.dt.tz_localize(None).astype("datetime64[ns]")


#: How the datasets store a time: ISO 8601 UTC to the millisecond, "Z" suffix (a string column, so
#: ``with_format("torch")`` passes it through; it sorts in time order).
ISO_UTC = "%Y-%m-%dT%H:%M:%S.%f"


def iso_utc(values) -> list:
    """Times (anything `utc_times` reads) as the datasets' ISO 8601 UTC strings; None where unknown.

    >>> iso_utc(["2012-03-07 00:24:00.57", "2012-03-07T01:24:00+01:00", None])
    ['2012-03-07T00:24:00.570Z', '2012-03-07T00:24:00.000Z', None]
    """
    return [None if pd.isna(t) else t.strftime(ISO_UTC)[:-3] + "Z" for t in utc_times(values)]


def utc_time(value) -> pd.Timestamp:
    """One time as a tz-naive UTC ``pd.Timestamp`` (``utc_times`` of one value); a time that does
    not parse is a ``ValueError`` naming it.

    >>> utc_time("2012-03-07T00:02:00+01:00")
    Timestamp('2012-03-06 23:02:00')
    """
    parsed = utc_times([value]).iloc[0]
    if pd.isna(parsed):
        raise ValueError(f"{value!r} is not a time (expected ISO 8601 such as '2012-03-07T00:02:00')")
    return parsed


def _sunpy_time(text: str):
    from sunpy.time import parse_time

    try:
        return pd.Timestamp(parse_time(text).utc.datetime64, tz="UTC")
    except (ValueError, TypeError):
        return pd.NaT
