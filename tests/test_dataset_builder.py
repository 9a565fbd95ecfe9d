"""The dataset builder on real data: labels, splits, rejects, resume, and the CLI."""

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from datasets import load_dataset

from solar_diffusion.dataset_builder.build import BuildConfig, build_dataset, index_images, plan_build
from solar_diffusion.dataset_builder.flares import empty_events, read_hek_csv

ORDER = {"A": 1e-8, "B": 1e-7, "C": 1e-6, "M": 1e-5, "X": 1e-4}


def independent_labels(shared):
    """Labels of the 2012 browse frames counted with the csv module alone (HEK list, window 0)."""
    flares = set()
    with open(shared / "flare_lists" / "hek_flares_2003-09_2023-12.csv") as handle:
        for row in csv.DictReader(handle):
            if row["GEV_START"].startswith(("2011-12", "2012", "2013-01")):
                flares.add((row["GEV_START"], row["GEV_END"], row["GOES_CLASS"]))
    parsed = [(pd.Timestamp(s), pd.Timestamp(e), c[0], float(c[1:]) * ORDER[c[0]]) for s, e, c in flares]
    counts = {}
    with open(shared / "sdo_browse_2012" / "index.csv") as handle:
        for row in csv.DictReader(handle):
            t = pd.Timestamp(row["t_aia171_utc"])
            month = t.month
            split = "train" if month <= 6 else "validation" if month in (8, 9) else "test" if month >= 10 else None
            # the last 24 h of each block are dropped
            block_end = pd.Timestamp(year=t.year, month={6: 7, 9: 10, 12: 1}.get(month, month), day=1)
            if month == 12:
                block_end = pd.Timestamp(year=t.year + 1, month=1, day=1)
            if split is None or (month in (6, 9, 12) and t >= block_end - pd.Timedelta("24h")):
                continue
            active = [(flux, letter) for s, e, letter, flux in parsed if s <= t <= e]
            label = max(active)[1] if active else "quiet"
            counts[(split, label)] = counts.get((split, label), 0) + 1
    return counts


