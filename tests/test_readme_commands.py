"""Every command of the README's command blocks, and of the docs pages it links, runs here at tiny sizes, or is
listed with the reason it is not run.

The fenced blocks other than Python (``bash``, ``sh``, ``console``, ``text``, plain) hold commands: one a
line, backslash continuations and a synopsis's indented lines joined, comment lines and trailing comments
left out. (The Python blocks run in tests/test_readme.py and as doctests.)

A command in ``RUN`` runs as written in a fresh working directory that mirrors a checkout (see
``CHECKOUT``), in this process: ``solar-diffusion ...`` through ``solar_diffusion.cli.main``,
``make TARGET`` as the command its Makefile recipe runs, ``accelerate launch ... training/X.py`` and
``python -m MODULE`` through their ``main``. Its entry may fill a synopsis's placeholders (``fill``,
word for word) and append flags that only shrink the work (``append``). A command in ``NOT_RUN``
is matched exactly, with the reason it does not run here; neither table may list a command that no
page has any more.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"
PYTHON_BLOCKS = {"python", "py", "pycon", "pycon3"}


def command_lines(markdown: str) -> list[tuple[int, str]]:
    """The commands of a markdown text's command blocks, with the line each starts on.

    >>> command_lines("```bash\\nmake a \\\\\\n  --b 1  # why\\n# note\\n```\\n```python\\nx = 1\\n```\\n")
    [(2, 'make a --b 1')]
    """
    commands, block, console, first = [], None, False, 0
    for number, line in enumerate(markdown.splitlines(), 1):
        if line.lstrip().startswith("```"):
            info = line.lstrip()[3:].strip().split()
            if block is None:
                block, console, first = (info[0] if info else ""), (info[:1] == ["console"]), len(commands)
            else:
                block = None
            continue
        if block is None or block in PYTHON_BLOCKS or not line.strip() or line.lstrip().startswith("#"):
            continue
        if console:  # a console block's commands follow the prompt; the rest is output
            if not line.startswith("$ "):
                continue
            line = line[2:]
        text = _without_comment(line)
        joined = len(commands) > first and (commands[-1][1].endswith("\\") or line[:1].isspace())
        if joined:  # a backslash continuation, or a synopsis's indented line
            start, before = commands.pop()
            commands.append((start, before.removesuffix("\\").rstrip() + " " + text.strip()))
        else:
            commands.append((number, text.strip()))
    return [(number, " ".join(text.removesuffix("\\").split())) for number, text in commands]


def _without_comment(line: str) -> str:
    """A shell line without its trailing ``# comment`` (a ``#`` inside quotes stays).

    >>> _without_comment('make generate ARGS="--a #1"   # the main job')
    'make generate ARGS="--a #1"'
    """
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


#: README.md and the docs pages it links to.
PAGES = [README] + [ROOT / name for name in dict.fromkeys(re.findall(r"\]\((docs/[\w.-]+\.md)", README.read_text()))]
#: command -> where it first appears ("docs/x.md:12"); a command on several pages is run or listed once
COMMANDS = {}
for _page in PAGES:
    for _number, _text in command_lines(_page.read_text()):
        COMMANDS.setdefault(_text, f"{_page.relative_to(ROOT)}:{_number}")


@dataclass(frozen=True)
class Run:
    """How one page's command runs here.

    ``fill``: a synopsis's placeholder (the page's text) -> what runs in its place, each replaced
    once; ``append``: flags added at the end, only to shrink the work; ``checkout``: the CHECKOUT
    entries the working directory needs; ``after``: the page's earlier command whose output this one
    reads, run first in the same directory (as its own entry says); ``writes``: a file the command
    must leave there; ``slow``: the command takes over 20 s even at its tiny settings (marked ``slow``).
    """

    append: tuple = ()
    fill: dict = field(default_factory=dict)
    checkout: tuple = ()
    after: str | None = None
    writes: str | None = None
    slow: bool = False


#: What the temporary working directory holds where a command names a checkout's path: path -> what it is there.
#: (``../shared`` is beside it, as ../shared is beside a checkout.)
CHECKOUT = {
    "data/aia-browse2012-64-3ch": "fixture readme_browse_64_3ch: the builder's 64 px 171/131/94 A build (the bundled "
                                  "model's size and channels) of four real 2012 days: 03-06 and 03-07 (train, with M "
                                  "and X flares), 08-10 (validation), 10-20 (test)",
    "data/aia171-browse2012-64": "fixture tiny_dataset (conftest): the builder's 16 px 171 A build of three real days",
    "data/aia-browse2012-128-3ch": "fixture flare_days (conftest): the builder's 32 px 171/131/94 A build of three "
                                   "real days, standing in for the 128 px build",
    "../shared/data/sdo_browse_2012/index.csv": "the real index's rows of 2012-03-07, beside a link to its images/",
    "../shared/data/flare_lists": "a link to the real flare lists",
    "training": "a link to this checkout's training/ (scripts and accelerate configs, read only)",
    "solar_diffusion/models/default": "a link to the bundled model (read only)",
    "model_card.md": "a copy (evaluate --model-card writes its results into it)",
    "README.md": "a copy (python -m solar_diffusion.results rewrites its results summary)",
    "reports": "a copy (python -m solar_diffusion.results reads it and rewrites reports/README.md)",
    "solar_diffusion/models/default/README.md": "a copy (python -m solar_diffusion.results rewrites the model card)",
}
_CHECKOUT_FIXTURES = {"data/aia-browse2012-64-3ch": "readme_browse_64_3ch", "data/aia171-browse2012-64": "tiny_dataset",
                      "data/aia-browse2012-128-3ch": "flare_days"}
_CHECKOUT_LINKS = ("training", "solar_diffusion/models/default")
_INDEX_DAYS = ("2012-03-07",)

#: The appended flags: one image of each class in two steps, of the base model alone (the bundled cascade's 256 px
#: through the CLI: tests/test_cli.py::test_bundled_model_is_the_default_and_generates); two optimiser steps of a
#: tiny UNet or of a student on two frames, no samples, validation or logger; evaluate on two images per class in one
#: step and one flare position, no step curve, few bootstrap draws, without novelty guidance (with it, memorisation
#: samples every class a second time without it: 40 s instead of 25 s here); the experiments' arms on one seed and one
#: epoch of a tiny classifier with one synthetic frame per class; one frame added per class by augment.
GENERATE_TINY = ("--num-images", "1", "--steps", "2", "--image-size", "64")
TRAIN_TINY = ("--preset", "tiny", "--max-train-steps", "2", "--train-batch-size", "4", "--checkpointing-steps", "2",
              "--sample-steps", "0", "--validation-steps", "0", "--logger", "none")
UPSCALER_TINY = ("--max-train-steps", "2", "--train-batch-size", "2", "--crop-px", "32", "--checkpointing-steps", "2",
                 "--logger", "none")
DISTILL_TINY = ("--max-train-steps", "2", "--train-batch-size", "2", "--checkpointing-steps", "2")
EVALUATE_TINY = ("--num-images", "2", "--steps", "1", "--steps-curve", "", "--n-boot", "10", "--min-real", "2",
                 "--max-real", "16", "--num-positions", "1", "--novelty-target", "0")
EXPERIMENT_TINY = ("--seeds", "1", "--epochs", "1", "--batch-size", "32", "--widths", "4,8", "--feature-dim", "8",
                   "--steps", "2", "--min-real", "1", "--inner-every", "2", "--synthetic-per-class", "1",
                   "--bootstrap", "20")
AUGMENT_TINY = ("--max-per-class", "1", "--steps", "2")

AUGMENT = ("solar-diffusion augment --dataset data/aia-browse2012-64-3ch --out data/aia-browse2012-64-3ch-synthetic "
           "--target balanced --flare-class M --flare-class X --max-per-class 100")
BUILD_256 = ("solar-diffusion build-dataset --images ../shared/data/sdo_browse_2012/index.csv --flare-list "
             "../shared/data/flare_lists/hek_flares_2003-09_2023-12.csv --flare-list-gaps "
             "../shared/data/flare_lists/hek_flares_empty_months.csv --size 256 --channels 171,131,94 "
             "--out data/aia-browse2012-256-3ch")
DISTILL = ("solar-diffusion distill --teacher solar_diffusion/models/default --dataset data/aia-browse2012-64-3ch "
           "--out runs/distill --train-batch-size 16 --learning-rate 5e-5 --max-train-minutes 45")
PROGRESSIVE = ("solar-diffusion distill --method progressive --teacher runs/distill/pipeline --dataset "
               "data/aia-browse2012-64-3ch --out runs/distill-4 --student-steps 4 --teacher-substeps 4 "
               "--train-batch-size 16 --learning-rate 1e-4 --max-train-minutes 55")
_INDEX = ("../shared/data/sdo_browse_2012/index.csv", "../shared/data/flare_lists")

RUN = {
    "make generate": Run(append=GENERATE_TINY, writes="generated/generation.json"),
    "solar-diffusion generate --model PATH --list-classes": Run(
        fill={"PATH": "solar_diffusion/models/default"}, checkout=("solar_diffusion/models/default",)),
    "accelerate launch --config_file training/accelerate_configs/cpu.yaml training/train_ddpm.py --dataset "
    "data/aia171-browse2012-64 --out runs/ddpm --preset small --use-ema": Run(
        append=TRAIN_TINY, checkout=("training", "data/aia171-browse2012-64"),
        writes="runs/ddpm/pipeline/model_index.json"),
    "solar-diffusion train --dataset data/aia171-browse2012-64 --out runs/ddpm --preset small --use-ema": Run(
        append=TRAIN_TINY, checkout=("data/aia171-browse2012-64",), writes="runs/ddpm/pipeline/model_index.json"),
    "solar-diffusion evaluate --dataset data/aia-browse2012-64-3ch --split test --num-images 32 --out "
    "reports/evaluation [--model PATH] [--encoder PATH] [--inception] [--model-card model_card.md]": Run(
        fill={"[--model PATH]": "--model solar_diffusion/models/default",
              "[--encoder PATH]": "--encoder solar_diffusion/models/default/evaluation_encoder",
              # Inception features need the 'fid' extra's weights, which the test environment leaves out
              # (tests/test_metrics.py::test_inception_distances_grow_with_blur uses them where installed)
              "[--inception]": "",
              "[--model-card model_card.md]": "--model-card model_card.md"},
        append=EVALUATE_TINY, checkout=("data/aia-browse2012-64-3ch", "solar_diffusion/models/default",
                                        "model_card.md"),
        writes="reports/evaluation/metrics.json"),
    "solar-diffusion experiment classifier --dataset data/aia-browse2012-64-3ch --out reports/experiments/classifier":
        Run(append=EXPERIMENT_TINY, checkout=("data/aia-browse2012-64-3ch",),
            writes="reports/experiments/classifier/report.md"),
    "python -m solar_diffusion.results": Run(
        checkout=("README.md", "model_card.md", "reports", "solar_diffusion/models/default/README.md"),
        writes="reports/README.md"),
    # docs/dataset.md, docs/cascade.md
    "solar-diffusion build-dataset --images ../shared/data/sdo_browse_2012/index.csv --flare-list "
    "../shared/data/flare_lists/hek_flares_2003-09_2023-12.csv --flare-list-gaps "
    "../shared/data/flare_lists/hek_flares_empty_months.csv --size 64 --channels 171,131,94 "
    "--out data/aia-browse2012-64-3ch": Run(checkout=_INDEX, writes="data/aia-browse2012-64-3ch/build_info.json"),
    BUILD_256: Run(checkout=_INDEX, writes="data/aia-browse2012-256-3ch/build_info.json"),
    "solar-diffusion train-upscaler --dataset data/aia-browse2012-256-3ch --out runs/upscaler-256 --use-ema "
    "--train-batch-size 16 --crop-px 64 --learning-rate 2e-4 --max-train-steps 6000 --max-train-minutes 55": Run(
        after=BUILD_256, append=UPSCALER_TINY, writes="runs/upscaler-256/pipeline/model_index.json"),
    # docs/experiments.md
    AUGMENT: Run(append=AUGMENT_TINY, checkout=("data/aia-browse2012-64-3ch",),
                 writes="data/aia-browse2012-64-3ch-synthetic/build_info.json"),
    "solar-diffusion experiment classifier --dataset data/aia-browse2012-64-3ch --augmented "
    "data/aia-browse2012-64-3ch-synthetic --out reports/experiments/classifier": Run(
        after=AUGMENT, append=EXPERIMENT_TINY, writes="reports/experiments/classifier/report.md"),
    "solar-diffusion experiment predictor --dataset data/aia-browse2012-64-3ch --augmented "
    "data/aia-browse2012-64-3ch-synthetic --out reports/experiments/predictor --flare-list "
    "../shared/data/flare_lists/hek_flares_2003-09_2023-12.csv": Run(
        after=AUGMENT, append=EXPERIMENT_TINY, checkout=("../shared/data/flare_lists",),
        writes="reports/experiments/predictor/report.md"),
    # docs/offline-gpu.md
    "solar-diffusion pack --dataset data/aia-browse2012-128-3ch --out .pack/aia-browse2012-128-3ch": Run(
        checkout=("data/aia-browse2012-128-3ch",), writes=".pack/aia-browse2012-128-3ch/manifest.json"),
    # docs/distillation.md: slow, about 20 s a distillation here even at two steps of two frames, most of it the
    # bundled teacher's (tiny teachers distil in tests/test_distill.py); a student's own steps at one image
    DISTILL: Run(append=DISTILL_TINY, checkout=("solar_diffusion/models/default", "data/aia-browse2012-64-3ch"),
                 writes="runs/distill/pipeline/model_index.json", slow=True),
    "solar-diffusion generate --model runs/distill/pipeline --flare-class M5": Run(
        after=DISTILL, append=("--num-images", "1", "--image-size", "64"), writes="generated/generation.json",
        slow=True),
    PROGRESSIVE: Run(after=DISTILL, append=DISTILL_TINY, writes="runs/distill-4/pipeline/model_index.json", slow=True),
    "solar-diffusion generate --model runs/distill-4/pipeline --flare-class M5": Run(
        after=PROGRESSIVE, append=("--num-images", "1", "--image-size", "64"), writes="generated/generation.json",
        slow=True),
}

_SYNOPSIS = ("a synopsis (placeholders such as PATH and DIR, [optional] parts, a|b alternatives): its flags and "
             "choices are checked against the parser here; ")
FORECAST_MODEL = ("needs the forecast model of the train command above (runs/ is not in a checkout); ")
NOT_RUN = {
    # docs/experiments.md, forecast mode
    "solar-diffusion train --dataset data/aia-browse2012-64-3ch-forecast --out runs/forecast-64 --conditioning flare "
    "--preset small --init-from solar_diffusion/models/default --train-batch-size 16 --learning-rate 2e-4 "
    "--lr-scheduler constant_with_warmup --lr-warmup-steps 100 --max-train-steps 100000 --max-train-minutes 30 "
    "--use-ema --ema-max-decay 0.999 --class-balance 0.5 --mixed-precision bf16 --augment-flips 0.5 "
    "--checkpointing-steps 200 --checkpoints-total-limit 1 --validation-steps 0 --sample-steps 0 --logger none "
    "--upscaler-from solar_diffusion/models/default":
        "30 minutes of training from the bundled model on the whole year's forecast build; a flare model trains on "
        "forecast labels in tests/test_forecast.py::test_a_forecast_model_records_its_horizon, a base model takes "
        "an upscaler in tests/test_forecast.py::test_a_forecast_model_takes_a_cascades_upscaler_and_draws_no_flare_in_its_maps",
    "solar-diffusion guidance-table --model runs/forecast-64/pipeline --point B1:1.5 --point M9.9:1.5 --point X1:3 "
    "--quiet 3":
        FORECAST_MODEL + "the command sets and removes a table in "
        "tests/test_flare_pipeline.py::test_a_guidance_table_sets_each_images_scale_by_its_requested_flux",
    "solar-diffusion build-dataset --images ../shared/data/sdo_browse_2012/index.csv --flare-list "
    "../shared/data/flare_lists/hek_flares_2003-09_2023-12.csv --flare-list-gaps "
    "../shared/data/flare_lists/hek_flares_empty_months.csv --size 256 --channels 171,131,94 --forecast-hours 24 "
    "--out data/aia-browse2012-256-3ch-forecast":
        "builds the whole year at 256 px (6 minutes on 2 CPU cores); the same build of four days runs in "
        "tests/test_forecast.py::test_forecast_labels_are_the_predictors_and_leave_out_flaring_frames",
    "solar-diffusion augment --model runs/forecast-64/pipeline --dataset data/aia-browse2012-256-3ch-forecast --out "
    "data/aia-browse2012-256-3ch-forecast-synthetic --ratio 1 --flare-class M --flare-class X --max-per-class 100 "
    "--for-forecasting":
        FORECAST_MODEL + "augment --for-forecasting runs at tiny sizes in "
        "tests/test_forecast.py::test_augment_for_forecasting_adds_pre_flare_suns_and_refuses_mixed_models_and_data, "
        "a cascade's frames at the dataset's size in "
        "tests/test_experiments.py::test_the_classifier_experiment_runs_on_the_frames_a_cascade_makes",
    "solar-diffusion evaluate-cascade --model runs/forecast-64/pipeline --dataset data/aia-browse2012-256-3ch-forecast "
    "--split test --num-images 32 --real-frames 96 --encoder solar_diffusion/models/default/evaluation_encoder_256px "
    "--distance-classes M,X --sweep-levels '' --tile-frames 0 --out reports/forecast-cascade":
        FORECAST_MODEL + "the cascade evaluation runs in "
        "tests/test_cascade.py::test_the_cascade_evaluation_measures_generated_and_super_resolved_frames_against_real",
    "solar-diffusion experiment predictor --dataset data/aia-browse2012-256-3ch --augmented "
    "data/aia-browse2012-256-3ch-synthetic --out reports/experiments/predictor-256 --flare-list "
    "../shared/data/flare_lists/hek_flares_2003-09_2023-12.csv --threshold M --stem 4 --shift-px 4 "
    "--forecast-augmented data/aia-browse2012-256-3ch-forecast-synthetic --reuse-runs":
        FORECAST_MODEL + "the fifth arm and --reuse-runs run at tiny sizes in "
        "tests/test_experiments.py::test_the_predictor_gains_a_pre_flare_arm_from_a_forecast_augmented_dataset",
    "solar-diffusion augment --model runs/forecast-64/pipeline --dataset data/aia-browse2012-64-3ch-forecast --out "
    "data/aia-browse2012-64-3ch-forecast-synthetic --ratio 1 --flare-class M --flare-class X --max-per-class 100 "
    "--for-forecasting":
        FORECAST_MODEL + "augment --for-forecasting runs at tiny sizes in "
        "tests/test_forecast.py::test_augment_for_forecasting_adds_pre_flare_suns_and_refuses_mixed_models_and_data",
    "solar-diffusion evaluate --model runs/forecast-64/pipeline --dataset data/aia-browse2012-64-3ch-forecast --split "
    "test --num-images 32 --out reports/forecast-evaluation":
        FORECAST_MODEL + "the evaluation of a flare model runs in tests/test_flare_training.py::test_evaluate_a_flare_model",
    "solar-diffusion experiment predictor --dataset data/aia-browse2012-64-3ch --augmented "
    "data/aia-browse2012-64-3ch-synthetic --out reports/experiments/predictor --flare-list "
    "../shared/data/flare_lists/hek_flares_2003-09_2023-12.csv --threshold M --forecast-augmented "
    "data/aia-browse2012-64-3ch-forecast-synthetic --reuse-runs":
        FORECAST_MODEL + "the five-arm predictor runs at tiny sizes in "
        "tests/test_experiments.py::test_the_predictor_gains_a_pre_flare_arm_from_a_forecast_augmented_dataset",
    # docs/experiments.md, at 256 px
    "solar-diffusion augment --dataset data/aia-browse2012-256-3ch --out data/aia-browse2012-256-3ch-synthetic "
    "--target balanced --flare-class M --flare-class X --max-per-class 100":
        "10 minutes of the bundled cascade on the 256 px build; a cascade's frames are added at the dataset's size "
        "in tests/test_experiments.py::test_the_classifier_experiment_runs_on_the_frames_a_cascade_makes",
    "solar-diffusion experiment classifier --dataset data/aia-browse2012-256-3ch --augmented "
    "data/aia-browse2012-256-3ch-synthetic --out reports/experiments/classifier-256 --stem 4 --shift-px 4":
        "an hour on 2 CPU cores; the same experiment on a cascade's frames with a patchify stem runs in "
        "tests/test_experiments.py::test_the_classifier_experiment_runs_on_the_frames_a_cascade_makes",
    "solar-diffusion experiment predictor --dataset data/aia-browse2012-256-3ch --augmented "
    "data/aia-browse2012-256-3ch-synthetic --out reports/experiments/predictor-256 --flare-list "
    "../shared/data/flare_lists/hek_flares_2003-09_2023-12.csv --threshold M --stem 4 --shift-px 4":
        "an hour on 2 CPU cores; the predictor's arms run at tiny sizes in "
        "tests/test_experiments.py::test_predictor_experiment_runs_all_four_arms, a cascade's frames with a "
        "patchify stem in tests/test_experiments.py::test_the_classifier_experiment_runs_on_the_frames_a_cascade_makes",
    "make test": "runs the whole test suite, this file included; .ci/run runs it on a clean clone",
    "solar-diffusion generate --model PATH_OR_HUB_ID [--flare-class X --flare-class M2.5 --flare-class 1e-4 ...] "
    "--num-images 4 --steps 10 --scheduler ddpm|ddim|dpm|dpm-sde [--guidance 3] --seed 0 --out DIR --format "
    "png|fits|npy [--batch-size N] [--compile] [--device cuda] [--dtype auto|float32|bfloat16|float16] "
    "[--novelty-target 2] [--flare-position S15W01 | --flare-position -475,397 | --flare-position px:20,9]":
        _SYNOPSIS + "its examples run in "
        "tests/test_cli.py::test_a_goes_r_flux_is_a_flare_class_and_what_it_became_is_said (1e-4), "
        "tests/test_cli.py::test_a_negative_arcsec_position_is_taken_as_written (-475,397) and "
        "tests/test_cli.py::test_generate_writes_files_named_by_class_and_seed (formats, schedulers)",
    "solar-diffusion build-dataset --images PATH --flare-list PATH [--flare-list PATH ...] [--goes PATH ...] "
    "[--flare-list-gaps PATH] --size 128 --out DIR [--channels 171] [--window 0] [--forecast-hours 24]":
        _SYNOPSIS + "builds from local files run in "
        "tests/test_dataset_builder.py::test_small_real_build_loads_and_counts, with forecast labels in "
        "tests/test_forecast.py::test_forecast_labels_are_the_predictors_and_leave_out_flaring_frames",
    "solar-diffusion build-dataset --images ../shared/data/sdo_browse_2012/index.csv --flare-list "
    "../shared/data/flare_lists/hek_flares_2003-09_2023-12.csv --flare-list-gaps "
    "../shared/data/flare_lists/hek_flares_empty_months.csv --size 64 --channels 171,131,94 --forecast-hours 24 "
    "--out data/aia-browse2012-64-3ch-forecast":
        "builds the whole year (minutes on 2 CPU cores); the same build of four days runs in "
        "tests/test_forecast.py::test_forecast_labels_are_the_predictors_and_leave_out_flaring_frames",
    "solar-diffusion build-dataset --start 2012-01-01 --end 2012-12-31 --cadence 1h --jsoc-email ME@X --out DIR":
        "needs the network (HEK, GOES XRS through Fido, AIA from JSOC) and an e-mail address registered at JSOC; "
        "its clients run on recorded responses in "
        "tests/test_jsoc.py::test_fetch_is_chunked_by_day_retried_and_resumable, "
        "tests/test_goes.py::test_source_fetches_each_day_and_retries and "
        "tests/test_flares.py::test_hek_multi_year_query_is_split_into_months, live in "
        "tests/test_jsoc.py::test_live_jsoc_one_file (marked live)",
    "pip install torch --index-url https://download.pytorch.org/whl/cpu":
        "installs from the network into the running environment",
    'pip install "solar-diffusion[aia] @ git+<this repository>"':
        "installs from the network into the running environment; <this repository> is a placeholder",
    # docs/generate.md
    "solar-diffusion novelty --model PATH --dataset DIR [--target 2]":
        _SYNOPSIS + "train_ddpm keeps the layouts itself; the command runs in "
        "tests/test_novelty.py::test_the_novelty_command_keeps_a_models_training_layouts",
    "solar-diffusion guidance-table --model PATH --point B2.8:2.5 --point C2.8:2 --quiet 3":
        _SYNOPSIS + "the command sets and removes a table in "
        "tests/test_flare_pipeline.py::test_a_guidance_table_sets_each_images_scale_by_its_requested_flux",
    # docs/cascade.md
    "accelerate launch training/train_classifier.py --dataset data/aia-browse2012-256-3ch --out "
    "solar_diffusion/models/default/evaluation_encoder_256px --epochs 8 --batch-size 64 --weight-decay 0.01 "
    "--class-balance 1.0 --augment-rotation 10 --widths 8,16,32,64 --feature-dim 64 --degradations":
        "trains on the 256 px build (minutes on 2 CPU cores) into the bundled model's folder; the same training "
        "with --degradations runs on 16 px real frames in "
        "tests/test_evaluate.py::test_encoder_with_a_degradation_head_learns_to_tell_blur_and_noise",
    "solar-diffusion train-upscaler --init-from runs/upscaler-256/pipeline --dataset data/aia-browse2012-256-3ch "
    "--out runs/upscaler-256b --use-ema --train-batch-size 4 --crop-px 128 --learning-rate 1e-4 --lr-warmup-steps 100 "
    "--max-train-steps 7000 --max-train-minutes 70 --mixed-precision bf16":
        "an hour of training at 256 px from the first run's weights; --init-from trains on from a saved cascade in "
        "tests/test_upscaler_training.py::test_a_run_starts_from_a_saved_cascades_upscaler",
    "solar-diffusion train-upscaler --init-from runs/upscaler-256b/pipeline --dataset data/aia-browse2012-256-3ch "
    "--out runs/upscaler-256c --use-ema --train-batch-size 2 --crop-px 256 --learning-rate 1e-4 --lr-warmup-steps 100 "
    "--lr-scheduler cosine --max-train-steps 4000 --max-train-minutes 62 --mixed-precision bf16":
        "an hour of training on whole 256 px frames from the second run's weights; --init-from trains on from a saved "
        "cascade in tests/test_upscaler_training.py::test_a_run_starts_from_a_saved_cascades_upscaler",
    "solar-diffusion train-upscaler --objective regression --dataset data/aia-browse2012-256-3ch --out "
    "runs/upscaler-256-l1 --use-ema --train-batch-size 16 --crop-px 64 --learning-rate 2e-4 --max-train-steps 6000 "
    "--max-train-minutes 55 --mixed-precision bf16":
        "an hour of training at 256 px; the regression objective trains, saves and upscales on tiny builds in "
        "tests/test_upscaler_training.py::test_the_regression_control_trains_saves_and_upscales_in_one_pass",
    "solar-diffusion evaluate-cascade --model solar_diffusion/models/default --dataset data/aia-browse2012-256-3ch "
    "--split test --num-images 32 --real-frames 96 --batch-size 4 --spread-seeds 8 --sweep-levels 0,0.05,0.1,0.2 "
    "--sweep-frames 16 --tile-frames 16 --control-upscaler runs/upscaler-256-l1/pipeline --out reports/cascade":
        "samples the 256 px cascade (minutes on 2 CPU cores even at one image per class); the evaluation runs "
        "on a tiny cascade in "
        "tests/test_cascade.py::test_the_cascade_evaluation_measures_generated_and_super_resolved_frames_against_real",
    "solar-diffusion evaluate-cascade --model solar_diffusion/models/default --dataset data/aia-browse2012-256-3ch "
    "--split validation --num-images 16 --real-frames 64 --batch-size 4 --spread-seeds 2 --noise-level 0 "
    "--sweep-levels 0,0.025,0.05 --sweep-frames 32 --tile-frames 0 --no-memorisation --out runs/val-cascade-n0":
        "the validation run that chose the upscaler's noise level (minutes of 256 px sampling on 2 CPU cores); the "
        "evaluation and its sweep over generated images run on a tiny cascade in "
        "tests/test_cascade.py::test_the_cascade_evaluation_measures_generated_and_super_resolved_frames_against_real",
    "python benchmarks/bench_cascade.py --model solar_diffusion/models/default --json reports/bench_cascade.json":
        "a timing benchmark (the cascade at batch 16 and 1 against the paper-scale UNet at 256 px, minutes on 2 CPU "
        "cores, nothing to shrink: the sizes are what it measures); its numbers are reports/bench_cascade.json",
    # docs/training.md
    "solar-diffusion train --dataset ... --out ...":
        "placeholders (...) for the flags of the accelerate line above it, which runs here, as does README.md's "
        "solar-diffusion train line",
    "accelerate launch --config_file training/accelerate_configs/multi_gpu.yaml --num_processes 8 "
    "training/train_ddpm.py ...": "needs 8 GPUs; placeholders (...)",
    "accelerate launch --config_file training/accelerate_configs/multi_node.yaml --machine_rank R --main_process_ip "
    "HOST training/train_ddpm.py ...": "needs several GPU nodes; placeholders (R, HOST, ...)",
    "accelerate launch --config_file training/accelerate_configs/multi_cpu.yaml training/train_ddpm.py ...":
        "placeholders (...); two CPU processes train, checkpoint and resume in "
        "tests/test_multiprocess.py::test_two_processes_resume_exactly",
    # docs/offline-gpu.md
    "solar-diffusion gpu-wheels --out .whl":
        "downloads wheels from the network; the list and the pip command are checked in "
        "tests/test_offline_gpu.py::test_the_gpu_wheels_are_the_tested_versions_fetched_for_the_node",
    'sh training/offline_gpu.sh .pack/aia-browse2012-128-3ch "$OUT" --preset small --use-ema --mixed-precision bf16 '
    "--train-batch-size 256 --scale-lr --dataloader-num-workers 4 --max-train-minutes 8 --max-train-steps 100000 "
    "--lr-scheduler constant_with_warmup --checkpointing-steps 1000":
        "runs on the GPU node (bf16, $OUT is the node's output folder); the script installs and trains from a pack "
        "at tiny settings in "
        "tests/test_offline_gpu.py::test_offline_gpu_script_installs_the_checkout_and_trains_from_a_pack",
    "solar-diffusion assemble --parts OUT --out runs/gpu-128/pipeline":
        "OUT is the GPU run's output folder; pack, train, export-parts, assemble and a generation from the assembled "
        "model run in tests/test_offline_gpu.py::test_pack_train_under_a_time_budget_export_in_parts_assemble_generate",
    "solar-diffusion generate --model runs/gpu-128/pipeline --flare-class X":
        "needs the model the GPU run made (assembled by the line above); see "
        "tests/test_offline_gpu.py::test_pack_train_under_a_time_budget_export_in_parts_assemble_generate",
    # docs/distillation.md
    "solar-diffusion distill ... --resume-from-checkpoint latest":
        "placeholders (...); a resumed distillation is checked against an uninterrupted one in "
        "tests/test_distill.py::test_a_resumed_distillation_equals_an_uninterrupted_one",
}


def _id(text: str) -> str:
    return re.sub(r"[^\w.,:=/-]+", "_", text)[:80].strip("_")


def _params():
    ids = [_id(text) for text in COMMANDS]
    return [pytest.param(text, id=name if ids.count(name) == 1 else f"{name}@{where}",
                         marks=[pytest.mark.slow] if text in RUN and RUN[text].slow else [])
            for (text, where), name in zip(COMMANDS.items(), ids)]


def test_the_pages_have_command_blocks_and_the_tables_only_their_commands():
    """Both tables list only commands the pages have (an edited command must be listed again), once."""
    assert len(PAGES) > 5 and sum(where.startswith("README.md") for where in COMMANDS.values()) >= 5, COMMANDS
    assert not set(RUN) & set(NOT_RUN), "a command is both run and listed"
    stale = sorted((set(RUN) | set(NOT_RUN)) - set(COMMANDS))
    assert not stale, f"no page has these commands any more: remove or update their RUN / NOT_RUN entries: {stale}"
    assert set(CHECKOUT) >= {name for run in RUN.values() for name in run.checkout}


def test_the_tests_named_here_exist():
    """The tests a reason (or a comment) of this file names as running a command's equivalent."""
    named = re.findall(r"(tests/\w+\.py)::(\w+)", Path(__file__).read_text() + " ".join(NOT_RUN.values()))
    assert len(named) > 10
    for path, name in named:
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M), f"{path}::{name} is not a test"


