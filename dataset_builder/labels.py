"""The labelling rule: one GOES label per frame.

A frame's label is the largest GOES letter among the flares in progress at its observation time
(``start - window <= t_obs <= end + window``); else the letter of the GOES 1-8 A background
flux at ``t_obs`` where the flux is known; else ``"quiet"``. Flares are compared by peak flux on
the GOES-R (unscaled) scale; letters are given on the SWPC scale by default (``label_scale``),
the scale of the published classes of the SDO era (HEK, SWPC lists), so a frame during the
2012-03-07 X5.4 flare is "X" and one during an M9.8 is "M". The frame keeps that flare's peak
flux (log10, GOES-R scale), its published class and its HEK position.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from solar_diffusion.pipelines import GOES_R_SCALE, QUIET_LABEL, SWPC_SCALE, convert_flux_scale, flare_letter

LABEL_RULE = __doc__.split("\n\n")[1].replace("\n", " ")


def label_frames(t_obs, events: pd.DataFrame, xrs=None, window=pd.Timedelta(0), label_scale=SWPC_SCALE) -> pd.DataFrame:
    """Label observation times from a flare-event table and, optionally, XRS flux.

    ``events`` has the columns of ``flares.py``'s tables (start, end, goes_class, peak_flux on
    the GOES-R scale, hpc_x, hpc_y); ``xrs`` is an ``XRSFlux`` (or None). Returns one row per
    time: ``flare_class`` (the label), ``label_source`` ("flare", "xrs background" or "none"),
    ``peak_flux`` (log10 W m^-2, NaN without a flare), ``flare_goes_class``, ``flare_hpc_x``,
    ``flare_hpc_y`` and ``goes_flux_at_obs`` (W m^-2, GOES-R scale, NaN if unknown).

    >>> events = pd.DataFrame({"start": pd.to_datetime(["2012-03-07 00:02"]),
    ...     "end": pd.to_datetime(["2012-03-07 00:40"]), "goes_class": ["X5.4"],
    ...     "peak_flux": [5.4e-4 / 0.7], "hpc_x": [-475.1], "hpc_y": [397.1]})
    >>> label_frames(pd.to_datetime(["2012-03-07 00:30", "2012-03-07 02:00"]), events)["flare_class"].tolist()
    ['X', 'quiet']
    """
    def letter(goes_r_flux):
        return flare_letter(convert_flux_scale(goes_r_flux, GOES_R_SCALE, label_scale))

    times = pd.DatetimeIndex(pd.to_datetime(t_obs))
    window = pd.Timedelta(window)
    n = len(times)
    out = pd.DataFrame({
        "flare_class": [QUIET_LABEL] * n,
        "label_source": ["none"] * n,
        "peak_flux": np.full(n, np.nan),
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
            if np.isfinite(flux) and flux > 0:
                out.loc[i, ["flare_class", "label_source"]] = [letter(flux), "xrs background"]

    ev = events[(events["end"] + window >= times.min()) & (events["start"] - window <= times.max())]
    if len(ev):
        t = times.values[:, None]
        in_progress = (ev["start"].values[None, :] - window.to_timedelta64() <= t) & (
            t <= ev["end"].values[None, :] + window.to_timedelta64()
        )
        flux = np.where(in_progress, ev["peak_flux"].to_numpy(dtype=float)[None, :], -np.inf)
        best = flux.argmax(axis=1)
        has_flare = np.isfinite(flux[np.arange(n), best])
        rows = ev.iloc[best[has_flare]]
        idx = np.flatnonzero(has_flare)
        out.loc[idx, "flare_class"] = [letter(f) for f in rows["peak_flux"]]
        out.loc[idx, "label_source"] = "flare"
        out.loc[idx, "peak_flux"] = np.log10(rows["peak_flux"].to_numpy(dtype=float))
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
