"""The labelling rule on real GOES-16 data: flare lists and XRS background flux together."""

import numpy as np
import pandas as pd

from solar_diffusion.dataset_builder.flares import read_goes16_summary, read_hek_csv
from solar_diffusion.dataset_builder.goes import read_xrs
from solar_diffusion.dataset_builder.labels import label_frames


def test_flares_then_background_then_quiet(shared_data, netcdf_xrsb):
    xrs = read_xrs(sorted((shared_data / "goes_xrs").glob("sci_xrsf-l2-avg1m_g16_*.nc")))
    events = read_hek_csv(shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv")
    no_flare = next(t for t in pd.date_range("2017-09-12", periods=48, freq="h")
                    if not ((events["start"] <= t) & (t <= events["end"])).any())
    times = pd.to_datetime(["2017-09-06 12:02", "2017-09-06 12:30", "2017-09-04 03:00", no_flare])
    labels = label_frames(times, events, xrs)
    # the X9.3 of 2017-09-06 (HEK 11:53-12:10) is in progress at 12:02
    assert labels.loc[0, ["flare_class", "label_source", "flare_goes_class"]].tolist() == ["X", "flare", "X9.3"]
    assert labels.loc[0, "flare_log10_peak_flux_goes_r"] == np.log10(9.3e-4 / 0.7)
    # after it ends the XRS flux still decays: its letter, on the SWPC scale, labels the frame
    raw = {day: netcdf_xrsb(shared_data / "goes_xrs" / f"sci_xrsf-l2-avg1m_g16_d{day}_v2-2-0.nc")
           for day in ("20170904", "20170906")}
    assert labels.loc[1, "goes_flux_at_obs"] == raw["20170906"].loc["2017-09-06 12:30", "flux"]  # 2.65e-4
    swpc_flux = labels.loc[1, "goes_flux_at_obs"] * 0.7
    assert labels.loc[1, "label_source"] == "xrs background"
    assert labels.loc[1, "flare_class"] == "ABCMX"[int(np.clip(np.floor(np.log10(swpc_flux)) + 8, 0, 4))] == "X"
    # 2017-09-04 03:00 lies between two HEK flares (C1.1 02:18-02:29, C1.2 03:33-03:42): the
    # background flux, 2.26e-6 W m^-2 (C1.6 on the SWPC scale), labels it
    assert labels.loc[2, "goes_flux_at_obs"] == raw["20170904"].loc["2017-09-04 03:00", "flux"]
    assert labels.loc[2, ["flare_class", "label_source"]].tolist() == ["C", "xrs background"]
    assert np.isnan(labels.loc[2, "flare_log10_peak_flux_goes_r"]) and labels.loc[2, "flare_goes_class"] is None
    # outside the XRS files and with no flare: quiet
    assert labels.loc[3, ["flare_class", "label_source"]].tolist() == ["quiet", "none"]
    assert np.isnan(labels.loc[3, "goes_flux_at_obs"])


def test_window_widens_the_flare_interval(shared_data):
    events = read_goes16_summary(shared_data / "flare_lists" / "goes16_flare_summary_2017-2024.csv")
    x = events[events["goes_class"].str.startswith("X")].iloc[0]
    before = [x["start"] - pd.Timedelta("10min")]
    assert label_frames(before, events.iloc[[x.name]])["flare_class"].tolist() == ["quiet"]
    widened = label_frames(before, events.iloc[[x.name]], window=pd.Timedelta("15min"))
    assert widened["flare_class"].tolist() == ["X"]