@pytest.mark.parametrize("command", _params())
def test_readme_command(command, tmp_path, monkeypatch, request):
    """Runs the command as written at tiny sizes, or checks its listing: the files of the checkout it
    names exist, and a solar-diffusion command's flags and choices are its parser's."""
    if command in NOT_RUN:
        assert NOT_RUN[command].strip()
        for word in shlex.split(command.replace("$OUT", "OUT")):  # the checkout's files it names exist
            if re.match(r"(training|benchmarks|solar_diffusion|space)/", word):
                assert (ROOT / word).exists(), f"{command!r}: no {word} in the checkout"
        if command.startswith("solar-diffusion "):
            _check_flags(command)
        return
    assert command in RUN, f"{COMMANDS[command]}: {command!r}: add it to RUN (run at tiny sizes) or NOT_RUN (why not)"
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    monkeypatch.chdir(checkout)
    _run_in(command, checkout, request)
    _RAN[command] = checkout  # holds this command's output and its chain's, nothing after it


#: command -> the working directory it ran in, in this process (a later command that reads its output
#: starts from a copy instead of running it again)
_RAN: dict = {}


def _run_in(command: str, checkout: Path, request) -> None:
    how = RUN[command]
    if how.after and how.after in _RAN:
        shutil.copytree(_RAN[how.after], checkout, symlinks=True, dirs_exist_ok=True)
    elif how.after:
        _run_in(how.after, checkout, request)
    text = command
    for placeholder, value in how.fill.items():
        assert placeholder in text, placeholder
        text = text.replace(placeholder, value, 1)
    for name in how.checkout:
        if not os.path.lexists(checkout / name):
            _check_out(name, checkout, request)
    program, argv = resolve(shlex.split(text))
    status = program(argv + list(how.append))  # an exit status, or (a script's main) what it saved
    assert not isinstance(status, int) or status == 0, f"{command!r} exited {status} as {text!r} + {how.append}"
    if how.writes:
        assert (checkout / how.writes).is_file(), f"{command!r} wrote no {how.writes}"


