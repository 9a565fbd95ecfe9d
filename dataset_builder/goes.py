"""GOES XRS 1-8 Angstrom (XRS-B) flux, read from local files or fetched with Fido.

Every flux this module hands out is on the GOES-R (unscaled) scale, in W m^-2.

Flux scale rule
---------------
Each file's scale is decided from its own metadata (:func:`flux_scale`):

* ``"goes-r"`` (no SWPC factor) for

  - GOES-R series (GOES-16 and later) XRS L2 science files (``sci_xrsf-l2-*_g16..``): their
    ``program`` attribute names the GOES-R series, which never carried the factor;
  - NOAA/NCEI re-processed GOES 1-15 science-quality netCDF (``sci_gxrs-l2-irrad_g13..``,
    ``sci_xrsf-l2-avg1m_g15..``): their ``summary``/``references`` say "science-quality" /
    "SCIENCE QUALITY", and NOAA removed the 0.7 SWPC scaling when re-processing (see the note
    in sunpy's ``XRSClient``; sunpy issue #4376);

* ``"swpc"`` (fluxes multiplied by 0.7 by NOAA SWPC) for every other GOES 1-15 file, i.e. the
  operational data such as the SDAC ``go15YYYYMMDD.fits`` files (``TELESCOP = 'GOES 15'``,
  ``ORIGIN = 'SDAC/GSFC'``); these are divided by 0.7 here. sunpy's ``XRSTimeSeries`` reads
  every file as stored and neither removes nor flags the factor, so it is applied once, here.

A file whose satellite cannot be told and that carries no science-quality or GOES-R marker is
skipped with a warning rather than guessed.

Quality
-------
``quality_ok`` is true where the file's XRS-B flag says ``good_data`` (decoded from the flag
variable's ``flag_meanings``/``flag_masks``/``flag_values``, so electron-contamination bits do
not count as bad) and the flux is finite and positive. The SDAC FITS files carry no per-sample
flag; there only the flux itself is checked (-99999 means no data).
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5netcdf
import numpy as np
import pandas as pd

from solar_diffusion.dataset_builder.network import with_retries
from solar_diffusion.files import expand_paths
from solar_diffusion.pipelines import GOES_R_SCALE, SWPC_SCALE, convert_flux_scale
from solar_diffusion.times import utc_time, utc_times

__all__ = [
    "XRSFile",
    "XRSFlux",
    "read_xrs",
    "flux_scale",
    "FidoXRSFetch",
    "GOESXRSSource",
]

#: XRS-B quality-flag variable names, in sunpy's order (GOES 1-15 science, GOES-R 1 s, 1 min).
_FLAG_NAMES = ("b_flags", "xrsb_flags", "xrsb_flag")
_FLUX_NAMES = ("b_flux", "xrsb_flux")
_SATELLITE_IN_NAME = re.compile(r"(?:^|[_-])g(?:oes)?_?(\d{1,2})(?=[_-]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class XRSFile:
    """Provenance of one XRS file that was read: where it came from and which scale it was on."""

    path: str
    satellite: str
    flux_scale: str
    scale_evidence: str
    cadence: pd.Timedelta
    start: pd.Timestamp
    end: pd.Timestamp
    n_samples: int
    n_good: int


@dataclass
class XRSFlux:
    """GOES XRS-B (1-8 Angstrom) flux on the GOES-R scale, in W m^-2.

    Attributes
    ----------
    data : pandas.DataFrame
        Indexed by tz-naive UTC time, with columns ``flux`` (W m^-2, GOES-R scale),
        ``quality_ok`` (bool), ``satellite`` (e.g. ``"GOES-16"``) and ``file`` (file name).
    files : list of XRSFile
        One entry per file read, with its original flux scale and the evidence for it.
    skipped : list of tuple
        ``(path, reason)`` for every file that could not be read.
    """

    data: pd.DataFrame
    files: list[XRSFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.data)

    def flux_at(self, times, max_gap: pd.Timedelta = pd.Timedelta("5min")) -> np.ndarray:
        """Flux (W m^-2, GOES-R scale) of the nearest good sample to each time.

        Parameters
        ----------
        times : time-like or sequence of time-likes
            Anything `solar_diffusion.times.utc_times` reads; naive times are UTC.
        max_gap : pandas.Timedelta
            Farthest a good sample may be from a time; beyond it the flux is NaN.

        Returns
        -------
        numpy.ndarray
            One float per time (1-d, also for a single time).

        Examples
        --------
        >>> from sunpy.data.test import get_test_filepath
        >>> xrs = read_xrs(get_test_filepath("sci_xrsf-l2-avg1m_g16_d20210101_truncated.nc"))
        >>> [f"{flux:.3g}" for flux in xrs.flux_at(["2021-01-01 23:00", "2021-01-02 06:00"])]
        ['4.29e-08', 'nan']
        """
        query = pd.DatetimeIndex(utc_times(times))
        good = self.data[self.data["quality_ok"]]
        out = np.full(len(query), np.nan)
        if good.empty or query.empty:
            return out
        sample_ns = good.index.asi8
        query_ns = query.asi8
        valid = ~query.isna()
        nearest, distance = _nearest(sample_ns, query_ns[valid])
        close = distance <= pd.Timedelta(max_gap).value
        values = np.full(valid.sum(), np.nan)
        values[close] = good["flux"].to_numpy()[nearest[close]]
        out[valid] = values
        return out

    def coverage(self, max_gap: pd.Timedelta = pd.Timedelta("5min")) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """Time ranges ``(first, last)`` of good samples, split where good samples are > max_gap apart.

        Examples
        --------
        >>> from sunpy.data.test import get_test_filepath
        >>> read_xrs(get_test_filepath("sci_xrsf-l2-avg1m_g16_d20210101_truncated.nc")).coverage()
        [(Timestamp('2021-01-01 22:20:00'), Timestamp('2021-01-01 23:59:00'))]
        """
        times = self.data.index[self.data["quality_ok"].to_numpy()]
        if times.empty:
            return []
        breaks = np.flatnonzero(np.diff(times.asi8) > pd.Timedelta(max_gap).value)
        starts = np.concatenate([[0], breaks + 1])
        ends = np.concatenate([breaks, [len(times) - 1]])
        return [(times[s], times[e]) for s, e in zip(starts, ends)]

    def truncate(self, start, end) -> XRSFlux:
        """The samples with ``start <= time <= end`` (files and skipped lists are kept)."""
        start, end = utc_time(start), utc_time(end)
        index = self.data.index
        return XRSFlux(self.data[(index >= start) & (index <= end)], list(self.files), list(self.skipped))


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def read_xrs(paths, primary_satellite: str | None = None) -> XRSFlux:
    """Read GOES XRS files (GOES-R / re-processed GOES 1-15 netCDF, SDAC FITS) into one XRSFlux.

    Files are read with sunpy's ``TimeSeries``; each flux is put on the GOES-R scale following
    the rule in the module docstring. A file that cannot be read (corrupt, truncated, not XRS
    flux) is reported with `warnings.warn`, naming the file and the reason, and skipped.

    Where files overlap, one sample per instant is kept: good samples beat flagged ones; then
    files rank by satellite (``primary_satellite`` first, then newer satellites before older),
    then finer cadence, then the order given. A sample is dropped when a preferred good sample
    lies closer than the coarser of the two files' cadences (so the same file twice, or two
    satellites over the same hours, give no duplicates).

    Parameters
    ----------
    paths : path or sequence of paths
        Files, or folders whose files are all tried.
    primary_satellite : str, optional
        e.g. ``"GOES-16"``; its samples win overlaps.

    Examples
    --------
    >>> from sunpy.data.test import get_test_filepath
    >>> xrs = read_xrs(get_test_filepath("go1520110607.fits"))
    >>> xrs.files[0].satellite, xrs.files[0].flux_scale
    ('GOES-15', 'swpc')
    """
    files, frames, skipped = [], [], []
    for path in expand_paths(paths):
        try:
            frame, info = _read_one(path)
        except Exception as error:  # noqa: BLE001 - any failure of one file only skips that file
            reason = f"{type(error).__name__}: {error}".strip()
            warnings.warn(
                f"skipping GOES XRS file {path}: cannot read it as XRS flux (corrupt, truncated "
                f"or not an XRS file): {reason}",
                stacklevel=2,
            )
            skipped.append((str(path), reason))
            continue
        files.append(info)
        frames.append(frame)
    order = sorted(range(len(files)), key=lambda i: _priority(files[i], i, primary_satellite))
    data = _merge([frames[i] for i in order], [files[i].cadence for i in order])
    return XRSFlux(data, files, skipped)


def flux_scale(meta, satellite: str | None) -> tuple[str, str]:
    """Flux scale (``"goes-r"`` or ``"swpc"``) of an XRS file, and the evidence, from its metadata.

    Parameters
    ----------
    meta : mapping
        The file's global attributes / primary header (keys case-insensitive, as in sunpy meta).
    satellite : str or None
        e.g. ``"GOES-15"``.

    Examples
    --------
    >>> flux_scale({"TELESCOP": "GOES 15", "ORIGIN": "SDAC/GSFC"}, "GOES-15")[0]
    'swpc'
    >>> flux_scale({"program": "Geostationary Operational Environmental Satellite, R-Series (GOES-R)"}, "GOES-16")[0]
    'goes-r'
    """
    lowered = {str(key).lower(): value for key, value in meta.items()}
    text = {key: _text(lowered.get(key, "")) for key in ("program", "title", "summary", "references", "origin")}
    number = _satellite_number(satellite)
    if "R-Series" in text["program"] or "GOES-R" in text["title"] or number >= 16:
        return GOES_R_SCALE, f"GOES-R series ({satellite}) L2 data carry no SWPC factor: {text['program']!r}"
    quality = text["summary"] + " " + text["references"]
    if re.search(r"science[- ]quality", quality, re.IGNORECASE):
        evidence = f"NOAA re-processed science-quality GOES 1-15 data, SWPC factor removed: {text['title']!r}"
        return GOES_R_SCALE, evidence
    if 1 <= number <= 15:
        origin = f" (ORIGIN={text['origin']!r})" if text["origin"] else ""
        return SWPC_SCALE, f"GOES 1-15 operational flux{origin} includes the SWPC 0.7 factor"
    raise ValueError("cannot tell the flux scale: unknown satellite and no science-quality or GOES-R marker")


def _read_one(path: Path) -> tuple[pd.DataFrame, XRSFile]:
    """One file as a frame (flux on the GOES-R scale, quality_ok, satellite, file) and its provenance."""
    import sunpy.timeseries
    from sunpy.timeseries.sources.goes import XRSTimeSeries

    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The inplace keyword")  # sunpy vs pandas 3
        series = sunpy.timeseries.TimeSeries(str(path))
    if not isinstance(series, XRSTimeSeries):
        raise ValueError(f"not a GOES XRS time series but {type(series).__name__}")
    table = series.to_dataframe()
    meta = series.meta.metas[0]
    satellite = series.observatory or _satellite_from_name(path.name, meta)
    scale, evidence = flux_scale(meta, satellite)
    to_goes_r = convert_flux_scale(1.0, scale, GOES_R_SCALE)

    flux = table["xrsb"].to_numpy(dtype=float)
    flag_good = _good_flags(path, table)
    fill = _flux_fill_value(path)
    if fill is not None:
        flux[flux == fill] = np.nan
    with np.errstate(invalid="ignore"):
        quality_ok = flag_good & np.isfinite(flux) & (flux > 0)
    index = pd.DatetimeIndex(table.index).as_unit("ns")
    frame = pd.DataFrame(
        {"flux": flux * to_goes_r, "quality_ok": quality_ok, "satellite": satellite, "file": path.name},
        index=index.rename("time"),
    ).sort_index(kind="stable")
    info = XRSFile(
        path=str(path),
        satellite=satellite,
        flux_scale=scale,
        scale_evidence=evidence,
        cadence=_cadence(frame.index),
        start=frame.index[0] if len(frame) else pd.NaT,
        end=frame.index[-1] if len(frame) else pd.NaT,
        n_samples=len(frame),
        n_good=int(quality_ok.sum()),
    )
    return frame, info


def _good_flags(path: Path, table: pd.DataFrame) -> np.ndarray:
    """True where the XRS-B flag says good_data (all true where the file has no flag)."""
    if "xrsb_quality" not in table:
        return np.ones(len(table), dtype=bool)
    raw = table["xrsb_quality"].to_numpy(dtype=float)
    known = np.isfinite(raw)
    flags = np.where(known, raw, 0).astype(np.int64)
    mask, value = _good_data_mask(path)
    return known & ((flags & mask) == value)


def _good_data_mask(path: Path) -> tuple[int, int]:
    """``(mask, value)`` with ``flag & mask == value`` meaning good_data, from the flag attributes."""
    with h5netcdf.File(path, mode="r", decode_vlen_strings=True) as nc:
        name = next((n for n in _FLAG_NAMES if n in nc.variables), None)
        attrs = nc.variables[name].attrs if name else {}
        meanings = _text(attrs.get("flag_meanings", "")).split()
        if "good_data" not in meanings or "flag_masks" not in attrs:
            return -1, 0  # no decodable flag: only a zero flag is good
        i = meanings.index("good_data")
        masks, values = np.atleast_1d(attrs["flag_masks"]), np.atleast_1d(attrs.get("flag_values", [0]))
        return int(masks[i]), int(values[i]) if i < len(values) else 0


def _flux_fill_value(path: Path) -> float | None:
    """The XRS-B flux _FillValue of a netCDF file (sunpy only masks -9999); None for FITS."""
    try:
        with h5netcdf.File(path, mode="r") as nc:
            name = next((n for n in _FLUX_NAMES if n in nc.variables), None)
            fill = nc.variables[name].attrs.get("_FillValue") if name else None
    except OSError:
        return None
    return None if fill is None else float(np.atleast_1d(fill)[0])


def _merge(frames: list[pd.DataFrame], cadences: list[pd.Timedelta]) -> pd.DataFrame:
    """Merge frames given best first; see `read_xrs` for the rule."""
    if not frames:
        empty = pd.DatetimeIndex([], dtype="datetime64[ns]", name="time")
        return pd.DataFrame(
            {"flux": np.array([], float), "quality_ok": np.array([], bool), "satellite": [], "file": []},
            index=empty,
        )
    merged, coarsest = frames[0], cadences[0]
    for frame, cadence in zip(frames[1:], cadences[1:]):
        tolerance = max(coarsest, cadence).value
        old_good, new_good = merged["quality_ok"].to_numpy(), frame["quality_ok"].to_numpy()
        near_old_good = _closer_than(frame.index.asi8, merged.index.asi8[old_good], tolerance)
        near_old_any = _closer_than(frame.index.asi8, merged.index.asi8, tolerance)
        drop_new = near_old_good | (~new_good & near_old_any)
        drop_old = ~old_good & _closer_than(merged.index.asi8, frame.index.asi8[new_good], tolerance)
        merged = pd.concat([merged[~drop_old], frame[~drop_new]]).sort_index(kind="stable")
        coarsest = max(coarsest, cadence)
    return merged


def _priority(info: XRSFile, position: int, primary_satellite: str | None) -> tuple:
    return (info.satellite != primary_satellite, -_satellite_number(info.satellite), info.cadence, position)


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------


class FidoXRSFetch:
    """Download the GOES XRS files of a time range with sunpy's Fido, into a cache folder.

    Files already in the folder are not downloaded again.

    Parameters
    ----------
    download_dir : path, optional
        Cache folder; default ``<sunpy download dir>/goes_xrs``.
    resolution : str
        ``"avg1m"`` (1-minute averages) or ``"flx1s"`` (full cadence).
    satellite : int, optional
        GOES satellite number; all available satellites when omitted.
    """

    def __init__(self, download_dir=None, resolution: str = "avg1m", satellite: int | None = None):
        if download_dir is None:
            import sunpy

            download_dir = Path(sunpy.config.get("downloads", "download_dir")) / "goes_xrs"
        self.download_dir = Path(download_dir)
        self.resolution = resolution
        self.satellite = satellite

    def query(self, start, end) -> list:
        """The Fido attributes of a search for ``[start, end]``."""
        from sunpy.net import attrs as a

        time_range = a.Time(utc_time(start), utc_time(end))
        query = [time_range, a.Instrument("XRS"), a.Resolution(self.resolution)]
        if self.satellite is not None:
            query.append(a.goes.SatelliteNumber(self.satellite))
        return query

    def __call__(self, start, end) -> list[Path]:
        from sunpy.net import Fido

        self.download_dir.mkdir(parents=True, exist_ok=True)
        result = Fido.search(*self.query(start, end))
        downloaded = Fido.fetch(result, path=str(self.download_dir / "{file}"), overwrite=False, progress=False)
        if downloaded.errors:
            raise ConnectionError(f"GOES XRS download failed for {start}..{end}: {downloaded.errors}")
        return [Path(p) for p in downloaded]


class GOESXRSSource:
    """GOES XRS flux for a time range, fetched day by day, with retries.

    Parameters
    ----------
    fetch : callable, optional
        ``fetch(start, end) -> list of paths`` for one UTC day chunk (the network call);
        default `FidoXRSFetch` into ``download_dir``.
    retries : int
        How many more times a failed day is tried; a day that still fails is reported with
        `warnings.warn` and left out.
    sleep : callable
        ``sleep(seconds)``; waits ``backoff * 2**attempt`` s between tries.
    download_dir : path, optional
        Cache folder of the default fetch.
    primary_satellite : str, optional
        Preferred satellite where files overlap (see `read_xrs`).
    backoff : float
        First wait in seconds.
    """

    def __init__(
        self,
        fetch=None,
        retries: int = 3,
        sleep=time.sleep,
        *,
        download_dir=None,
        primary_satellite: str | None = None,
        backoff: float = 2.0,
    ):
        self.fetch = fetch if fetch is not None else FidoXRSFetch(download_dir)
        self.retries = int(retries)
        self.sleep = sleep
        self.primary_satellite = primary_satellite
        self.backoff = float(backoff)

    def flux(self, start, end) -> XRSFlux:
        """Fetch and read the XRS flux between ``start`` and ``end`` (UTC)."""
        start, end = utc_time(start), utc_time(end)
        if end <= start:
            raise ValueError(f"end {end} must be after start {start}")
        paths, failed = [], []
        for day in pd.date_range(start.normalize(), (end - pd.Timedelta(1, "ns")).normalize(), freq="D"):
            chunk = (max(day, start), min(day + pd.Timedelta(days=1), end))
            try:
                paths.extend(p for p in self._fetch_day(*chunk) if p not in paths)
            except Exception as error:  # noqa: BLE001 - one bad day must not end the whole range
                reason = f"{type(error).__name__}: {error}"
                message = f"GOES XRS for {day.date()} left out after {self.retries + 1} tries: {reason}"
                warnings.warn(message, stacklevel=2)
                failed.append((f"{day.date()}", reason))
        flux = read_xrs(paths, primary_satellite=self.primary_satellite).truncate(start, end)
        flux.skipped.extend(failed)
        return flux

    def _fetch_day(self, start: pd.Timestamp, end: pd.Timestamp) -> list:
        return list(with_retries(self.fetch, start, end, retries=self.retries, backoff=self.backoff,
                                 sleep=self.sleep, what=f"GOES XRS download {start}..{end}"))


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip()


def _satellite_number(satellite: str | None) -> int:
    match = re.search(r"(\d+)", satellite or "")
    return int(match.group(1)) if match else -1


def _satellite_from_name(name: str, meta) -> str:
    """Satellite when sunpy cannot tell it: the ``platform`` attribute (``g15``) or the file name."""
    for text in (_text(meta.get("platform", "")), name):
        match = _SATELLITE_IN_NAME.search(text) or re.fullmatch(r"g(\d{1,2})", text, re.IGNORECASE)
        if match:
            return f"GOES-{int(match.group(1))}"
    return "unknown"


def _cadence(index: pd.DatetimeIndex) -> pd.Timedelta:
    if len(index) < 2:
        return pd.Timedelta(0)
    return pd.Timedelta(int(np.median(np.diff(index.asi8))), "ns")


def _nearest(samples: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest sorted sample to each query, and its distance (same int unit)."""
    right = np.clip(np.searchsorted(samples, queries), 0, len(samples) - 1)
    left = np.clip(right - 1, 0, len(samples) - 1)
    d_left, d_right = np.abs(queries - samples[left]), np.abs(samples[right] - queries)
    nearest = np.where(d_right < d_left, right, left)
    return nearest, np.minimum(d_left, d_right)


def _closer_than(queries: np.ndarray, samples: np.ndarray, tolerance: int) -> np.ndarray:
    if len(samples) == 0 or len(queries) == 0:
        return np.zeros(len(queries), dtype=bool)
    return _nearest(samples, queries)[1] < tolerance
