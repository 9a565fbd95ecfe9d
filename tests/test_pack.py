"""Training packs (``solar-diffusion pack``): made from real built datasets, read as they are."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from solar_diffusion import ClipLogNormalization
from solar_diffusion.cli import main
from solar_diffusion.files import sha256_file
from solar_diffusion.pack import write_pack
from solar_diffusion.splits import MANIFEST, dataset_geometry, dataset_info, load_split, model_space_split, read_manifest

COLUMNS = ("image", "flare_class", "flare_log10_peak_flux_goes_r", "goes_flux_at_obs", "t_obs", "flare_goes_class")


@pytest.fixture(scope="module")
def rgb_dataset(shared_data, real_dataset_of_days, tmp_path_factory):
    """32 px real frames in 171, 131 and 94 A: two train days, one validation day."""
    return real_dataset_of_days(shared_data, tmp_path_factory.mktemp("rgb") / "ds", ["03-07", "03-09", "08-10"], 32,
                                channels=("171", "131", "94"))


def test_a_pack_reads_as_its_dataset(tiny_dataset, tmp_path, capsys):
    pack = tmp_path / "pack"
    assert main(["pack", "--dataset", tiny_dataset, "--out", pack]) == 0
    assert "train, validation" in capsys.readouterr().out
    manifest = read_manifest(pack)
    assert manifest["encoding"]["codec"] == "png"  # small enough to stay lossless
    for split in ("train", "validation"):
        packed, built = load_split(pack, split, columns=COLUMNS), load_split(tiny_dataset, split, columns=COLUMNS)
        assert len(packed) == len(built) == sum(dataset_info(tiny_dataset)["counts"][split].values())
        assert packed["image"].dtype == np.uint8
        np.testing.assert_array_equal(packed["image"], np.asarray(built["image"]))
        for column in COLUMNS[1:]:
            np.testing.assert_array_equal(packed[column], np.asarray(built[column]), err_msg=column)
        assert packed.features["flare_class"].names == built.features["flare_class"].names
        assert manifest["splits"][split]["error"]["max_abs"] == 0
        row = packed[3]
        assert set(row) == set(COLUMNS) and row["image"].shape == (1, 16, 16)
    info = dataset_info(pack)
    assert "rejected" not in info and info == {k: v for k, v in dataset_info(tiny_dataset).items()
                                               if k not in ("rejected", "frame_notes")}
    assert dataset_geometry(pack, 64) == dataset_geometry(tiny_dataset, 64)
    norm = ClipLogNormalization.for_browse()
    a, b = model_space_split(pack, "validation", norm, 32), model_space_split(tiny_dataset, "validation", norm, 32)
    assert np.array_equal(a.images.numpy(), b.images.numpy()) and list(a.labels) == list(b.labels)
    # packing again into the same folder replaces the pack
    write_pack(tiny_dataset, pack, splits=["train"], log=lambda *_: None)
    assert sorted(p.name for p in pack.iterdir()) == [MANIFEST, "train.parquet"]


def test_a_small_budget_takes_jpeg_and_records_its_error(rgb_dataset, tmp_path):
    png = write_pack(rgb_dataset, tmp_path / "png", max_mb=0, log=lambda *_: None)
    png_mb = sum(f["bytes"] for f in png["files"].values()) / 1e6
    train_mb = png["files"]["train.parquet"]["bytes"] / 1e6
    manifest = write_pack(rgb_dataset, tmp_path / "jpeg", max_mb=0.6 * train_mb, log=lambda *_: None)
    encoding = manifest["encoding"]
    assert encoding["codec"] == "jpeg" and encoding["layout"] == "rgb"  # 3 channels: one 4:4:4 colour image
    size = sum(f["bytes"] for f in manifest["files"].values()) / 1e6
    assert size <= 0.6 * train_mb < png_mb
    assert list(manifest["splits"]) == ["train"] and "validation" in manifest["left_out"]
    packed = load_split(tmp_path / "jpeg", "train")["image"].astype(float)
    built = np.asarray(load_split(rgb_dataset, "train")["image"], dtype=float)
    rmse = float(np.sqrt(np.mean((packed - built) ** 2)))
    assert manifest["splits"]["train"]["error"]["rmse"] == pytest.approx(rmse)
    assert 0 < rmse < encoding["step"]  # brightness levels of 0-255: about step / sqrt(12), plus colour rounding
    with pytest.raises(ValueError, match="no split 'validation' in this pack.*left out when packed"):
        load_split(tmp_path / "jpeg", "validation")
    # a fixed step; too small a budget for the coarsest step is an error
    assert write_pack(rgb_dataset, tmp_path / "s3", step=3, log=lambda *_: None)["encoding"]["step"] == 3
    with pytest.raises(ValueError, match=r"even as JPEG.*raise --max-mb"):
        write_pack(rgb_dataset, tmp_path / "none", max_mb=0.001, log=lambda *_: None)


def test_dn_per_s_images_are_packed_losslessly(aia171_level1_file, tmp_path):
    from solar_diffusion.dataset_builder.build import BuildConfig, build_dataset, index_images
    from solar_diffusion.dataset_builder.flares import empty_events

    (tmp_path / "in").mkdir()
    shutil.copy(aia171_level1_file, tmp_path / "in")
    build_dataset(index_images(tmp_path / "in"), empty_events(),
                  BuildConfig(out=str(tmp_path / "ds"), size=32, splits="train=1-12"), progress=False)
    manifest = write_pack(tmp_path / "ds", tmp_path / "pack", splits=["train"], log=lambda *_: None)
    assert manifest["encoding"]["codec"] == "float32-split" and manifest["build_info"]["unit"] == "DN/s"
    packed, built = load_split(tmp_path / "pack", "train"), load_split(tmp_path / "ds", "train")
    assert packed["image"].dtype == np.float32
    assert packed["image"].tobytes() == np.asarray(built["image"], dtype=np.float32).tobytes()  # bit for bit
    with pytest.raises(ValueError, match="packed losslessly"):
        write_pack(tmp_path / "ds", tmp_path / "p2", step=4, log=lambda *_: None)


def test_a_corrupt_or_mismatched_pack_is_named(tiny_dataset, tmp_path):
    pack = tmp_path / "pack"
    write_pack(tiny_dataset, pack, log=lambda *_: None)
    train = pack / "train.parquet"
    original = train.read_bytes()

    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    train.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"train\.parquet: SHA-256 .* not the manifest's"):
        load_split(pack, "train")
    train.write_bytes(original)

    def rewrite(table, change):
        """Write ``table`` as train.parquet and make the manifest agree with it, then ``change`` the manifest."""
        pq.write_table(table, train)
        manifest = json.loads((pack / MANIFEST).read_text())
        manifest["files"]["train.parquet"]["sha256"] = sha256_file(train)
        change(manifest)
        (pack / MANIFEST).write_text(json.dumps(manifest))

    table = pq.read_table(train)
    blobs = table.column("image").to_pylist()
    blobs[5] = blobs[5][: len(blobs[5]) // 3]  # a cut-short PNG
    rewrite(table.set_column(table.column_names.index("image"), "image", pa.array(blobs, pa.binary())),
            lambda m: None)
    with pytest.raises(ValueError, match=r"train\.parquet row 5 \(2012-03-0.*\): image does not decode"):
        load_split(pack, "train")
    rewrite(table.slice(0, 10), lambda m: None)
    with pytest.raises(ValueError, match=r"train\.parquet: 10 rows but the manifest says"):
        load_split(pack, "train")
    rewrite(table, lambda m: m["build_info"]["config"].update(size=32))
    with pytest.raises(ValueError, match=r"row 0 \(.*\): image is 16x16 px, the manifest's channels and size make 1x32x32"):
        load_split(pack, "train")
    rewrite(table, lambda m: m.update(format="solar-diffusion-pack/0"))
    with pytest.raises(ValueError, match=r"manifest\.json: format 'solar-diffusion-pack/0' is not"):
        dataset_info(pack)
    (pack / MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match=r"manifest\.json: not a readable pack manifest"):
        load_split(pack, "train")

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="busy: not empty and holds no pack"):
        write_pack(tiny_dataset, tmp_path / "busy", log=lambda *_: None)
    with pytest.raises(ValueError, match="no split 'test'"):
        write_pack(tiny_dataset, tmp_path / "p3", splits=["test"], log=lambda *_: None)
