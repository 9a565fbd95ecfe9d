"""The build never degrades silently: requested steps that cannot run stop it before work
starts; what was changed in a frame's pixels is recorded per frame in the build record."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from solar_diffusion.dataset_builder.build import BuildConfig, build_dataset, index_images
from solar_diffusion.dataset_builder.flares import read_flare_list


def _no_flares(shared_data):
    return read_flare_list(shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv").iloc[:0]


def test_register_on_browse_images_stops_before_any_shard_is_written(shared_data, tmp_path):
    index = index_images(shared_data / "sdo_browse_2012" / "index.csv")
    index = index[index["t_obs"].dt.strftime("%m-%d") == "03-07"]
    config = BuildConfig(out=str(tmp_path / "out"), size=16, register=True)
    with pytest.raises(ValueError, match="calibrate level-1 FITS, but the images are browse"):
        build_dataset(index, _no_flares(shared_data), config, progress=False)
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_nan_and_inf_pixels_are_counted_and_recorded_per_frame(shared_data, aia171_level1_file, tmp_path):
    folder = tmp_path / "fits"
    folder.mkdir()
    clean, damaged = folder / "clean_aia_171.fits", folder / "damaged_aia_171.fits"
    shutil.copy(aia171_level1_file, clean)
    with fits.open(aia171_level1_file) as hdul:
        data = hdul[0].data.astype(np.float32)
        data[0, :3] = np.nan
        data[1, :2] = np.inf
        header = hdul[0].header.copy()
        for key in ("T_OBS", "DATE-OBS"):  # one exposure later: another frame, not a duplicate of the clean one
            if key in header:
                header[key] = (pd.Timestamp(header[key].rstrip("Z")) + pd.Timedelta(seconds=12)).isoformat()
        fits.PrimaryHDU(data, header).writeto(damaged)
    index = index_images(folder)
    result = build_dataset(index, _no_flares(shared_data), BuildConfig(out=str(tmp_path / "out"), size=16,
                                                                        splits="train=1-12"), progress=False)
    assert result.counts.to_numpy().sum() == 2
    record = json.loads((tmp_path / "out" / "build_info.json").read_text())
    assert [(n["file"].split("/")[-1], n["notes"]) for n in record["frame_notes"]] == [
        ("damaged_aia_171.fits", ["3 NaN and 2 infinite pixels set to 0"])]


def test_a_flare_list_that_misses_the_images_dates_is_reported(shared_data, tmp_path):
    index = index_images(shared_data / "sdo_browse_2012" / "index.csv")
    index = index[index["t_obs"].dt.strftime("%m-%d").isin(["03-07", "03-08"])]
    hek = read_flare_list(shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv")
    config = BuildConfig(out=str(tmp_path / "wrong"), size=16, splits="train=1-12")
    wrong = build_dataset(index, hek[hek["start"].dt.year == 2015], config, progress=False)  # another year's list
    assert wrong.label_coverage["frames_in_flare_list_gaps"] == len(index) > 0
    assert set(wrong.counts.index[wrong.counts.sum(axis=1) > 0]) == {"quiet"}  # why it matters
    right = build_dataset(index, hek, BuildConfig(out=str(tmp_path / "right"), size=16, splits="train=1-12"),
                          progress=False)
    assert right.label_coverage["frames_in_flare_list_gaps"] == 0
    record = json.loads((tmp_path / "wrong" / "build_info.json").read_text())
    assert record["label_coverage"]["frames_in_flare_list_gaps"] == len(index)


def test_a_flare_list_that_misses_the_images_stops_the_build(shared_data, tmp_path, capsys):
    """A list of 2015 flares for 2012 frames would label every frame quiet: the build stops (exit 2)
    naming the list's dates and the images', and writes nothing."""
    from solar_diffusion.cli import main

    hek = shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv"
    lines = hek.read_text().splitlines()
    other_year = tmp_path / "hek_2015.csv"
    other_year.write_text("\n".join([lines[0]] + [line for line in lines[1:] if line.startswith("\"2015-")]) + "\n")
    index = index_images(shared_data / "sdo_browse_2012" / "index.csv")
    day = index[index["t_obs"].dt.strftime("%m-%d") == "03-07"].head(3)
    day[["file", "t_obs"]].to_csv(tmp_path / "index.csv", index=False)
    assert main(["build-dataset", "--images", str(tmp_path / "index.csv"), "--flare-list", str(other_year),
                 "--size", "16", "--splits", "train=1-12", "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert "hek_2015.csv spans 2015-01-" in err and "the images 2012-03-07 to 2012-03-07" in err, err
    assert not (tmp_path / "ds").exists()


def test_a_different_build_into_a_used_folder_is_refused_and_the_same_one_resumes(shared_data, tmp_path, monkeypatch):
    from solar_diffusion.dataset_builder.flares import read_hek_csv

    monkeypatch.chdir(tmp_path)
    index = index_images(shared_data / "sdo_browse_2012" / "index.csv")
    events = read_hek_csv(shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv")
    day = index[index["t_obs"].dt.strftime("%m-%d") == "03-07"]
    other_day = index[index["t_obs"].dt.strftime("%m-%d") == "03-09"]
    first = build_dataset(day, events, BuildConfig(out="ds", size=16, shard_size=8), progress=False)
    shards = {p.name: p.read_bytes() for p in (tmp_path / "ds" / "default").glob("*.parquet")}
    again = build_dataset(day, events, BuildConfig(out="./ds", size=16, shard_size=8), progress=False)  # same build
    assert again.counts.equals(first.counts)
    with pytest.raises(ValueError, match="holds a build with other inputs .*: remove it"):
        build_dataset(other_day, events, BuildConfig(out="ds", size=16, shard_size=8), progress=False)
    with pytest.raises(ValueError, match="holds a build with other settings"):
        build_dataset(day, events, BuildConfig(out="ds", size=32, shard_size=8), progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "ds" / "default").glob("*.parquet")} == shards  # untouched
    (tmp_path / "ds" / ".build_settings.json").unlink()  # shards whose build cannot be checked
    with pytest.raises(ValueError, match="cannot check"):
        build_dataset(day, events, BuildConfig(out="ds", size=16, shard_size=8), progress=False)
