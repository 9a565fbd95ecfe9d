"""A matrix of bad input through the CLI: each gets exit code 2 and one line naming the value or
file and what is wrong, before any work, and nothing is written or removed: no file, no folder."""

from pathlib import Path

import pytest

from solar_diffusion.cli import main


def tree(*roots) -> dict:
    """Every file under ``roots`` with its size and modification time, and every folder."""
    state = {}
    for root in roots:
        for path in Path(root).rglob("*"):
            st = path.stat()
            state[str(path)] = (st.st_size, st.st_mtime_ns) if path.is_file() else "folder"
    return state


def exit_code(argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as stop:  # argparse's own refusals
        return stop.code


CASES = {  # name: (argv with {model}, {flare}, {data}, {tmp}, {index}, {hek} filled in, words of the message)
    "missing model folder": ("generate --model {tmp}/nope --out {tmp}/g", "nope: no such model folder"),
    "Hub id offline": ("generate --model sun/no-such-model --out {tmp}/g",
                       ("sun/no-such-model is neither a local folder nor in the local Hugging Face cache, and "
                        "HF_HUB_OFFLINE=1 forbids downloads: run `hf download sun/no-such-model`")),
    "guidance not finite": ("generate --model {model} --guidance nan --out {tmp}/g", "--guidance must be a finite"),
    "guidance infinite": ("generate --model {flare} --guidance inf --out {tmp}/g", "--guidance must be a finite"),
    "no images asked": ("generate --model {model} --num-images 0 --out {tmp}/g", "--num-images must be >= 1"),
    "negative images": ("generate --model {model} --num-images -3 --out {tmp}/g", "--num-images must be >= 1, got -3"),
    "no steps": ("generate --model {model} --steps 0 --out {tmp}/g", "--steps must be >= 1"),
    "unknown class": ("generate --model {model} --flare-class Q --out {tmp}/g", "it knows: quiet, C, M, X"),
    "bad class, flare model": ("generate --model {flare} --flare-class Z --out {tmp}/g/deeper",
                               "'Z' is not a GOES flare class"),
    "flux not positive": ("generate --model {flare} --flare-class -1e-4 --out {tmp}/g", "must be a positive"),
    "all and a class": ("generate --model {flare} --flare-class all --flare-class X --out {tmp}/g",
                        "'all' means every class"),
    "bad position": ("generate --model {flare} --flare-class X --flare-position S95W10 --out {tmp}/g", "at most 90"),
    "position behind the limb": ("generate --model {flare} --flare-class X --flare-position N10W95 --out {tmp}/g",
                                 "behind the limb"),
    "position off the disk": ("generate --model {flare} --flare-class X --flare-position -2000,0 --out {tmp}/g",
                              "off the visible disk"),
    "position for a class model": ("generate --model {model} --flare-class X --flare-position S15W01 --out {tmp}/g",
                                   "--flare-position needs a flare model"),
    "output is a file": ("generate --model {model} --out {tmp}/a-file", "a-file"),
    "unknown format": ("generate --model {model} --format gif --out {tmp}/g", "invalid choice: 'gif'"),
    "negative size": ("build-dataset --images {index} --flare-list {hek} --size -8 --out {tmp}/b",
                      "--size must be an integer of 8 to 8192 px, got -8"),
    "zero size": ("build-dataset --images {index} --flare-list {hek} --size 0 --out {tmp}/b",
                  "--size must be an integer of 8 to 8192 px, got 0"),
    "empty shards": ("build-dataset --images {index} --flare-list {hek} --shard-size 0 --out {tmp}/b",
                     "--shard-size must be an integer of at least 1"),
    "not a channel": ("build-dataset --images {index} --flare-list {hek} --channels 999 --out {tmp}/b",
                      "--channels 999: not AIA channels"),
    "missing index": ("build-dataset --images {tmp}/missing.csv --flare-list {hek} --out {tmp}/b", "missing.csv"),
    "batch of zero": ("train --dataset {data} --out {tmp}/t --train-batch-size 0", "--train-batch-size"),
    "missing dataset": ("evaluate --dataset {tmp}/absent/deeper --out {tmp}/e", "no such dataset folder"),
    "no inner split": ("experiment classifier --dataset {data} --model {model} --out {tmp}/x --inner-every 1",
                       "--inner-every must be at least 2"),
    "negative ratio": ("augment --dataset {data} --model {model} --out {tmp}/a --ratio -1",
                       "--ratio must be a positive number"),
    "augment position without class": (("augment --dataset {data} --model {model} --out {tmp}/a --ratio 1 "
                                        "--flare-position S15W01"), "1 flare positions for 0 flare classes"),
    "augment old spelling": ("augment --dataset {data} --model {model} --out {tmp}/a --ratio 1 --classes M,X",
                             "unrecognized arguments: --classes M,X"),
    "push of a plain folder": ("push {tmp}/notes --repo-id sun/x", "neither a saved pipeline"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_in_one_line_and_writes_nothing(case, tiny_model_dir, tiny_dataset, shared_data,
                                                             tmp_path, capsys, saved_conditioned_model):
    flare = saved_conditioned_model(tmp_path / "flare-model", "flare")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "notes").mkdir()
    template, words = CASES[case]
    argv = template.format(model=tiny_model_dir, flare=flare, data=tiny_dataset, tmp=tmp_path,
                           index=shared_data / "sdo_browse_2012" / "index.csv",
                           hek=shared_data / "flare_lists" / "hek_flares_2003-09_2023-12.csv").split()
    before = tree(tmp_path, tiny_dataset)
    code = exit_code(argv)
    err = capsys.readouterr().err
    assert code == 2, (case, code, err)
    assert len(err.strip().splitlines()) == 1 and "error: " in err and words in err, (case, err)
    assert tree(tmp_path, tiny_dataset) == before, case  # nothing written, nothing removed
    assert not any(p.name.startswith(".") and p.suffix == ".tmp" for p in tmp_path.rglob("*")), case
