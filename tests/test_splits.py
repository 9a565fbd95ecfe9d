"""Reading built splits: always the folder's own rows."""

import shutil

import pytest

from solar_diffusion.splits import dataset_info, load_split


def test_two_builds_in_folders_of_the_same_name_load_their_own_rows(shared_data, real_dataset_of_days, tmp_path):
    # datasets.load_dataset(folder) caches a folder by its name: the second of these came back
    # as the first
    a = real_dataset_of_days(shared_data, tmp_path / "a" / "ds", ["03-07"], 16)
    b = real_dataset_of_days(shared_data, tmp_path / "b" / "ds", ["03-08", "03-09"], 16)
    days = {}
    for folder in (a, b):
        ds = load_split(folder, "train", columns=("image", "t_obs"))
        assert len(ds) == sum(dataset_info(folder)["counts"]["train"].values())
        days[folder] = {str(t)[:10] for t in ds["t_obs"]}
    assert days[a] == {"2012-03-07"} and days[b] == {"2012-03-08", "2012-03-09"}


def test_a_folder_holding_shards_of_another_build_is_refused(shared_data, real_dataset_of_days, tmp_path):
    folder = real_dataset_of_days(shared_data, tmp_path / "ds", ["03-07"], 16)
    shard = sorted((folder / "default").glob("train-*.parquet"))[0]
    shutil.copy(shard, folder / "default" / "train-00007-of-00008.parquet")  # a stray shard
    with pytest.raises(ValueError, match="another build"):
        load_split(folder, "train")
    with pytest.raises(ValueError, match="no split 'test'"):
        load_split(folder, "test")