def test_2012_label_counts_match_an_independent_count(shared_data):
    index = index_images(shared_data / "sdo_browse_2012" / "index.csv")
    assert len(index) == 4458 and index["flag"].isna().all()
    events = read_hek_csv(shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv")
    plan, rejected, unassigned = plan_build(index, events, None, BuildConfig(out="unused"))
    counts = plan.groupby(["split", "flare_class"]).size().to_dict()
    assert counts == independent_labels(shared_data)
    assert rejected == [] and unassigned + len(plan) == 4458
    assert counts[("train", "X")] > 0 and counts[("test", "M")] > 0


def test_small_real_build_loads_and_counts(shared_data, tmp_path):
    index = index_images(shared_data / "sdo_browse_2012" / "index.csv")
    index = index[index["t_obs"].dt.strftime("%m-%d").isin(["03-07", "05-10", "10-23"])]
    events = read_hek_csv(shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv")
    config = BuildConfig(out=str(tmp_path / "ds"), size=32, shard_size=16)
    result = build_dataset(index, events, config, progress=False)
    ds = load_dataset(str(tmp_path / "ds"), cache_dir=str(tmp_path / "hf-cache"))  # no other build's cache
    assert set(ds) == {"train", "test"}
    assert ds["train"].features["image"].shape == (1, 32, 32)
    names = ds["train"].features["flare_class"].names
    assert names == ["quiet", "A", "B", "C", "M", "X"]  # one vocabulary for every build, whatever it holds
    for split in ds:
        got = pd.Series([names[i] for i in ds[split]["flare_class"]]).value_counts().to_dict()
        assert got == {k: v for k, v in result.counts[split].to_dict().items() if v}
    image = np.asarray(ds["train"][0]["image"], dtype=np.uint8)
    assert image.dtype == np.uint8 and image.max() > 100  # 8-bit browse brightness, not normalised
    # the disk is centred: the middle is brighter than the corners
    assert image[0, 12:20, 12:20].mean() > 3 * image[0, :3, :3].mean()
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "Label rule" in card and "NASA/SDO" in card and "| total |" in card
    info = json.loads((tmp_path / "ds" / "build_info.json").read_text())
    assert info["unit"] == "browse" and info["rsun_px_median"] == pytest.approx(32 / 2.3, rel=1e-5)


def test_2010_2023_set_flags_the_smeared_frame(shared_data, tmp_path):
    index = index_images(shared_data / "sdo_aia171_2010_2023" / "index.csv")
    assert len(index) == 147
    flagged = index[index["flag"].notna()]
    assert len(flagged) == 1 and "20110823" in flagged["file"].iloc[0] and "smeared" in flagged["flag"].iloc[0]
    events = read_hek_csv(shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv")
    result = build_dataset(index, events, BuildConfig(out=str(tmp_path / "ds"), size=32), progress=False)
    assert any("smeared" in r["reason"] for r in result.rejected)
    assert result.counts.to_numpy().sum() + result.unassigned + 1 == 147


def _bad_fits_folder(folder: Path, aia_file: Path, jp2_file: Path, cutout_file: Path) -> dict:
    """Real files and real files made bad in known ways; returns name -> expected reason."""
    folder.mkdir()
    good = folder / "aia_20110215_000000_good.fits"
    shutil.copy(aia_file, good)
    (folder / "aia_20110215_000100_truncated.fits").write_bytes(aia_file.read_bytes()[:5000])
    with fits.open(aia_file) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data.copy()
    no_exp = header.copy()
    del no_exp["EXPTIME"]
    fits.writeto(folder / "aia_20110215_000200_noexptime.fits", data, no_exp)
    nan = data.astype(np.float32)
    nan[:40] = np.nan
    fits.writeto(folder / "aia_20110215_000300_nan.fits", nan, header)
    shutil.copy(jp2_file, folder / jp2_file.name)
    shutil.copy(cutout_file, folder / "aia_20110215_000400_cutout.fits")
    return {"truncated": "cannot be read", "noexptime": "EXPTIME", "nan": "NaN",
            "AIA_193": "wavelength is 193", "cutout": "not a full-disk image"}


def jpeg2000_unreadable() -> str:
    """Why glymur (sunpy's JPEG 2000 reader) cannot decode JPEG 2000 here; "" where it can."""
    try:
        import glymur
    except ImportError:
        return "glymur is not installed (the 'aia' extra)"
    from glymur.lib import openjp2

    if openjp2.OPENJP2 is None:
        return "glymur finds no OpenJPEG library (libopenjp2); install libopenjp2-7, as .ci/run does"
    if glymur.version.openjpeg_version_tuple < (2, 4, 0):
        return f"glymur needs OpenJPEG >= 2.4.0, this machine has {glymur.version.openjpeg_version}"
    return ""


JPEG2000_UNREADABLE = jpeg2000_unreadable()
JP2_193 = "2013_06_24__17_31_30_84__SDO_AIA_AIA_193.jp2"


def _bad_folder(folder: Path, aia_file: Path) -> dict:
    """``_bad_fits_folder`` with the real files that sunpy and sunkit-image ship."""
    from sunpy.data.test import get_test_filepath
    import sunkit_image.data.test as sunkit_test

    cutout = Path(sunkit_test.__file__).parent / "aia_171_cutout.fits"
    return _bad_fits_folder(folder, aia_file, Path(get_test_filepath(JP2_193)), cutout)


def test_bad_files_are_reported_and_skipped(aia171_level1_file, tmp_path):
    expected = _bad_folder(tmp_path / "in", aia171_level1_file)
    index = index_images(tmp_path / "in")
    # the JPEG 2000 file is indexed by the time in its name (its build is the next test)
    assert index.loc[index["file"].str.endswith(".jp2"), "t_obs"].tolist() == [pd.Timestamp("2013-06-24 17:31:30")]
    index = index[~index["file"].str.endswith(".jp2")]  # FITS and JPEG 2000 are built apart
    config = BuildConfig(out=str(tmp_path / "out"), size=32, splits="train=1-12")
    result = build_dataset(index, empty_events(), config, progress=False)
    reasons = {Path(r["file"]).name: r["reason"] for r in result.rejected}
    for key, reason in expected.items():
        if key == "AIA_193":
            continue
        name = next(n for n in reasons if key in n)
        assert reason in reasons[name], (name, reasons[name])
    assert result.counts.to_numpy().sum() == 1  # only the good file
    ds = load_dataset(str(tmp_path / "out"), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert ds[0]["unit"] == "DN/s" and ds.with_format("numpy")[0]["image"].dtype == np.float32


@pytest.mark.skipif(bool(JPEG2000_UNREADABLE), reason=JPEG2000_UNREADABLE)
def test_a_jpeg2000_file_of_another_wavelength_is_rejected(aia171_level1_file, tmp_path):
    _bad_folder(tmp_path / "in", aia171_level1_file)
    # the JPEG 2000 file of the wrong wavelength, built on its own (FITS and JPEG 2000 are built apart)
    jp2_index = index_images(tmp_path / "in")
    jp2_index = jp2_index[jp2_index["file"].str.endswith(".jp2")]
    with pytest.raises(ValueError, match="every one of the 1 frames was skipped \\(1 wavelength is 193.0 Angstrom, "
                                         "not the requested 171 Angstrom; the first: .*AIA_193.jp2"):
        build_dataset(jp2_index, empty_events(), BuildConfig(out=str(tmp_path / "o2"), splits="train=1-12"),
                      progress=False)
    assert not (tmp_path / "o2").exists()


def test_composite_channel_selection(shared_data):
    from PIL import Image

    from solar_diffusion.dataset_builder.images import read_frame

    path = shared_data / "sdo_browse_2012" / "images" / "20120307_0100_aia_171_131_094.jpg"
    frame = read_frame(path, channels=("94", "171"))
    rgb = np.asarray(Image.open(path))[::-1]  # FITS row order
    assert frame.channels == ["94", "171"] and frame.image.shape == (2, 472, 472)
    np.testing.assert_array_equal(frame.image[0], rgb[..., 2])
    np.testing.assert_array_equal(frame.image[1], rgb[..., 0])
    with pytest.raises(ValueError, match="composite planes"):
        read_frame(path, channels=("193",))


def test_killed_build_resumes_to_the_same_dataset(shared_data, tmp_path):
    index_csv = tmp_path / "index.csv"
    table = pd.read_csv(shared_data / "sdo_browse_2012" / "index.csv")
    table = table[table["file"].str.contains("20120307|20120308")]
    table["file"] = [str(shared_data / "sdo_browse_2012" / f) for f in table["file"]]
    table.to_csv(index_csv, index=False)
    from solar_diffusion.cli import main

    args = ["build-dataset", "--images", str(index_csv),
            "--flare-list", str(shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv"),
            "--size", "32", "--shard-size", "4"]
    assert main(args + ["--out", tmp_path / "whole"]) == 0  # here; only the run to be killed starts a child
    proc = subprocess.Popen([sys.executable, "-m", "solar_diffusion.cli", *args, "--out", str(tmp_path / "killed")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    shards = tmp_path / "killed" / "default"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards.glob("*.parquet"))) < 2:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    n_before = len([p for p in shards.glob("*.parquet") if not p.name.startswith(".")])
    total = len(list((tmp_path / "whole" / "default").glob("*.parquet")))
    assert 0 < n_before < total, "the kill must land halfway"
    import pyarrow.parquet as pq

    for path in shards.glob("*.parquet"):  # every shard left by the kill is whole (or a hidden temp file)
        assert path.name.startswith(".") or pq.read_table(path).num_rows > 0
    assert main(args + ["--out", tmp_path / "killed"]) == 0
    for path in sorted((tmp_path / "whole" / "default").glob("*.parquet")):
        a = load_dataset("parquet", data_files=str(path), split="train").to_pandas()
        b = load_dataset("parquet", data_files=str(shards / path.name), split="train").to_pandas()
        pd.testing.assert_frame_equal(a.drop(columns="image"), b.drop(columns="image"))
        assert all(np.array_equal(np.stack(x), np.stack(y)) for x, y in zip(a["image"], b["image"]))


def test_noise_test_patterns_and_duplicates_are_kept_out_and_counted(shared_data, tmp_path):
    """Real frames of one day pass the solar-disk check; a noise frame, a test pattern, a real composite
    with a blank channel and a real frame with the Moon in front are rejected naming the file; a repeated
    index row and a second file of the same time go in once, counted."""
    from PIL import Image

    rng = np.random.default_rng(0)
    real = sorted((shared_data / "sdo_browse_2012" / "images").glob("20120307_0[0-5]00_*.jpg"))
    assert len(real) >= 5
    noise = tmp_path / "20120307_0630_noise.jpg"
    Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)).save(noise)
    pattern = tmp_path / "20120307_0645_pattern.jpg"
    ramp = np.tile(np.linspace(0, 255, 512).astype(np.uint8), (512, 1))
    Image.fromarray(np.stack([ramp] * 3, -1)).save(pattern)
    copy = tmp_path / "copy_of_first.jpg"
    shutil.copy(real[0], copy)
    images = shared_data / "sdo_browse_2012" / "images"
    no_171 = images / "20120307_0700_aia_171_131_094.jpg"  # a real composite whose 171 Å plane is blank
    moon = images / "20120221_1400_aia_171_131_094.jpg"  # a real frame during a lunar transit of SDO
    times = [pd.Timestamp(f"2012-03-07 0{k}:00:01") for k in range(len(real))]
    rows = [(f, t) for f, t in zip(real, times)] + [(real[1], times[1]), (copy, times[0]),
                                                      (noise, pd.Timestamp("2012-03-07 06:30")),
                                                      (pattern, pd.Timestamp("2012-03-07 06:45")),
                                                      (no_171, pd.Timestamp("2012-03-07 07:00")),
                                                      (moon, pd.Timestamp("2012-02-21 14:00"))]
    index_csv = tmp_path / "index.csv"
    pd.DataFrame({"file": [str(f) for f, _ in rows], "t_obs": [t.isoformat() for _, t in rows]}).to_csv(index_csv,
                                                                                                  index=False)
    events = read_hek_csv(shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv")
    result = build_dataset(index_images(index_csv), events, BuildConfig(out=str(tmp_path / "ds"), size=16),
                           progress=False)
    assert int(result.counts.to_numpy().sum()) == len(real)  # every real frame once
    reasons = {Path(r["file"]).name: r["reason"] for r in result.rejected}
    assert "not a whole solar disk" in reasons[noise.name] and "not a whole solar disk" in reasons[pattern.name]
    assert "not a whole solar disk in 171 Å" in reasons[no_171.name] and "not a whole solar disk" in reasons[moon.name]
    assert "duplicate frame (same observation time" in reasons[copy.name]
    assert any("duplicate index row" in r["reason"] for r in result.rejected)
    info = json.loads((tmp_path / "ds" / "build_info.json").read_text())
    assert info["duplicates_dropped"] == 2


def test_a_build_whose_every_frame_is_skipped_fails_with_the_reasons_and_leaves_nothing(shared_data, tmp_path,
                                                                                         capsys):
    from PIL import Image

    from solar_diffusion.cli import main

    rng = np.random.default_rng(1)
    rows = []
    for hour in range(3):
        noise = tmp_path / f"20120307_0{hour}00_noise.jpg"
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(noise)
        rows.append((str(noise), f"2012-03-07T0{hour}:00:01"))
    broken = tmp_path / "20120307_0400_broken.jpg"
    broken.write_text("not an image")
    rows.append((str(broken), "2012-03-07T04:00:01"))
    index_csv = tmp_path / "index.csv"
    pd.DataFrame(rows, columns=["file", "t_obs"]).to_csv(index_csv, index=False)
    code = main(["build-dataset", "--images", str(index_csv), "--flare-list",
                 str(shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv"), "--size", "16",
                 "--out", str(tmp_path / "ds")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("error: every one of the 4 frames was skipped (3 not a whole solar disk"), err
    assert "1 cannot be decoded as an image" in err and "20120307_0000_noise.jpg" in err
    assert not (tmp_path / "ds").exists()  # no empty dataset to be mistaken for one


def test_an_index_mixing_iso_spellings_reads_every_row(shared_data, tmp_path):
    images = sorted((shared_data / "sdo_browse_2012" / "images").glob("20120307_0[0-3]00_*.jpg"))
    spellings = ["2012-03-07T00:00:01", "2012-03-07 01:00:01", "2012-03-07T02:00:01Z", "2012-03-07 03:00:01.250"]
    index_csv = tmp_path / "index.csv"
    pd.DataFrame({"file": [str(f) for f in images], "t_obs": spellings}).to_csv(index_csv, index=False)
    index = index_images(index_csv)
    assert index["flag"].isna().all(), index["flag"].tolist()
    assert index["t_obs"].tolist() == [pd.Timestamp("2012-03-07 00:00:01"), pd.Timestamp("2012-03-07 01:00:01"),
                                       pd.Timestamp("2012-03-07 02:00:01"), pd.Timestamp("2012-03-07 03:00:01.250")]


def test_load_dataset_of_a_build_gives_that_builds_rows(shared_data, real_dataset_of_days, tmp_path, monkeypatch):
    """Two builds in folders of the same name (other days, so other rows), loaded the Hugging Face
    way, ``load_dataset(folder)``, with one datasets cache: each gives its own rows."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    a = real_dataset_of_days(shared_data, tmp_path / "a" / "ds", ["03-07"], 16)
    b = real_dataset_of_days(shared_data, tmp_path / "b" / "ds", ["03-07", "03-09"], 16)
    rows = {}
    for folder in (a, b):
        loaded = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
        rows[folder] = sum(len(split) for split in loaded.values())
    expected = {f: sum(c for split in json.loads((f / "build_info.json").read_text())["counts"].values()
                       for c in split.values()) for f in (a, b)}
    assert rows == expected and rows[a] != rows[b], (rows, expected)