@pytest.fixture(scope="session")
def readme_browse_64_3ch(shared_data, real_dataset_of_days, tmp_path_factory) -> Path:
    """``data/aia-browse2012-64-3ch`` in small: see CHECKOUT."""
    return real_dataset_of_days(shared_data, tmp_path_factory.mktemp("readme") / "aia-browse2012-64-3ch",
                                ["03-06", "03-07", "08-10", "10-20"], 64, channels=("171", "131", "94"),
                                window_minutes=30)


def _check_out(name: str, checkout: Path, request) -> None:
    """Puts CHECKOUT's ``name`` into the working directory ``checkout``."""
    target = checkout / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if name.startswith("../shared/"):
        shared = request.getfixturevalue("shared_data").parent / name.removeprefix("../shared/")
        if shared.name != "index.csv":
            target.symlink_to(shared, target_is_directory=True)
            return
        header, *rows = shared.read_text().splitlines()
        nominal = header.split(",").index("nominal_hour_utc")
        target.write_text("\n".join([header, *(r for r in rows if r.split(",")[nominal][:10] in _INDEX_DAYS)]) + "\n")
        (target.parent / "images").symlink_to(shared.parent / "images", target_is_directory=True)
    elif name in _CHECKOUT_FIXTURES:
        target.symlink_to(request.getfixturevalue(_CHECKOUT_FIXTURES[name]), target_is_directory=True)
    elif name in _CHECKOUT_LINKS:
        target.symlink_to(ROOT / name, target_is_directory=True)
    else:  # a copy, never written through a link into this checkout
        assert checkout.resolve() in target.parent.resolve().parents or target.parent.resolve() == checkout.resolve()
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, target)


