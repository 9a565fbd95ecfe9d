"""Shared fixtures: real data locations, tiny pipelines, and a folder-backed Hub client."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Under pytest-xdist the workers share the cores: each worker, and each process it starts (the CLI,
# accelerate), gets its share of threads instead of one per core (oversubscribed OpenMP threads
# spin and slow every worker down several times).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    os.environ.setdefault("OMP_NUM_THREADS", _threads)
    os.environ.setdefault("MKL_NUM_THREADS", _threads)

import pytest  # noqa: E402
import torch  # noqa: E402
from diffusers import DDPMScheduler  # noqa: E402

from solar_diffusion import SolarFlarePipeline, build_unet  # noqa: E402
from solar_diffusion.maps import disk_geometry  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # in case torch was imported before

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
ACCELERATE_CPU_CONFIG = ROOT / "training" / "accelerate_configs" / "cpu.yaml"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_training_script(script: str, *args, timeout: float = 900, processes: int = 1) -> subprocess.CompletedProcess:
    """``accelerate launch training/<script> args...`` (``script`` may also be a path) on one CPU
    process, or on ``processes`` CPU processes with ``multi_cpu.yaml`` (gloo), offline.

    Fails the calling test with the end of the script's stderr where it exits non-zero.
    """
    config = ["--config_file", str(ACCELERATE_CPU_CONFIG)] if processes == 1 else [
        "--config_file", str(ROOT / "training" / "accelerate_configs" / "multi_cpu.yaml"),
        "--num_processes", str(processes), "--main_process_port", str(_free_port())]
    path = Path(script) if Path(script).is_absolute() else ROOT / "training" / script
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *config, "--num_cpu_threads_per_process", "1",
           str(path), *map(str, args)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONHASHSEED="0")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{script} {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="session")
def accelerate_launch():
    """``launch_training_script`` itself: ``accelerate_launch("train_ddpm.py", "--dataset", path, ...)``."""
    return launch_training_script


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data in ../shared/data; tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the checkout in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def aia171_level1_file() -> Path:
    """The real AIA 171 A level-1 FITS file that sunpy ships (128 x 128, full disk)."""
    from sunpy.data.test import get_test_filepath

    return Path(get_test_filepath("aia_171_level1.fits"))


def build_real_dataset(shared_data: Path, out: Path, days, size: int, **config) -> Path:
    """A dataset made by the builder from the real 2012 browse frames of ``days`` ("MM-DD")."""
    from solar_diffusion.dataset_builder.build import BuildConfig, build_dataset, index_images
    from solar_diffusion.dataset_builder.flares import read_hek_csv

    index = index_images(shared_data / "sdo_browse_2012" / "index.csv")
    index = index[index["t_obs"].dt.strftime("%m-%d").isin(list(days))]
    events = read_hek_csv(shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv")
    build_dataset(index, events, BuildConfig(out=str(out), size=size, shard_size=64, **config), progress=False)
    return out


@pytest.fixture(scope="session")
def real_dataset_of_days():
    """``build_real_dataset`` itself, for tests that need other days, sizes or channels."""
    return build_real_dataset


@pytest.fixture(scope="session")
def tiny_dataset(shared_data, tmp_path_factory) -> Path:
    """16 px real frames of three days: two train days with X and M flares, one validation day."""
    return build_real_dataset(shared_data, tmp_path_factory.mktemp("data") / "tiny", ["03-07", "03-09", "08-10"], 16)


@pytest.fixture(scope="session")
def flare_days(shared_data, tmp_path_factory) -> Path:
    """32 px, three channels, flares within 30 min: the X5.4 of 2012-03-07 and the M6.3 of 03-09, and a
    validation day."""
    return build_real_dataset(shared_data, tmp_path_factory.mktemp("flares") / "ds", ["03-07", "03-09", "08-10"], 32,
                              channels=("171", "131", "94"), window_minutes=30)


@pytest.fixture(scope="session")
def real_64(shared_data, tmp_path_factory) -> Path:
    """64 px real frames of a dozen days spread over the train, validation and test months."""
    days = ["03-05", "03-06", "03-07", "03-08", "03-09", "03-10", "08-10", "08-11", "10-20", "10-21", "10-22",
            "10-23"]
    return build_real_dataset(shared_data, tmp_path_factory.mktemp("data") / "real64", days, 64)


def make_tiny_pipeline(labels=("quiet", "C", "M", "X"), sample_size=16, seed=0, wavelengths=(171,),
                       normalization=None) -> SolarFlarePipeline:
    """A randomly initialised tiny pipeline (the weights are seeded, so it is reproducible)."""
    torch.manual_seed(seed)
    unet = build_unet("tiny", sample_size=sample_size, num_labels=len(labels), in_channels=len(wavelengths)).eval()
    pipe = SolarFlarePipeline(
        unet,
        DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear"),
        id2label=dict(enumerate(labels)),
        normalization=normalization.to_dict() if normalization else None,
        geometry=disk_geometry(sample_size, rsun_px=sample_size / 2.36, wavelengths_angstrom=wavelengths),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def make_pipeline():
    """``make_tiny_pipeline`` itself, for tests that need other labels, sizes or channels."""
    return make_tiny_pipeline


def make_tiny_upscaler(size: int, channels: int = 3, maps: int = 2, seed: int = 0) -> torch.nn.Module:
    """A tiny random super-resolution UNet of ``size`` px (input: noisy residual, upsampled frame, maps)."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(sample_size=size, in_channels=2 * channels + maps, out_channels=channels,
                       block_out_channels=(8, 16), down_block_types=("DownBlock2D",) * 2,
                       up_block_types=("UpBlock2D",) * 2, layers_per_block=1, norm_num_groups=4,
                       class_embed_type="timestep").eval()


