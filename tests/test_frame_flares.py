"""Every flare in progress at a frame, with its strength, times and position (issue 16, the
dataset schema), on real 2012 frames and the real HEK and SWPC flare lists."""

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from solar_diffusion import splits
from solar_diffusion.dataset_builder.build import SCHEMA_VERSION, BuildConfig, index_images, plan_build
from solar_diffusion.dataset_builder.flares import read_hek_csv
from solar_diffusion.pipelines import ClipLogNormalization
from solar_diffusion.times import utc_time

CHANNELS = ("171", "131", "94")
WINDOW = 30  # minutes: the 2012-03-07 01:00 frame then has the X5.4 and the X1.3 in progress
LETTER_FLUX = {"A": 1e-8, "B": 1e-7, "C": 1e-6, "M": 1e-5, "X": 1e-4}
HEK_CSV = ("flare_lists", "hek_flares_2003-09_2023-12.csv")
SWPC_CSV = ("flare_lists", "swpc_events_1996-2018.csv")
#: The release before the ``flares`` column (its builds have schema version 1).
RELEASE_COMMIT = "cc9878f3da84d71be2309a087196303847c66041"
FRAME_COLUMNS = ("image", "flare_class", "t_obs", "label_source", "flare_goes_class", "flare_hpc_x", "flare_hpc_y",
                 "flare_log10_peak_flux_goes_r", "flares")


@pytest.fixture(scope="module")
def flare_build(shared_data, real_dataset_of_days, tmp_path_factory) -> Path:
    """64 px frames of 2012-03-07 (X5.4, X1.3) and 2012-03-09 (M6.3) in 171, 131 and 94 A."""
    return real_dataset_of_days(shared_data, tmp_path_factory.mktemp("flares") / "ds", ["03-07", "03-09"], 64,
                                channels=CHANNELS, window_minutes=WINDOW)


def frames_of(dataset) -> dict:
    """The rows of a build's train split by their observation time."""
    ds = splits.load_split(dataset, "train", columns=FRAME_COLUMNS)
    rows = [ds[i] for i in range(len(ds))]
    return {utc_time(str(row["t_obs"])): row for row in rows}


def hek_rows(shared_data, days) -> list[dict]:
    """The HEK export's rows (deduplicated) of flares that start on ``days`` ("YYYY-MM-DD"), as text."""
    with open(shared_data.joinpath(*HEK_CSV), newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["GEV_START"][:10] in days]
    return [dict(r) for r in {tuple(r.items()): r for r in rows}.values()]


def flux_of(goes_class: str) -> float:
    """GOES-R peak flux of an SWPC-scale class, by hand."""
    return float(goes_class[1:]) * LETTER_FLUX[goes_class[0]] / 0.7


def test_every_flare_in_progress_is_listed_strongest_first(shared_data, flare_build):
    rows = hek_rows(shared_data, {f"2012-03-{d:02d}" for d in range(5, 11)})
    window = pd.Timedelta(minutes=WINDOW)
    frames = frames_of(flare_build)
    assert len(frames) == 36  # 2012-03-07 07:00 (a blank 171 Å plane) is kept out by the solar-disk check
    several = 0
    for t, frame in frames.items():
        expected = sorted(((flux_of(r["GOES_CLASS"]), r["GOES_CLASS"], r["GEV_START"], r["GEV_PEAK"], r["GEV_END"])
                           for r in rows if pd.Timestamp(r["GEV_START"]) - window <= t <= pd.Timestamp(r["GEV_END"])
                           + window), key=lambda f: -f[0])
        flares = frame["flares"]
        got = [(c, pd.Timestamp(s).strftime("%Y-%m-%dT%H:%M:%S"), pd.Timestamp(p).strftime("%Y-%m-%dT%H:%M:%S"),
                pd.Timestamp(e).strftime("%Y-%m-%dT%H:%M:%S"))
               for c, s, p, e in zip(flares["goes_class"], flares["start"], flares["peak"], flares["end"])]
        assert got == [f[1:] for f in expected], t
        np.testing.assert_allclose(flares["log10_peak_flux_goes_r"], [math.log10(f[0]) for f in expected], atol=1e-6)
        assert flares["log10_peak_flux_goes_r"].dtype == np.float32
        several += len(got) > 1
        # the first flare is the one that sets the label
        if got:
            assert frame["label_source"] == "flare" and frame["flare_goes_class"] == got[0][0]
            assert frame["flare_log10_peak_flux_goes_r"] == flares["log10_peak_flux_goes_r"][0]
            assert (frame["flare_hpc_x"], frame["flare_hpc_y"]) == (flares["hpc_x"][0], flares["hpc_y"][0])
        else:
            assert frame["label_source"] == "none" and np.isnan(frame["flare_log10_peak_flux_goes_r"])
    assert list(frames[pd.Timestamp("2012-03-07 01:00:01")]["flares"]["goes_class"]) == ["X5.4", "X1.3"]
    info = json.loads((flare_build / "build_info.json").read_text())
    assert info["schema_version"] == SCHEMA_VERSION == 4
    assert info["flare_positions"]["frames_with_several_flares"] == several > 0
    assert info["flare_positions"]["flares_on_disk"] == info["flare_positions"]["flares"]  # 2012 HEK: all on the disk


