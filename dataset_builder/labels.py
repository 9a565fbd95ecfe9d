"""The labelling rule (one GOES label per frame) and the flares of each frame.

A frame's label is the largest GOES letter among the flares in progress at its observation time
(``start - window <= t_obs <= end + window``); else the letter of the GOES 1-8 A background
flux at ``t_obs`` where the flux is known; else ``"quiet"``. Flares are compared by peak flux on
the GOES-R (unscaled) scale; letters are given on the SWPC scale by default (``label_scale``),
the scale of the published classes of the SDO era (HEK, SWPC lists), so a frame during the
2012-03-07 X5.4 flare is "X" and one during an M9.8 is "M". The frame keeps that flare's peak
flux (log10, GOES-R scale), its published class and its HEK position, and lists every flare in
progress, strongest first, with its position on the Sun and in the frame.

With forecast labels (``forecast_hours`` H, the builder's ``--forecast-hours``) a frame's label is
instead the largest GOES letter among the flares that peak in the H hours after its observation
time (``t_obs < peak <= t_obs + H``), "quiet" where none does: the label a flare predictor learns
(``training.experiments.flare_ahead``), with no XRS background letter. Each such flare's HEK
position, taken as at its peak, is rotated back to ``t_obs`` with the Sun's differential rotation
(sunpy's ``propagate_with_solar_surface``), so that it marks where the flare's region is in the
frame; a position that rotates behind the limb is off the disk. The builder leaves out frames with
a flare in progress (window included): a forecast model learns the Sun before a flare, not during
one.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from solar_diffusion.pipelines import (
    GOES_R_SCALE,
    QUIET_LABEL,
    SWPC_SCALE,
    convert_flux_scale,
    disk_center_px,
    flare_letter,
    image_center_px,
    rsun_px,
)
from solar_diffusion.times import iso_utc

LABEL_RULE = __doc__.split("\n\n")[1].replace("\n", " ")
FORECAST_RULE = __doc__.split("\n\n")[2].replace("\n", " ")

#: The fields of each frame's ``flares`` (one list per field, one entry per flare in progress,
#: strongest first); units in ``dataset_builder.card.COLUMNS``.
FLARE_FIELDS = ("goes_class", "log10_peak_flux_goes_r", "start", "peak", "end", "hpc_x", "hpc_y", "hgs_lat",
                "hgs_lon", "x_px", "y_px", "on_disk", "event_source")
#: Times compared at once when finding the flares in progress (bounds the memory of the comparison).
_TIMES_PER_BLOCK = 4096


def flares_in_progress(t_obs, events: pd.DataFrame, window=pd.Timedelta(0)) -> pd.DataFrame:
    """Every flare in progress at each time: one row per (time, flare).

    A flare is in progress at ``t`` where ``start - window <= t <= end + window`` (a flare
    without an end, NaT, never is). Rows are ordered as ``t_obs``, then strongest first (peak
    flux descending; equal fluxes in the order of ``events``), so a time's first row is the
    flare that sets its label.

    Parameters
    ----------
    t_obs : sequence of datetime-like
        Observation times, UTC.
    events : pandas.DataFrame
        A flare-event table of ``flares.py`` (``peak_flux`` linear, W m^-2, GOES-R scale).
    window : pandas.Timedelta
        Added before the start and after the end of every flare.

    Returns
    -------
    pandas.DataFrame
        ``frame`` (the position of the time in ``t_obs``), ``t_obs`` and the event columns of
        the flare (``peak_flux`` stays linear, W m^-2, GOES-R scale).

    Examples
    --------
    >>> events = pd.DataFrame({"start": pd.to_datetime(["2012-03-07 00:02", "2012-03-07 01:05"]),
    ...     "end": pd.to_datetime(["2012-03-07 00:40", "2012-03-07 01:23"]), "goes_class": ["X5.4", "X1.3"],
    ...     "peak_flux": [5.4e-4 / 0.7, 1.3e-4 / 0.7]})
    >>> pairs = flares_in_progress(pd.to_datetime(["2012-03-07 01:00"]), events, pd.Timedelta("30min"))
    >>> pairs[["frame", "goes_class"]].values.tolist()
    [[0, 'X5.4'], [0, 'X1.3']]
    """
    window = pd.Timedelta(window).to_timedelta64()
    return _flares_between(t_obs, events, events["start"].to_numpy(dtype="datetime64[ns]") - window,
                           events["end"].to_numpy(dtype="datetime64[ns]") + window)


def flares_ahead(t_obs, events: pd.DataFrame, hours: float) -> pd.DataFrame:
    """Every flare that peaks in the ``hours`` after each time (``t < peak <= t + hours``): one row
    per (time, flare), as ``flares_in_progress`` gives them (strongest first), with ``hpc_x`` and
    ``hpc_y`` rotated from the flare's peak to the time (``rotate_to``).

    >>> events = pd.DataFrame({"start": pd.to_datetime(["2012-03-07 00:02"]), "peak": pd.to_datetime(["2012-03-07 00:24"]),
    ...     "end": pd.to_datetime(["2012-03-07 00:40"]), "goes_class": ["X5.4"], "peak_flux": [5.4e-4 / 0.7],
    ...     "hpc_x": [-475.1], "hpc_y": [397.1]})
    >>> pairs = flares_ahead(pd.to_datetime(["2012-03-06 00:00", "2012-03-06 23:00", "2012-03-07 00:24"]), events, 24)
    >>> pairs["frame"].tolist(), [round(x) for x in pairs["hpc_x"]]  # 24 h 24 min before the peak; 1 h 24 min; at it
    ([1], [-486])
    """
    if not (np.isfinite(hours) and hours > 0):
        raise ValueError(f"--forecast-hours must be a positive number of hours, got {hours!r}")
    peak = events["peak"].to_numpy(dtype="datetime64[ns]")
    pairs = _flares_between(t_obs, events, peak - np.timedelta64(int(round(hours * 3600e9)), "ns"),
                            peak - np.timedelta64(1, "ns"))
    if len(pairs) and "hpc_x" in pairs.columns:
        pairs["hpc_x"], pairs["hpc_y"] = rotate_to(pairs["hpc_x"], pairs["hpc_y"], pairs["peak"], pairs["t_obs"])
    return pairs


def rotate_to(hpc_x, hpc_y, from_times, to_times) -> tuple[np.ndarray, np.ndarray]:
    """Helioprojective positions (arcsec, seen from Earth) at ``from_times`` moved to
    ``to_times`` with the Sun's differential rotation (sunpy's ``propagate_with_solar_surface``,
    all at once); NaN where unknown, off the disk, or rotated behind the limb.

    >>> x, y = rotate_to([0.0, 990.0, -960.0], [0.0, 0.0, 0.0], ["2012-03-07 12:00"] * 3, ["2012-03-06 12:00"] * 3)
    >>> round(float(x[0])), bool(np.isnan(x[1])), bool(np.isnan(x[2]))  # centre; above the limb; rotated behind it
    (-221, True, True)
    """
    x, y = np.asarray(hpc_x, dtype=float).copy(), np.asarray(hpc_y, dtype=float).copy()
    known = np.isfinite(x) & np.isfinite(y)
    if not known.any():
        return x, y
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time
    from sunpy.coordinates import Heliocentric, Helioprojective, propagate_with_solar_surface

    def times(values):
        return Time(pd.DatetimeIndex(pd.to_datetime(np.asarray(values)[known])).values.astype("datetime64[ns]"),
                    scale="utc")

    start = SkyCoord(x[known] * u.arcsec, y[known] * u.arcsec,
                     frame=Helioprojective(observer="earth", obstime=times(from_times)))
    with propagate_with_solar_surface(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*2D helioprojective coordinates to 3D")  # off the disk: NaN
        moved = start.transform_to(Helioprojective(observer="earth", obstime=times(to_times)))
    # a point rotated behind the limb still projects onto the disk: keep only the near hemisphere
    near_side = moved.transform_to(Heliocentric(observer="earth", obstime=moved.obstime)).z.to_value(u.km) > 0
    x[known] = np.where(near_side, moved.Tx.to_value(u.arcsec), np.nan)
    y[known] = np.where(near_side, moved.Ty.to_value(u.arcsec), np.nan)
    return x, y


def _flares_between(t_obs, events: pd.DataFrame, first, last) -> pd.DataFrame:
    """The (time, flare) pairs with ``first <= t <= last`` (per-event datetime64[ns] bounds; NaT
    never matches), ordered as ``t_obs``, then strongest first (``flares_in_progress``)."""
    times = pd.DatetimeIndex(pd.to_datetime(t_obs)).values.astype("datetime64[ns]")
    columns = ["frame", "t_obs", *events.columns]
    if len(times) == 0 or len(events) == 0:
        return pd.DataFrame({name: [] for name in columns}).astype({"frame": int})
    start, end = first, last
    near = np.flatnonzero((end >= times.min()) & (start <= times.max()))  # NaT compares False
    frames, flares = [], []
    for first in range(0, len(times), _TIMES_PER_BLOCK):
        block = times[first:first + _TIMES_PER_BLOCK, None]
        i, j = np.nonzero((start[near][None, :] <= block) & (block <= end[near][None, :]))
        frames.append(i + first)
        flares.append(near[j])
    frames, flares = np.concatenate(frames), np.concatenate(flares)
    flux = events["peak_flux"].to_numpy(dtype=float)[flares]
    order = np.lexsort((flares, -np.nan_to_num(flux, nan=-np.inf), frames))
    frames, flares = frames[order], flares[order]
    pairs = events.iloc[flares].reset_index(drop=True)
    pairs.insert(0, "t_obs", times[frames])
    pairs.insert(0, "frame", frames)
    return pairs


def flare_positions(hpc_x, hpc_y, t_obs, image_size: int, fov_rsun: float) -> dict:
    """Stonyhurst coordinates and pixel positions of helioprojective positions at their times.

    Each position (HEK's ``hpc_x``, ``hpc_y`` in arcsec, seen from Earth) is converted with sunpy
    at its own time (all at once). The pixel position is in the geometry of the packaged images:
    a disk-centred square ``fov_rsun`` solar radii wide, ``image_size`` px, FITS row order (x
    grows westward, y northward; 0-based pixel centres), the plate scale set by the solar radius
    at ``t_obs`` (``sunpy.coordinates.sun.angular_radius``).

    Parameters
    ----------
    hpc_x, hpc_y : array-like of float
        Helioprojective longitude and latitude in arcsec; NaN where unknown.
    t_obs : array-like of datetime-like
        The time of each position (the frame's observation time), UTC.
    image_size : int
        Width and height of the packaged images in pixels.
    fov_rsun : float
        Their field of view in solar radii.

    Returns
    -------
    dict of numpy.ndarray
        ``hgs_lat``, ``hgs_lon`` (degrees; NaN off the disk or without a position), ``x_px``,
        ``y_px`` (NaN without a position; beyond the limb they are where the position falls in
        the image) and ``on_disk`` (bool: a position on the visible disk, within 1 R_sun).

    Examples
    --------
    >>> p = flare_positions([-475.076, np.nan, 990.0], [397.083, np.nan, 0.0], ["2012-03-07 00:24"] * 3, 64, 2.3)
    >>> np.round(p["hgs_lat"], 2).tolist(), np.round(p["x_px"], 1).tolist(), p["on_disk"].tolist()
    ([17.99, nan, nan], [17.8, nan, 60.0], [True, False, False])
    """
    hpc_x, hpc_y = np.asarray(hpc_x, dtype=float), np.asarray(hpc_y, dtype=float)
    n = len(hpc_x)
    geometry = {"image_size": int(image_size), "fov_rsun": float(fov_rsun),
                "disk_center_px": [image_center_px(image_size)] * 2}
    out = {name: np.full(n, np.nan) for name in ("hgs_lat", "hgs_lon", "x_px", "y_px")}
    out["on_disk"] = np.zeros(n, dtype=bool)
    known = np.isfinite(hpc_x) & np.isfinite(hpc_y)
    if not known.any():
        return out
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time
    from sunpy.coordinates import HeliographicStonyhurst, Helioprojective, sun

    times = Time(pd.DatetimeIndex(pd.to_datetime(np.asarray(t_obs)[known])).values.astype("datetime64[ns]"),
                 scale="utc")
    observed = SkyCoord(hpc_x[known] * u.arcsec, hpc_y[known] * u.arcsec,
                        frame=Helioprojective(observer="earth", obstime=times))
    stonyhurst = observed.transform_to(HeliographicStonyhurst(obstime=times))
    out["hgs_lat"][known] = stonyhurst.lat.to_value(u.deg)
    out["hgs_lon"][known] = stonyhurst.lon.wrap_at(180 * u.deg).to_value(u.deg)
    out["on_disk"][known] = np.isfinite(out["hgs_lat"][known])
    px_per_arcsec = rsun_px(geometry) / sun.angular_radius(times).to_value(u.arcsec)
    cx, cy = disk_center_px(geometry)
    out["x_px"][known] = cx + hpc_x[known] * px_per_arcsec
    out["y_px"][known] = cy + hpc_y[known] * px_per_arcsec  # FITS row order: row 0 is south
    return out


def frame_flares(t_obs, events: pd.DataFrame, window=pd.Timedelta(0), image_size: int = 128,
                 fov_rsun: float = 2.3, forecast_hours: float | None = None) -> list[dict]:
    """The flares in progress at each time (with ``forecast_hours``: those peaking in the hours
    after it, ``flares_ahead``, at their positions rotated to it), as the dataset's ``flares``
    column: per time, a dict of lists, one list per field of `FLARE_FIELDS`, one entry per flare,
    strongest first.

    Positions come from `flare_positions` (all flares of all times converted at once); times
    are ISO 8601 UTC strings (`times.iso_utc`; None where unknown); ``log10_peak_flux_goes_r`` is log10
    of the peak 1-8 A flux in W m^-2 on the GOES-R scale; ``event_source`` names the list.

    >>> events = pd.DataFrame({"start": pd.to_datetime(["2012-03-07 00:02"]),
    ...     "peak": pd.to_datetime(["2012-03-07 00:24"]), "end": pd.to_datetime(["2012-03-07 00:40"]),
    ...     "goes_class": ["X5.4"], "peak_flux": [5.4e-4 / 0.7], "hpc_x": [-475.076], "hpc_y": [397.083],
    ...     "source": ["hek"]})
    >>> flares = frame_flares(pd.to_datetime(["2012-03-07 00:30", "2012-03-07 02:00"]), events, image_size=64)
    >>> first, second = flares
    >>> first["goes_class"], round(first["log10_peak_flux_goes_r"][0], 3), first["on_disk"], second["goes_class"]
    (['X5.4'], -3.113, [True], [])
    """
    n = len(t_obs)
    pairs = flares_ahead(t_obs, events, forecast_hours) if forecast_hours else flares_in_progress(t_obs, events, window)
    nan = np.full(len(pairs), np.nan)

    def column(name, default):
        return pairs[name] if name in pairs.columns else pd.Series([default] * len(pairs), dtype=object)

    def utc(name):
        return np.array(iso_utc(column(name, pd.NaT)), dtype=object)

    hpc_x = pd.to_numeric(column("hpc_x", np.nan)).to_numpy(dtype=float) if len(pairs) else nan
    hpc_y = pd.to_numeric(column("hpc_y", np.nan)).to_numpy(dtype=float) if len(pairs) else nan
    position = flare_positions(hpc_x, hpc_y, pairs["t_obs"], image_size, fov_rsun)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_flux = np.log10(pairs["peak_flux"].to_numpy(dtype=float))
    fields = {
        "goes_class": pairs["goes_class"].astype(str).to_numpy(dtype=object),
        "log10_peak_flux_goes_r": log_flux.astype(np.float32),
        "start": utc("start"),
        "peak": utc("peak"),
        "end": utc("end"),
        "hpc_x": hpc_x.astype(np.float32),
        "hpc_y": hpc_y.astype(np.float32),
        "hgs_lat": position["hgs_lat"].astype(np.float32),
        "hgs_lon": position["hgs_lon"].astype(np.float32),
        "x_px": position["x_px"].astype(np.float32),
        "y_px": position["y_px"].astype(np.float32),
        "on_disk": position["on_disk"],
        "event_source": column("source", "unknown").astype(str).to_numpy(dtype=object),
    }
    bounds = np.searchsorted(pairs["frame"].to_numpy(dtype=int), np.arange(1, n))
    per_frame = {name: np.split(values, bounds) for name, values in fields.items()}
    return [{name: per_frame[name][k].tolist() for name in FLARE_FIELDS} for k in range(n)]


def label_frames(t_obs, events: pd.DataFrame, xrs=None, window=pd.Timedelta(0), label_scale=SWPC_SCALE,
                 forecast_hours: float | None = None) -> pd.DataFrame:
    """Label observation times from a flare-event table and, optionally, XRS flux; with
    ``forecast_hours``, by the flares that peak in those hours after each time (the module's
    forecast rule: no background letter, positions rotated to the time).

    ``events`` has the columns of ``flares.py``'s tables (start, end, goes_class, peak_flux
    linear in W m^-2 on the GOES-R scale, hpc_x, hpc_y); ``xrs`` is an ``XRSFlux`` (or None).
    Returns one row per time: ``flare_class`` (the label), ``label_source`` ("flare", "xrs
    background" or "none"), and of the flare that sets the label (the strongest in progress,
    `flares_in_progress`'s first): ``flare_log10_peak_flux_goes_r`` (log10 of its peak flux in
    W m^-2, GOES-R scale; NaN without a flare), ``flare_goes_class``, ``flare_hpc_x``,
    ``flare_hpc_y``; and ``goes_flux_at_obs`` (W m^-2, linear, GOES-R scale, NaN if unknown).

    >>> events = pd.DataFrame({"start": pd.to_datetime(["2012-03-07 00:02"]),
    ...     "end": pd.to_datetime(["2012-03-07 00:40"]), "goes_class": ["X5.4"],
    ...     "peak_flux": [5.4e-4 / 0.7], "hpc_x": [-475.1], "hpc_y": [397.1]})
    >>> label_frames(pd.to_datetime(["2012-03-07 00:30", "2012-03-07 02:00"]), events)["flare_class"].tolist()
    ['X', 'quiet']
    >>> events["peak"] = pd.to_datetime(["2012-03-07 00:24"])
    >>> label_frames(pd.to_datetime(["2012-03-06 06:00", "2012-03-07 00:30"]), events, forecast_hours=24)["flare_class"].tolist()
    ['X', 'quiet']
    """
    def letter(goes_r_flux):
        return flare_letter(convert_flux_scale(goes_r_flux, GOES_R_SCALE, label_scale))

    times = pd.DatetimeIndex(pd.to_datetime(t_obs))
    n = len(times)
    out = pd.DataFrame({
        "flare_class": [QUIET_LABEL] * n,
        "label_source": ["none"] * n,
        "flare_log10_peak_flux_goes_r": np.full(n, np.nan),
        "flare_goes_class": [None] * n,
        "flare_hpc_x": np.full(n, np.nan),
        "flare_hpc_y": np.full(n, np.nan),
        "goes_flux_at_obs": np.full(n, np.nan),
    })
    if n == 0:
        return out
    if xrs is not None:
        out["goes_flux_at_obs"] = np.asarray(xrs.flux_at(times), dtype=float)
        for i, flux in enumerate(out["goes_flux_at_obs"]):
            if np.isfinite(flux) and flux > 0 and not forecast_hours:
                out.loc[i, ["flare_class", "label_source"]] = [letter(flux), "xrs background"]

    pairs = flares_ahead(times, events, forecast_hours) if forecast_hours else flares_in_progress(times, events, window)
    pairs = pairs[np.isfinite(pairs["peak_flux"].to_numpy(dtype=float))]
    rows = pairs[~pairs["frame"].duplicated()]
    if len(rows):
        idx = rows["frame"].to_numpy(dtype=int)
        out.loc[idx, "flare_class"] = [letter(f) for f in rows["peak_flux"]]
        out.loc[idx, "label_source"] = "flare"
        out.loc[idx, "flare_log10_peak_flux_goes_r"] = np.log10(rows["peak_flux"].to_numpy(dtype=float))
        out.loc[idx, "flare_goes_class"] = rows["goes_class"].to_numpy()
        out.loc[idx, "flare_hpc_x"] = rows["hpc_x"].to_numpy(dtype=float)
        out.loc[idx, "flare_hpc_y"] = rows["hpc_y"].to_numpy(dtype=float)
    return out


def label_coverage(t_obs, events: pd.DataFrame, xrs=None, known_gaps=(), max_quiet="14D") -> dict:
    """Which frames' labels the sources cannot vouch for: frames before the first or after the
    last event of the flare lists, inside a known gap of them, or in a stretch longer than
    ``max_quiet`` with no flare in progress (``flares.report_gaps``; near solar minimum such
    stretches can be real); and, with ``xrs``, frames outside the XRS coverage
    (``XRSFlux.coverage``), whose background letter is unknown.

    >>> from solar_diffusion.dataset_builder.flares import empty_events
    >>> report = label_coverage(pd.to_datetime(["2012-03-01", "2012-04-01"]), empty_events())
    >>> report["frames_in_flare_list_gaps"], report["flare_list_gaps"]
    (2, [['2012-03-01 00:00:00', '2012-04-01 00:00:00']])
    """
    from solar_diffusion.dataset_builder.flares import report_gaps

    times = pd.DatetimeIndex(pd.to_datetime(t_obs))
    report = {"max_quiet": str(pd.Timedelta(max_quiet)), "flare_list_gaps": [], "frames_in_flare_list_gaps": 0}
    if len(times) == 0:
        return report
    known_gaps = list(known_gaps)
    first, last = (events["start"].min(), events["end"].fillna(events["peak"]).max()) if len(events) else (None, None)
    if first is None or pd.isna(first) or times.min() < first:  # images before the lists begin
        known_gaps.append((times.min(), times.max() if first is None or pd.isna(first) else min(first, times.max())))
    if last is not None and not pd.isna(last) and times.max() > last:  # images after the lists end
        known_gaps.append((max(last, times.min()), times.max()))
    gaps = report_gaps(events, times.min(), times.max(), known_gaps, max_quiet)
    in_gap = np.zeros(len(times), bool)
    for start, end in gaps:
        in_gap |= (times >= start) & (times <= end)
    report["flare_list_gaps"] = [[str(start), str(end)] for start, end in gaps]
    report["frames_in_flare_list_gaps"] = int(in_gap.sum())
    if xrs is not None:
        covered = np.zeros(len(times), bool)
        for start, end in xrs.coverage():
            covered |= (times >= start) & (times <= end)
        report["frames_without_xrs"] = int((~covered).sum())
    return report