def make_tiny_cascade(base_size: int = 16, size: int = 32, residual_std: float = 0.1, normalization=None,
                      wavelengths: tuple = (171, 131, 94), **upscaling) -> SolarFlarePipeline:
    """A tiny random flare-conditioned cascade: a ``base_size`` px base in ``wavelengths`` and an
    upscaler to ``size`` px (2 steps)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    torch.manual_seed(0)
    unet = build_unet("tiny", base_size, num_labels=0, in_channels=len(wavelengths), conditioning="flare").eval()
    geometry = disk_geometry(base_size, rsun_px=base_size / 2.3, date_obs="2012-03-07T00:00:00",
                             wavelengths_angstrom=wavelengths)
    pipe = SolarFlarePipeline(unet, DDIMScheduler(), geometry=geometry, flare_positions=[[-400.0, 250.0]],
                              normalization=normalization,
                              upscaler=make_tiny_upscaler(size, channels=len(wavelengths)),
                              upscaler_scheduler=DPMSolverMultistepScheduler(),
                              upscaling={"residual_std": residual_std, "noise_level": 0.05, "num_inference_steps": 2}
                              | upscaling)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def make_upscaler():
    """``make_tiny_upscaler`` itself."""
    return make_tiny_upscaler


@pytest.fixture
def make_cascade():
    """``make_tiny_cascade`` itself, for tests of the cascade (tiny stages, any sizes)."""
    return make_tiny_cascade


def save_conditioned_model(folder: Path, conditioning: str = "flare") -> Path:
    """A tiny random flux- or flare-conditioned model, saved: 32 px, three channels, seen on 2012-03-07,
    its training flares at two places."""
    from diffusers import DDIMScheduler

    from solar_diffusion.hub import save_pipeline

    torch.manual_seed(0)
    unet = build_unet("tiny", 32, num_labels=0, in_channels=3, conditioning=conditioning).eval()
    geometry = disk_geometry(32, rsun_px=32 / 2.3, date_obs="2012-03-07T00:00:00", wavelengths_angstrom=(171, 131, 94))
    flares = {"flare_positions": [[-400.0, 250.0], [300.0, -200.0]]} if conditioning == "flare" else {}
    return save_pipeline(SolarFlarePipeline(unet, DDIMScheduler(), geometry=geometry, **flares), folder)


@pytest.fixture
def saved_conditioned_model():
    """``save_conditioned_model``: a tiny saved flux or flare model in a folder of the test's."""
    return save_conditioned_model


@pytest.fixture
def tiny_pipeline() -> SolarFlarePipeline:
    return make_tiny_pipeline()


@pytest.fixture
def tiny_model_dir(tmp_path) -> Path:
    """A tiny random pipeline saved with ``save_pipeline`` (weights, config, pipeline.py)."""
    from solar_diffusion.hub import save_pipeline

    return save_pipeline(make_tiny_pipeline(), tmp_path / "tiny-model")


def read_netcdf_xrsb(path):
    """XRS-B flux (W m^-2, as stored) and flag of a GOES-R netCDF file, read directly with h5netcdf (no sunpy)."""
    from datetime import datetime, timedelta

    import h5netcdf
    import numpy as np
    import pandas as pd

    with h5netcdf.File(path, "r") as nc:
        seconds = np.asarray(nc["time"])
        flux = np.asarray(nc["xrsb_flux"], dtype=float)
        flag = np.asarray(nc["xrsb_flag"])
    epoch = datetime(2000, 1, 1, 12)  # "seconds since 2000-01-01 12:00:00"
    times = pd.DatetimeIndex([epoch + timedelta(seconds=float(s)) for s in seconds])
    return pd.DataFrame({"flux": flux, "flag": flag}, index=times)


@pytest.fixture(scope="session")
def netcdf_xrsb():
    """``read_netcdf_xrsb`` itself: the raw XRS-B samples of a file, to check the readers against."""
    return read_netcdf_xrsb


@pytest.fixture
def browse_model_dir(tmp_path, make_pipeline) -> Path:
    """A tiny random pipeline in the browse unit with the real datasets' labels, saved."""
    from solar_diffusion import ClipLogNormalization
    from solar_diffusion.hub import save_pipeline

    pipe = make_pipeline(labels=("quiet", "B", "C", "M", "X"), normalization=ClipLogNormalization.for_browse())
    return save_pipeline(pipe, tmp_path / "browse-model")


class FolderHubApi:
    """A Hub client with the two methods ``push_to_hub`` uses, writing repos into a folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.calls = []

    def create_repo(self, repo_id, repo_type="model", private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, repo_type))
        path = self.root / repo_type / repo_id
        if path.exists() and not exist_ok:
            raise FileExistsError(repo_id)
        path.mkdir(parents=True, exist_ok=True)
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id, folder_path, repo_type="model", commit_message="", ignore_patterns=None):
        """Copy the folder's files, leaving out those ``ignore_patterns`` match (fnmatch over the
        path in the folder, as ``HfApi.upload_folder`` does)."""
        from fnmatch import fnmatchcase

        self.calls.append(("upload_folder", repo_id, repo_type))
        root = Path(folder_path)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            if not any(fnmatchcase(name, pattern) for pattern in ignore_patterns or []):
                target = self.root / repo_type / repo_id / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)

    def repo_path(self, repo_id, repo_type="model") -> Path:
        return self.root / repo_type / repo_id


@pytest.fixture
def folder_hub(tmp_path) -> FolderHubApi:
    return FolderHubApi(tmp_path / "hub")