def resolve(words: list[str]) -> tuple:
    """The function that runs a command here, and its arguments.

    >>> resolve(["make", "generate", "ARGS=--format fits"])[1]
    ['generate', '--num-images', '2', '--out', 'generated', '--overwrite', '--format', 'fits']
    """
    if words[0] == "solar-diffusion":
        from solar_diffusion.cli import main

        return main, words[1:]
    if words[0] == "make":
        return resolve(make_recipe(words[1], dict(w.split("=", 1) for w in words[2:])))
    if words[:2] == ["accelerate", "launch"]:
        return _accelerate(words[2:])
    if words[0] in ("python", "python3") and words[1] == "-m":
        return PYTHON_MAINS[words[2]], words[3:]
    raise AssertionError(f"no way to run {shlex.join(words)!r} here: list it in NOT_RUN with the reason")


#: ``python -m MODULE`` -> its main. results.main takes the checkout it reads and writes: the working directory.
PYTHON_MAINS = {"solar_diffusion.results": lambda argv: import_module("solar_diffusion.results").main(Path.cwd())}


def make_recipe(target: str, variables: dict) -> list[str]:
    """The words of the one command the Makefile's ``target`` runs (its install prerequisite aside),
    with the Makefile's variables and those given on the make command line, the environment
    assignments and the virtual environment's folder left off."""
    text = MAKEFILE.read_text()
    defined = dict(re.findall(r"^(\w+)\s*[?:]?=[ \t]*(.*)$", text, re.M)) | variables
    recipe = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.M)
    assert recipe, f"the Makefile has no recipe for {target}"
    lines = recipe.group(1).splitlines()
    assert len(lines) == 1, f"make {target} runs {len(lines)} commands: list it in NOT_RUN"
    line = lines[0].strip()
    for _ in range(5):  # variables made of variables
        line = re.sub(r"\$\((\w+)\)", lambda m: defined.get(m.group(1), ""), line)
    words = [w for w in shlex.split(line) if not re.match(r"^\w+=", w)]  # HF_HUB_OFFLINE=1 ...: already set here
    return [Path(words[0]).name, *words[1:]]


