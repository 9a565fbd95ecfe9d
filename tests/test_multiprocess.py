"""Training with several processes (2 CPU processes over gloo, multi_cpu.yaml): each rank takes
its own part of every epoch's draw, the ranks hold identical weights, EMA works, and a run
stopped and resumed at a checkpoint ends where an uninterrupted one does."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("class_balance", [0.0, 0.7])
def test_ranks_take_disjoint_parts_of_the_single_process_draw(tiny_dataset, accelerate_launch, tmp_path, class_balance):
    results = {}
    for processes in (1, 2):
        out = tmp_path / f"draws-{processes}.json"
        accelerate_launch(str(ROOT / "tests" / "multiprocess_draws.py"), tiny_dataset, out, "--class-balance",
                          class_balance, processes=processes, timeout=240)
        results[processes] = json.loads(out.read_text())
    assert results[2]["processes"] == 2 and results[2]["distributed_type"].endswith("MULTI_CPU")
    for epoch in ("0", "1"):
        (single,), ranks = results[1]["draws"][epoch], results[2]["draws"][epoch]
        # rank r takes batches r, r + 2, ...: together, in order, the single process's batches
        interleaved = [batch for pair in zip(*ranks) for batch in pair]
        assert interleaved == single[:len(interleaved)] and len(interleaved) >= len(single) - 1, epoch
        if class_balance == 0:  # shuffling without replacement: no frame twice, on any rank
            frames = [i for batch in interleaved for i in batch]
            assert len(frames) == len(set(frames))
    assert results[1]["draws"]["0"] != results[1]["draws"]["1"]  # a new draw each epoch


def test_a_hung_process_group_teardown_after_the_run_is_saved_ends_the_processes(accelerate_launch, tmp_path):
    out = tmp_path / "saved"
    result = accelerate_launch(str(ROOT / "tests" / "multiprocess_teardown.py"), out, processes=2, timeout=120)
    assert result.stderr.count("the process group's teardown hung for 2 s after the run was saved") == 2
    assert "time.sleep(600)" in result.stderr  # where it hung
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved.0", "saved.1"]  # ended there, exit status 0


def _train(accelerate_launch, dataset, out, *extra):
    accelerate_launch("train_ddpm.py", "--dataset", dataset, "--out", out, "--preset", "tiny",
                      "--train-batch-size", 2, "--max-train-steps", 4, "--checkpointing-steps", 2, "--class-balance",
                      0.7, "--use-ema", "--lr-warmup-steps", 0, "--validation-steps", 0, "--sample-steps", 0,
                      "--logger", "none", "--logging-steps", 1, *extra, processes=2, timeout=240)


@pytest.fixture(scope="module")
def whole_two_process_run(tiny_dataset, accelerate_launch, tmp_path_factory) -> Path:
    """An uninterrupted 4-step run on two processes, checkpointed at step 2."""
    whole = tmp_path_factory.mktemp("two-processes") / "whole"
    _train(accelerate_launch, tiny_dataset, whole)
    return whole


def test_two_processes_train_and_checkpoint_each_ranks_state(whole_two_process_run):
    whole = whole_two_process_run
    assert sorted(p.name for p in (whole / "checkpoint-2").glob("random_states_*")) == [
        "random_states_0.pkl", "random_states_1.pkl"]  # each rank's RNG state is kept
    summary = json.loads((whole / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["ranks_hold_identical_weights"] is True


def test_two_processes_resume_exactly(whole_two_process_run, tiny_dataset, accelerate_launch, tmp_path):
    whole, resumed = whole_two_process_run, tmp_path / "resumed"
    resumed.mkdir()  # a run killed after its step-2 checkpoint, resumed
    shutil.copytree(whole / "checkpoint-2", resumed / "checkpoint-2")
    _train(accelerate_launch, tiny_dataset, resumed, "--resume-from-checkpoint", "latest")
    weights = [load_file(p / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors") for p in (whole, resumed)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:  # the EMA weights of both runs (EMA is what the pipeline saves)
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=0, atol=1e-6, msg=name)
    losses = [[json.loads(line)["loss"] for line in (p / "losses.jsonl").read_text().splitlines()] for p in (whole, resumed)]
    assert len(losses[0]) == 4 and losses[0][2:] == pytest.approx(losses[1], abs=1e-6)