@pytest.mark.parametrize("t_obs, goes_class, tolerance_px", [
    ("2012-03-07 00:00:01", "X5.4", 1.5),  # measured 0.2 px
    ("2012-03-09 03:19:25", "M6.3", 3.0),  # measured 2.1 px (the 94 A plane is of 03:19, before its 03:22 start)
])
def test_pixel_position_is_where_94_and_131_are_brightest(flare_build, t_obs, goes_class, tolerance_px):
    frame = frames_of(flare_build)[pd.Timestamp(t_obs)]
    flares = frame["flares"]
    k = list(flares["goes_class"]).index(goes_class)
    x, y = flares["x_px"][k], flares["y_px"][k]
    for channel in ("94", "131"):
        plane = frame["image"][CHANNELS.index(channel)].astype(float)
        row, column = np.unravel_index(plane.argmax(), plane.shape)
        assert math.hypot(column - x, row - y) <= tolerance_px, (channel, (column, row), (x, y))
        # row order: the image is in FITS order (row 0 south), so the north-up row would miss by far
        assert math.hypot(column - x, row - (63 - y)) > 10
    assert y > 31.5  # the flares of March 2012 are in the north


def test_stonyhurst_position_is_sunpys_at_the_frame_time(flare_build):
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from sunpy.coordinates import HeliographicStonyhurst, Helioprojective

    t_obs = pd.Timestamp("2012-03-07 00:00:01")
    flares = frames_of(flare_build)[t_obs]["flares"]
    assert flares["goes_class"][0] == "X5.4" and flares["on_disk"][0]
    assert (flares["hpc_x"][0], flares["hpc_y"][0]) == (np.float32(-475.076), np.float32(397.083))  # HEK's
    direct = SkyCoord(-475.076 * u.arcsec, 397.083 * u.arcsec,
                      frame=Helioprojective(observer="earth", obstime=t_obs.isoformat())).transform_to(
        HeliographicStonyhurst)
    assert flares["hgs_lat"][0] == pytest.approx(direct.lat.to_value(u.deg), abs=1e-4)
    assert flares["hgs_lon"][0] == pytest.approx(direct.lon.wrap_at(180 * u.deg).to_value(u.deg), abs=1e-4)
    assert 17 < flares["hgs_lat"][0] < 19 and -32 < flares["hgs_lon"][0] < -30  # NOAA 11429, N18E31


