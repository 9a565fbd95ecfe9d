"""Kill tests: a build and a training run killed (SIGKILL, no clean-up) at points drawn from a
logged seed, through the fault-injection hook (``files.fault_point``), then run again, end exactly
as an uninterrupted run does.

Replay a failure: ``SOLAR_DIFFUSION_FAULT_SEED=<seed> pytest tests/test_faults.py``; the point
killed at is in each test's id and message.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from solar_diffusion.files import FAULT_LOG_ENV, KILL_AT_ENV

SEED = int(os.environ.get("SOLAR_DIFFUSION_FAULT_SEED", "20261130"))
KILLS = 10  # kill points per kind of run
ROOT = Path(__file__).resolve().parents[1]

def build(shared, out):
    """The build the kill tests run (in a child to be killed, here to be resumed): three days of 2012
    at 16 px, eight frames a shard."""
    from solar_diffusion.dataset_builder.build import BuildConfig, build_dataset, index_images
    from solar_diffusion.dataset_builder.flares import read_hek_csv

    index = index_images(f"{shared}/sdo_browse_2012/index.csv")
    index = index[index["t_obs"].dt.strftime("%m-%d").isin(["03-07", "03-08", "08-10"])]
    events = read_hek_csv(f"{shared}/flare_lists/hek_flares_2003-09_2023-12.csv")
    build_dataset(index, events, BuildConfig(out=str(out), size=16, shard_size=8), progress=False)


BUILD = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from test_faults import build; build(*sys.argv[1:3])"


def run(args, env_extra=None, timeout=300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (KILL_AT_ENV, FAULT_LOG_ENV)}
    env.update(env_extra or {}, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return subprocess.run([sys.executable, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def kill_points(log: Path) -> list[str]:
    """The arrivals of an uninterrupted run as "point:k", and the KILLS of them drawn with SEED."""
    arrivals, seen = [], {}
    for name in log.read_text().split():
        seen[name] = seen.get(name, 0) + 1
        arrivals.append(f"{name}:{seen[name]}")
    rng = np.random.default_rng(SEED)
    return sorted(rng.choice(arrivals, size=min(KILLS, len(arrivals)), replace=False).tolist(),
                  key=arrivals.index)


def dataset_digest(folder: Path) -> dict:
    """What a build holds: per split, its rows' sources, labels and image hashes; and its counts."""
    from solar_diffusion.splits import dataset_info, load_split

    info = dataset_info(folder)
    digest = {"counts": info["counts"], "rejected": sorted(r["reason"] for r in info["rejected"])}
    for split, counts in info["counts"].items():
        if sum(counts.values()):
            rows = load_split(folder, split, columns=("image", "flare_class", "source"))
            digest[split] = sorted(zip(list(rows["source"]), [int(c) for c in rows["flare_class"]],
                                       [hashlib.sha1(np.ascontiguousarray(i).tobytes()).hexdigest()
                                        for i in rows["image"]]))
    return digest


@pytest.fixture(scope="module")
def build_reference(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("build")
    log = folder / "arrivals.log"
    with pytest.MonkeyPatch.context() as env:  # built here, every fault point's arrival logged
        env.setenv(FAULT_LOG_ENV, str(log))
        build(shared_data, folder / "ds")
    return dataset_digest(folder / "ds"), kill_points(log)


@pytest.mark.parametrize("k", range(KILLS))
def test_a_build_killed_anywhere_ends_as_an_uninterrupted_one(build_reference, shared_data, tmp_path, k):
    reference, points = build_reference
    point = points[k % len(points)]
    killed = run(["-c", BUILD, shared_data, tmp_path / "ds"], {KILL_AT_ENV: point})
    assert killed.returncode == -9, f"seed {SEED}, {point}: the run was not killed ({killed.stderr[-500:]})"
    build(shared_data, tmp_path / "ds")  # resumed here: a second child would double the start-up time
    assert dataset_digest(tmp_path / "ds") == reference, f"seed {SEED}, killed at {point}"


TRAIN = ["--preset", "tiny", "--train-batch-size", "4", "--max-train-steps", "6", "--checkpointing-steps", "2",
         "--checkpoints-total-limit", "2", "--use-ema", "--logger", "none", "--sample-steps", "0",
         "--validation-steps", "3", "--lr-warmup-steps", "1"]  # no sample grids: each test stays within 30 s


def train(dataset, out, env_extra=None, resume=False):
    return run([ROOT / "training" / "train_ddpm.py", "--dataset", dataset, "--out", out, *TRAIN,
                *(["--resume-from-checkpoint", "latest"] if resume else [])], env_extra)


def weights_and_losses(out: Path):
    weights = load_file(out / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors")
    losses = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
    return weights, losses


@pytest.fixture(scope="module")
def train_reference(tiny_dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    log = folder / "arrivals.log"
    done = train(tiny_dataset, folder / "run", {FAULT_LOG_ENV: str(log)})
    assert done.returncode == 0, done.stderr[-2000:]
    return weights_and_losses(folder / "run"), kill_points(log)


@pytest.mark.parametrize("k", range(KILLS))
def test_a_training_run_killed_anywhere_resumes_to_the_same_model(train_reference, tiny_dataset, tmp_path, k):
    (weights, losses), points = train_reference
    killed_and_resumed(weights, losses, points[k % len(points)], tiny_dataset, tmp_path)


@pytest.mark.parametrize("point", ["checkpoint:saved:2", "checkpoint:renamed:2", "checkpoint:old-removed:1"])
def test_a_run_killed_while_it_checkpoints_keeps_the_last_complete_one(train_reference, tiny_dataset, tmp_path,
                                                                       point):
    """The moments a checkpoint is half there: written but not yet renamed into place, renamed
    with the old one not yet removed, the old one removed."""
    (weights, losses), points = train_reference
    killed_and_resumed(weights, losses, point, tiny_dataset, tmp_path)


def killed_and_resumed(weights, losses, point: str, dataset, tmp_path):
    """Kill a training run at ``point``, check a complete checkpoint is left, resume it and compare
    with the uninterrupted run."""
    killed = train(dataset, tmp_path / "run", {KILL_AT_ENV: point})
    assert killed.returncode == -9, f"seed {SEED}, {point}: the run was not killed ({killed.stderr[-500:]})"
    checkpoints = sorted((tmp_path / "run").glob("checkpoint-*"))  # only complete ones go by that name
    assert all((c / "model.safetensors").exists() for c in checkpoints), f"killed at {point}: {checkpoints}"
    name, arrival = point.rsplit(":", 1)
    if name.startswith("checkpoint:") and (int(arrival) > 1 or name != "checkpoint:saved"):
        assert checkpoints, f"killed at {point}: no complete checkpoint left"  # one was complete before the kill
    again = train(dataset, tmp_path / "run", resume=True)
    assert again.returncode == 0, f"seed {SEED}, killed at {point}: {again.stderr[-2000:]}"
    got_weights, got_losses = weights_and_losses(tmp_path / "run")
    assert [r["step"] for r in got_losses] == [r["step"] for r in losses], f"seed {SEED}, killed at {point}"
    np.testing.assert_allclose([r["loss"] for r in got_losses], [r["loss"] for r in losses], rtol=1e-5,
                               err_msg=f"seed {SEED}, killed at {point}")
    for key, value in weights.items():
        np.testing.assert_allclose(got_weights[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-7,
                                   err_msg=f"seed {SEED}, killed at {point}: {key}")