def _accelerate(words: list[str]) -> tuple:
    """``accelerate launch [options] training/X.py args`` on one CPU process (as its config says):
    ``solar_diffusion.training.X.main`` in this process."""
    import yaml

    script = next(i for i, w in enumerate(words) if w.endswith(".py"))
    options = dict(zip(words[:script:2], words[1:script:2]))
    assert set(options) <= {"--config_file"}, f"launch options {options}: not one CPU process, list it in NOT_RUN"
    config = yaml.safe_load(Path(options["--config_file"]).read_text())
    assert config["num_processes"] == 1 and config["use_cpu"], f"{options['--config_file']}: not one CPU process"
    path = Path(words[script]).resolve()
    assert path.parent == (ROOT / "training").resolve(), path
    return import_module(f"solar_diffusion.training.{path.stem}").main, words[script + 1:]


def _check_flags(command: str) -> None:
    """Each ``--flag`` of a listed solar-diffusion command is an option of its sub-command, and each
    ``a|b|c`` value of a flag with choices is among them."""
    from solar_diffusion.cli import build_parser

    words = command.replace("[", " ").replace("]", " ").split()
    name = words[1]
    parser = build_parser(name)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    nested = next((a for a in sub._actions if isinstance(a, argparse._SubParsersAction)), None)
    if nested is not None:  # a command with sub-commands of its own: "experiment predictor"
        name = f"{name} {words[2]}"
        sub = nested.choices[words[2]]
    options = {o: a for a in sub._actions for o in a.option_strings}
    for i, word in enumerate(words):
        if not word.startswith("--"):
            continue
        flag = word.split("=", 1)[0]
        assert flag in options, f"{command!r}: solar-diffusion {name} has no {flag}"
        value = words[i + 1] if i + 1 < len(words) else ""
        if options[flag].choices and "|" in value:
            unknown = set(value.split("|")) - set(options[flag].choices)
            assert not unknown, f"{command!r}: {flag} offers no {sorted(unknown)}"