def test_flares_without_a_usable_position_are_counted_and_said(shared_data, tmp_path, capsys):
    """The CLI with two real lists: HEK's export without the X5.4 row (so only the SWPC list,
    which has no positions, gives it) and with the M6.3 moved beyond the limb (1.02 R_sun, its
    direction kept: a real-derived row; no 2012 HEK flare lies off the disk)."""
    from sunpy.coordinates import sun

    from solar_diffusion.cli import main

    rows = [r for r in hek_rows(shared_data, {"2012-03-06", "2012-03-07", "2012-03-08", "2012-03-09"})
            if r["GOES_CLASS"] != "X5.4"]
    m63 = next(r for r in rows if r["GOES_CLASS"] == "M6.3")
    x, y = float(m63["AIA_XCEN"]), float(m63["AIA_YCEN"])
    rsun_arcsec = sun.angular_radius("2012-03-09T03:19:25").to_value("arcsec")  # at the frame's time
    scale = 1.02 * rsun_arcsec / math.hypot(x, y)
    m63["AIA_XCEN"], m63["AIA_YCEN"] = f"{x * scale:.3f}", f"{y * scale:.3f}"
    hek = tmp_path / "hek.csv"
    with open(hek, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    index = pd.read_csv(shared_data / "sdo_browse_2012" / "index.csv")
    index = index[index["file"].str.contains("20120307_|20120309_")]
    index["file"] = [str(shared_data / "sdo_browse_2012" / f) for f in index["file"]]
    index.to_csv(tmp_path / "index.csv", index=False)
    out = tmp_path / "ds"
    assert main(["build-dataset", "--images", tmp_path / "index.csv", "--flare-list", hek, "--flare-list",
                 shared_data.joinpath(*SWPC_CSV), "--size", "16", "--window", str(WINDOW), "--out", out]) == 0
    assert "2 of the 15 flares in progress at the frames have no usable position" in capsys.readouterr().err

    frames = frames_of(out)
    x54 = frames[pd.Timestamp("2012-03-07 00:00:01")]["flares"]
    assert (x54["goes_class"][0], x54["event_source"][0], bool(x54["on_disk"][0])) == ("X5.4", "swpc", False)
    assert all(np.isnan(x54[f][0]) for f in ("hpc_x", "hpc_y", "hgs_lat", "hgs_lon", "x_px", "y_px"))
    m = frames[pd.Timestamp("2012-03-09 03:19:25")]["flares"]
    k = list(m["goes_class"]).index("M6.3")
    assert not m["on_disk"][k] and np.isnan(m["hgs_lat"][k]) and np.isnan(m["hgs_lon"][k])
    assert math.hypot(m["x_px"][k] - 7.5, m["y_px"][k] - 7.5) == pytest.approx(1.02 * 16 / 2.3, rel=1e-4)
    # the flares both lists give keep HEK's position (the X1.3 is in the SWPC list too)
    x13 = frames[pd.Timestamp("2012-03-07 01:00:01")]["flares"]
    assert list(x13["goes_class"]) == ["X5.4", "X1.3"] and x13["event_source"][1] == "hek" and x13["on_disk"][1]

    info = json.loads((out / "build_info.json").read_text())
    positions = info["flare_positions"]
    assert (positions["flares"], positions["flares_without_position"], positions["flares_off_disk"]) == (15, 1, 1)
    assert positions["frame_entries_without_position"] == 2  # the X5.4 is in progress at 00:00 and 01:00
    assert positions["frame_entries_off_disk"] == 1
    entries = sum(len(f["flares"]["goes_class"]) for f in frames.values())
    assert positions["frame_entries"] == entries == positions["frame_entries_on_disk"] + 3
    card = (out / "README.md").read_text()
    assert "**2 have no usable position**: 1 have none in the flare lists (2 entries) and 1 lie off the disk" in card
    for column in ("flare_log10_peak_flux_goes_r", "flares.hgs_lat", "flares.x_px", "flares.on_disk"):
        assert f"| `{column}` |" in card


def test_the_label_flare_heads_the_list_in_every_2012_frame(shared_data):
    index = index_images(shared_data / "sdo_browse_2012" / "index.csv")
    events = read_hek_csv(shared_data.joinpath(*HEK_CSV))
    plan, _, _ = plan_build(index, events, None, BuildConfig(out="unused", size=64))
    heads = [f["goes_class"][0] if f["goes_class"] else None for f in plan["flares"]]
    assert heads == plan["flare_goes_class"].tolist()
    fluxes = [f["log10_peak_flux_goes_r"] for f in plan["flares"]]
    assert all(list(f) == sorted(f, reverse=True) for f in fluxes)
    n = np.array([len(f) for f in fluxes])
    assert (n > 1).sum() == 52 and n.sum() == 494  # window 0: hundreds of flares, several at once in 52 frames
    on_disk = np.concatenate([f["on_disk"] for f in plan["flares"]])
    assert on_disk.all()  # every 2012 HEK flare has a position on the disk


def release_build(new_build: Path, out: Path) -> Path:
    """A build as the release made it (schema 1), from a build of this version with the same
    settings: its shards without the columns this version added (their ``datasets`` features
    re-derived, as the release wrote them) and its record without the keys it added.
    ``test_release_build_is_faithful`` checks this against the release's own code."""
    from datasets import ClassLabel, Dataset, Value
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    shutil.copytree(new_build, out)
    for path in (out / "default").glob("*.parquet"):  # schema 1 had t_obs as an Arrow timestamp, and peak_flux
        ds = Dataset.from_parquet(str(path), keep_in_memory=True)
        ds = ds.rename_column("flare_log10_peak_flux_goes_r", "peak_flux").remove_columns(["flares"])
        features = ds.features.copy()
        features["t_obs"] = Value("timestamp[us, tz=UTC]")
        ds.map(lambda row: {"t_obs": pd.Timestamp(row["t_obs"]).to_pydatetime()}, features=features,
               keep_in_memory=True).to_parquet(str(path))
    info = json.loads((out / "build_info.json").read_text())
    for key in ("schema_version", "flare_positions", "duplicates_dropped"):
        info.pop(key, None)
    # the release's vocabulary held only the labels present, so its ids differ from today's fixed ones
    present = [c for c in info["vocabulary"] if any(counts.get(c) for counts in info["counts"].values())]
    for path in (out / "default").glob("*.parquet"):
        ds = Dataset.from_parquet(str(path), keep_in_memory=True)
        names = ds.features["flare_class"].names
        ds = ds.map(lambda row: {"flare_class": present.index(names[row["flare_class"]])}, keep_in_memory=True)
        ds.cast_column("flare_class", ClassLabel(names=present)).to_parquet(str(path))
    info["vocabulary"] = present
    info["counts"] = {split: {c: n for c, n in counts.items() if c in present} for split, counts in info["counts"].items()}
    (out / "build_info.json").write_text(json.dumps(info, indent=1))
    return out


def test_release_builds_still_load_their_images_and_are_rebuilt_to_train(flare_build, tmp_path):
    old = release_build(flare_build, tmp_path / "old")
    ds = splits.load_split(flare_build, "train")  # the training columns
    assert len(ds) == 36 and np.nanmax(ds["flare_log10_peak_flux_goes_r"]) == pytest.approx(math.log10(5.4e-4 / 0.7),
                                                                                          abs=1e-6)
    with pytest.raises(ValueError, match="rebuild"):  # schema 1 has no flare_log10_peak_flux_goes_r
        splits.load_split(old, "train")
    for dataset in (flare_build, old):
        images = splits.model_space_split(dataset, "train", ClipLogNormalization.for_unit("browse"), 32)
        # 37 frames less 2012-03-07 07:00, a composite with a blank 171 Å plane that the solar-disk check keeps out
        assert images.counts() == {"quiet": 23, "C": 10, "M": 1, "X": 2} and images.images.shape == (36, 3, 32, 32)
        assert splits.dataset_info(dataset).get("schema_version", 1) == (4 if dataset == flare_build else 1)


def test_a_release_build_asked_for_flares_says_to_rebuild(flare_build, tmp_path):
    old = release_build(flare_build, tmp_path / "old")
    with pytest.raises(ValueError, match="rebuild"):
        splits.load_split(old, "train", columns=("image", "flares"))


def test_release_build_is_faithful(shared_data, flare_build, tmp_path):
    """``release_build`` against a build made by the release's own code (``git archive``)."""
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(root), "archive", RELEASE_COMMIT, "solar_diffusion", "dataset_builder",
                              "pipelines"], capture_output=True, check=False)
    if archive.returncode:
        pytest.skip(f"the release commit {RELEASE_COMMIT[:7]} is not in this checkout's history")
    code = tmp_path / "code"
    code.mkdir()
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True)
    package = tmp_path / "release" / "solar_diffusion"  # the package layout of an install (pyproject's package-dir)
    shutil.copytree(code / "solar_diffusion", package)
    for name in ("dataset_builder", "pipelines"):
        (package / name).symlink_to(code / name)
    script = f"""import sys
sys.path.insert(0, {str(package.parent)!r})
import solar_diffusion
assert solar_diffusion.__file__.startswith(sys.path[0])
from solar_diffusion.dataset_builder.build import BuildConfig, build_dataset, index_images
from solar_diffusion.dataset_builder.flares import read_hek_csv
index = index_images({str(shared_data / "sdo_browse_2012" / "index.csv")!r})
index = index[index["t_obs"].dt.strftime("%m-%d").isin(["03-07", "03-09"])]
events = read_hek_csv({str(shared_data.joinpath(*HEK_CSV))!r})
build_dataset(index, events, BuildConfig(out=sys.argv[1], size=64, shard_size=64, channels={CHANNELS!r},
                                         window_minutes={WINDOW}), progress=False)
"""  # what conftest.build_real_dataset does, in the release's code
    made = subprocess.run([sys.executable, "-c", script, str(tmp_path / "made")], capture_output=True, text=True,
                          check=False, timeout=120)
    assert made.returncode == 0, made.stderr[-2000:]
    simulated = release_build(flare_build, tmp_path / "simulated")
    import pyarrow as pa
    import pyarrow.parquet as pq

    import pyarrow.compute as pc

    simulated_info = json.loads((simulated / "build_info.json").read_text())
    kept_out = {Path(r["file"]).name for r in simulated_info["rejected"]}  # today's build keeps out more frames
    for path in sorted((tmp_path / "made" / "default").glob("*.parquet")):
        a, b = pq.read_table(path), pq.read_table(simulated / "default" / path.name)
        a = a.filter(pc.invert(pc.is_in(a.column("source"), value_set=pa.array(sorted(kept_out)))))
        assert a.schema.equals(b.schema, check_metadata=True)  # the same columns and datasets features
        assert a.column("image").equals(b.column("image"))
        pd.testing.assert_frame_equal(a.drop_columns(["image"]).to_pandas(), b.drop_columns(["image"]).to_pandas())
    made_info = json.loads((tmp_path / "made" / "build_info.json").read_text())
    assert list(made_info) == list(simulated_info)
    differ = [k for k in made_info if made_info[k] != simulated_info[k]]
    # the output folder; the rule's wording (the rule is the same); the frames today's solar-disk check keeps out
    assert set(differ) <= {"config", "label_rule", "rejected", "counts", "rsun_px_median", "clipped_fraction"}
    newly = [r for r in simulated_info["rejected"] if r not in made_info["rejected"]]
    assert all("not a whole solar disk" in r["reason"] for r in newly)
    assert sum(map(sum, (c.values() for c in made_info["counts"].values()))) == \
        sum(map(sum, (c.values() for c in simulated_info["counts"].values()))) + len(newly)
    assert {k for k in made_info["config"] if made_info["config"][k] != simulated_info["config"][k]} == {"out"}


def test_every_column_formats_as_torch(flare_build, tmp_path):
    """Hub users write ``load_dataset(...).with_format("torch")``: times are ISO 8601 strings that
    it passes through (an Arrow timestamp makes it raise TypeError)."""
    import torch
    from datasets import load_dataset

    ds = load_dataset(str(flare_build), split="train", cache_dir=str(tmp_path / "cache")).with_format("torch")
    assert ds[:4]["image"].shape == (4, 3, 64, 64) and len(ds[:4]["flares"]) == 4  # every column
    fixed = ds.select_columns(["image", "flare_class", "t_obs"])  # the ragged flares need their own collate
    batch = next(iter(torch.utils.data.DataLoader(fixed, batch_size=4)))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["flare_class"].dtype == torch.int64
    assert [utc_time(t) for t in batch["t_obs"]] == sorted(utc_time(t) for t in batch["t_obs"])
    x_flare = next(row for row in ds if len(row["flares"]["goes_class"]) > 1)
    assert x_flare["flares"]["goes_class"] == ["X5.4", "X1.3"]
    assert x_flare["flares"]["x_px"].dtype == torch.float32
    assert utc_time(x_flare["flares"]["peak"][0]) == pd.Timestamp("2012-03-07 00:24:00")
    assert x_flare["t_obs"].endswith("Z")
