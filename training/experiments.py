"""The paper's two experiments, against the baselines a reviewer asks for, with the power to tell them apart.

    solar-diffusion experiment classifier --dataset data/aia-browse2012-64-3ch --out reports/experiments/classifier
    solar-diffusion experiment predictor --dataset data/aia-browse2012-64-3ch \\
        --flare-list ../shared/data/flare_lists/hek_flares_2003-09_2023-12.csv --out reports/experiments/predictor
    accelerate launch training/experiments.py classifier ...          # same flags

Four arms (``ARMS``), the same seeds, the same number of optimiser steps (each epoch draws as
many frames as the real training frames) and the same model selection (the epoch with the best
macro-F1 on an inner split of the training months: every ``--inner-every``-th day):

- **real**: the real frames of the training months, drawn as they come;
- **class-weighted**: the same frames, the loss weighing each class by 1 / its count;
- **oversampled**: the same frames, every class drawn equally often (rare frames repeated);
- **real + synthetic**: the real frames plus frames the model generated for each ``--synthetic-class``
  (``solar-diffusion augment``; or ``--augmented``, a dataset it made), drawn as they come.

Every arm sees the same safe augmentation (``SafeAugmentation``: brightness +-3 % in physical
units, shifts of up to 1 px, noise at the data's own level; no flips, no rotations, so solar
north and the east-west order stay): oversampled copies are never identical, and the arms differ
only in what they train on and how they weigh it.

**Power.** The diffusion model never saw the validation and test months: both are scored,
together. Differences between arms are paired (the same seeds, the same frames) with 95 %
intervals from a bootstrap that resamples days (a flare's frames share its day) and seeds
together (``metrics.bootstrap``, re-centred on the estimate); the smallest difference the design
could detect (80 % power, 5 % two-sided) is 2.8 standard errors, the standard error being the
interval's width over 3.92.

**classifier**: GOES classes in ``--groups`` (default below C / C / M and above); macro-F1 and
per-group F1 over the groups with at least ``--min-real`` scored frames.

**predictor**: from a frame at time t, does a flare of at least ``--threshold`` peak in
(t, t + ``--horizon-hours``]? Labels come from the flare list. Scored on frames whose nominal hour
is a multiple of ``--eval-hour-stride`` (in the 2012 browse set odd hours were kept only near M/X
flares, which would inflate the base rate): TSS, HSS, the Brier skill score against the real
training base rate, and the base rate. Beside the image the predictor reads the flare history
(``--history-hours``, default 24: ``history_covariate`` of the largest flare that began in that
many hours before the frame; for a generated frame, its own flare, in progress). The real arm is first compared with two reference forecasts
(``reference_forecasts``): climatology and persistence; the synthetic arm's verdicts are given only
for a predictor that beats both in TSS. ``--rescore`` recomputes every figure of a run from the
predictions its ``results.json`` holds.

What the synthetic positives are: images generated for class M or X show a flare *in progress*,
not a pre-flare Sun. They may still help a 24 h predictor because flares cluster in time and
space: an active region that is flaring now is the best single predictor of a flare in the next
day (flare persistence), so an image of a flaring complex is a plausible, if biased, example of
a Sun about to produce one. The experiment measures whether that helps; it does not assume it.

Every run writes ``results.json`` (every run's per-frame predictions, so the figures can be
recomputed), ``report.md`` and ``f1.png`` / ``skill.png``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from solar_diffusion.files import atomic_write
from solar_diffusion.progress import job_bar
from solar_diffusion.results import comparison_tables, decision_words
from solar_diffusion.splits import LabelledImages, dataset_argument, dataset_info, load_split, model_space_split
from solar_diffusion.times import utc_times

#: The arms, the baseline first.
ARMS = ("real", "class-weighted", "oversampled", "real + synthetic")
#: The paired differences reported: every arm against real, and synthetic against each baseline.
COMPARISONS = (("class-weighted", "real"), ("oversampled", "real"), ("real + synthetic", "real"),
               ("real + synthetic", "class-weighted"), ("real + synthetic", "oversampled"))
#: The predictor's fifth arm, with ``--forecast-augmented``: pre-flare Suns of a forecast model
#: (``augment --for-forecasting``) added as positives, against every other arm.
FORECAST_ARM = "real + pre-flare synthetic"
PREDICTOR_COMPARISONS = COMPARISONS + tuple((FORECAST_ARM, b) for b in ARMS)
#: The reference forecasts a predictor must beat before anything added to it is judged (``reference_forecasts``).
REFERENCES = ("climatology", "persistence")
#: Their paired differences: the real-only predictor against each.
REFERENCE_COMPARISONS = (("real", "climatology"), ("real", "persistence"))
#: Standard errors between zero and the smallest difference detected with 80 % power at 5 % two-sided.
DETECTABLE_SE = 2.8
#: The classes the model adds frames of without ``--synthetic-class``: the rare, large flares.
SYNTHETIC_CLASSES = ("M", "X")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="experiment", required=True, help="which experiment: classifier or predictor")
    for name, help_text in (("classifier", "flare-class classifier: real, class-weighted, oversampled, + synthetic"),
                            ("predictor", "24 h flare predictor: real, class-weighted, oversampled, + synthetic")):
        e = sub.add_parser(name, help=help_text)
        e.add_argument("--dataset", required=True, type=dataset_argument,
                       help="a folder made by build-dataset (train/validation/test), or its Hub dataset id")
        e.add_argument("--model", default=None, help="the generating pipeline (default: the bundled flare model)")
        e.add_argument("--out", required=True, help="output folder")
        e.add_argument("--seeds", type=int, default=5, help="training seeds per arm (default 5)")
        e.add_argument("--epochs", type=int, default=30, help="training epochs of each arm")
        e.add_argument("--batch-size", type=int, default=64, help="frames per batch")
        e.add_argument("--learning-rate", type=float, default=1e-3, help="AdamW learning rate")
        e.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
        e.add_argument("--widths", default="8,16,32,64", help="channel widths of the classifier's stages (comma-separated)")
        e.add_argument("--feature-dim", type=int, default=64, help="size of the classifier's feature vector")
        e.add_argument("--stem", type=int, default=1,
                       help="the classifier's first convolution's kernel and stride (4 for 256 px frames: about the "
                            "cost of 64 px)")
        e.add_argument("--inner-every", type=int, default=5,
                       help="every k-th day of the training months chooses the epoch kept (default 5)")
        e.add_argument("--brightness", type=float, default=0.03, help="safe augmentation: max relative brightness change")
        e.add_argument("--shift-px", type=int, default=1, help="safe augmentation: max shift in pixels")
        e.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of days and seeds")
        e.add_argument("--synthetic-class", action="append", dest="synthetic_classes", metavar="CLASS",
                       help="a class of the dataset the model adds frames of in the real + synthetic arm ('M', 'X'); "
                            f"repeat for several (default: {' and '.join(SYNTHETIC_CLASSES)})")
        e.add_argument("--synthetic-per-class", type=int, default=100, help="frames generated per synthetic class")
        e.add_argument("--augmented", default=None,
                       help="a dataset made by solar-diffusion augment from --dataset (default: made in OUT/augmented)")
        e.add_argument("--steps", type=int, default=None,
                       help="sampling steps of the synthetic images (default: the model's own)")
        e.add_argument("--guidance", type=float, default=None,
                       help="guidance scale of the synthetic images (default: the model's own, per image)")
        e.add_argument("--min-real", type=int, default=5, help="fewest scored real frames a group needs to be scored")
        if name == "classifier":
            e.add_argument("--groups", default="<C=quiet,A,B;C=C;>=M=M,X",
                           help="the classes predicted: NAME=CLASS,CLASS;... (default: below C, C, M and above)")
        else:
            e.add_argument("--flare-list", required=True, help="HEK, SWPC or GOES-R flare list")
            e.add_argument("--threshold", action="append", dest="thresholds", metavar="CLASS",
                           help="smallest flare class predicted (repeat; default M and C)")
            e.add_argument("--horizon-hours", type=float, default=24.0, help="a frame is positive if a flare of the threshold class peaks within this many hours")
            e.add_argument("--eval-hour-stride", type=int, default=2,
                           help="score frames whose nominal hour is a multiple of this (1: all)")
            e.add_argument("--history-hours", type=float, default=24.0,
                           help="the predictor also reads the largest flare that began in this many hours before "
                                "the frame (a generated frame: its own flare); 0: the image alone")
            e.add_argument("--forecast-augmented", default=None, metavar="DIR",
                           help="a dataset made by augment --for-forecasting (a forecast model's Suns before a flare, "
                                "same --horizon-hours): adds a fifth arm, real + pre-flare synthetic")
            e.add_argument("--reuse-runs", action="store_true",
                           help="keep the trained runs of the four arms that OUT/results.json holds (refused unless it "
                                "was made with these settings, data and model) and train only the others: a fifth "
                                "arm added with --forecast-augmented, which is always trained")
            e.add_argument("--rescore", action="store_true",
                           help="recompute OUT/results.json's figures, reference forecasts and verdicts from its saved "
                                "predictions, without training (same --dataset and --flare-list)")
    return p


# ------------------------------------------------------------------------------------------
# shared parts
# ------------------------------------------------------------------------------------------


def parse_groups(text: str, vocabulary) -> dict:
    """``--groups`` as {class: group}; every class of ``vocabulary`` must be in exactly one group.

    >>> parse_groups("<C=quiet,A,B;C=C;>=M=M,X", ["quiet", "B", "C", "M", "X"])
    {'quiet': '<C', 'A': '<C', 'B': '<C', 'C': 'C', 'M': '>=M', 'X': '>=M'}
    """
    mapping = {}
    for part in filter(None, (s.strip() for s in str(text).split(";"))):
        name, _, classes = part.rpartition("=")
        if not name or not classes:
            raise ValueError(f"--groups: {part!r} is not NAME=CLASS,CLASS")
        for c in filter(None, (s.strip() for s in classes.split(","))):
            if c in mapping:
                raise ValueError(f"--groups: class {c!r} is in two groups ({mapping[c]!r} and {name!r})")
            mapping[c] = name
    missing = [c for c in vocabulary if c not in mapping]
    if missing:
        raise ValueError(f"--groups: the dataset's classes {missing} are in no group")
    return mapping


def check_arguments(args):
    """Refuse settings that cannot run, before the model or any data is loaded."""
    import math

    for flag, value, least in (("--seeds", args.seeds, 1), ("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1),
                               ("--inner-every", args.inner_every, 2), ("--bootstrap", args.bootstrap, 10),
                               ("--synthetic-per-class", args.synthetic_per_class, 0), ("--steps", args.steps or 1, 1),
                               ("--min-real", args.min_real, 1), ("--shift-px", args.shift_px, 0)):
        if value < least:
            raise ValueError(f"{flag} must be at least {least}, got {value}")
    for flag, value in (("--learning-rate", args.learning_rate), ("--guidance", args.guidance),
                        ("--brightness", args.brightness), ("--weight-decay", args.weight_decay)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ValueError(f"{flag} must be a finite number, 0 or more, got {value}")
    args.synthetic_classes = synthetic_classes(args.synthetic_classes)


def synthetic_classes(flare_classes) -> list[str]:
    """``--synthetic-class`` values as the dataset names its classes (GOES letters, "quiet"),
    checked as generate's ``--flare-class`` is (``parse_flare_class``); default ``SYNTHETIC_CLASSES``.

    >>> synthetic_classes(None), synthetic_classes(["x", " M ", "quiet"])
    (['M', 'X'], ['X', 'M', 'quiet'])
    >>> synthetic_classes(["M2.5"])
    Traceback (most recent call last):
    ...
    ValueError: --synthetic-class 'M2.5': the frames added are of a class of the dataset, a GOES letter such as 'M', not a full class
    """
    from solar_diffusion import QUIET_LABEL, parse_flare_class

    classes = []
    for text in flare_classes or SYNTHETIC_CLASSES:
        name = str(text).strip()
        if name.lower() != QUIET_LABEL:
            parse_flare_class(name)  # a GOES flare class, or a one-line error saying what one is
            if len(name) != 1:
                raise ValueError(f"--synthetic-class {name!r}: the frames added are of a class of the dataset, a GOES "
                                 f"letter such as {name[0].upper()!r}, not a full class")
        classes.append(name.lower() if name.lower() == QUIET_LABEL else name.upper())
    return classes


def inner_validation_days(t_obs, every: int) -> np.ndarray:
    """Which frames fall on every ``every``-th day (by day number since 1970): the inner split of
    the training months that chooses the epoch kept.

    >>> inner_validation_days(np.array(["2012-03-01T00:00", "2012-03-02T10:00", "2012-03-03T01:00"],
    ...                                dtype="datetime64[ns]"), 3).tolist()
    [False, False, True]
    """
    if every < 2:
        raise ValueError(f"--inner-every must be at least 2, got {every}")
    days = utc_times(t_obs).dt.floor("D").to_numpy(dtype="datetime64[D]").astype(np.int64)
    return days % every == 0


def _join(a: LabelledImages, b: LabelledImages) -> LabelledImages:
    if not len(b):
        return a
    covariates = None if a.covariates is None or b.covariates is None else np.concatenate([a.covariates, b.covariates])
    return LabelledImages(torch.cat([a.images, b.images]), np.concatenate([a.labels, b.labels]),
                          np.concatenate([a.t_obs.astype(object), b.t_obs.astype(object)]), covariates)


def _relabel(data: LabelledImages, labels, **changes) -> LabelledImages:
    """``data`` with other labels (and other fields, such as ``covariates``)."""
    return dataclasses.replace(data, labels=np.asarray(labels, dtype=object), **changes)


class Experiment:
    """What both experiments share: the model, the real frames (training months, their inner
    split, the scored months with their days and flares), the synthetic frames and the training of
    one arm."""

    def __init__(self, args):
        check_arguments(args)
        from solar_diffusion.defaults import BUNDLED_MODEL
        from solar_diffusion.generate import load_pipeline
        from solar_diffusion.training.data import SafeAugmentation, noise_level

        self.args, self.out = args, Path(args.out)
        from solar_diffusion.hub import model_name

        self.model = args.model or str(BUNDLED_MODEL)
        self.model_name = model_name(self.model)  # in reports: never a path of this machine
        self.pipe = load_pipeline(self.model)
        self.pipe.set_progress_bar_config(disable=True)
        # the frames at the dataset's size, which the model must make (a cascade: its base's or its upscaler's)
        self.size, normalization = dataset_info(args.dataset)["config"]["size"], self.pipe.normalization
        try:
            self.pipe.output_size(self.size)
        except ValueError as error:
            raise ValueError(f"{args.dataset} holds {self.size} px frames, but {error}: use a model that makes "
                             "them") from None
        train = model_space_split(args.dataset, "train", normalization, self.size)
        inner = inner_validation_days(train.t_obs, args.inner_every)
        if inner.all() or not inner.any():
            raise ValueError(f"{args.dataset}: --inner-every {args.inner_every} leaves no training or no inner "
                             "validation day in the training months")
        self.train, self.inner = train.where(~inner), train.where(inner)
        parts = [model_space_split(args.dataset, s, normalization, self.size) for s in ("validation", "test")]
        self.scored = _join(*parts)
        flares = [load_split(args.dataset, s, columns=("flare_goes_class", "flare_hpc_x", "flare_hpc_y"))
                  for s in ("validation", "test")]
        self.scored_flare = np.concatenate([_flare_keys(f) for f in flares])
        self.scored_days = utc_times(self.scored.t_obs).dt.strftime("%Y-%m-%d").to_numpy()
        self.pre_flare = self._pre_flare_frames() if getattr(args, "forecast_augmented", None) else None
        self.synthetic = self._synthetic_frames()
        self.augmentation = SafeAugmentation(normalization, args.brightness, args.shift_px,
                                             noise_level(self.train.images))

    def _synthetic_frames(self) -> LabelledImages:
        """The generated frames of ``--augmented``, or of an ``augment`` run into OUT/augmented
        (reused when its model weights and settings are this run's)."""
        from solar_diffusion.augment import augment, is_synthetic, weights_digest

        args = self.args
        classes = synthetic_classes(args.synthetic_classes)
        wanted = {"model_weights": weights_digest(self.pipe.unet), "seed": 0,
                  "num_inference_steps": self.pipe.inference_steps(args.steps),
                  "guidance_scale": self.pipe.guidance_setting(args.guidance),
                  "novelty_target": self.pipe.novelty_setting(None),
                  "requested": {c: args.synthetic_per_class for c in classes}}
        folder = Path(args.augmented) if args.augmented else self.out / "augmented"
        if not args.augmented:
            record = dataset_info(folder).get("augmented", {}) if (folder / "build_info.json").exists() else {}
            if {k: record.get(k) for k in wanted} != wanted:
                if folder.exists():
                    shutil.rmtree(folder)  # this experiment's own cache, made with other settings
                augment(args.dataset, folder, self.model, target="balanced", flare_classes=classes,
                        max_per_class=args.synthetic_per_class, seed=0, num_inference_steps=args.steps,
                        guidance_scale=args.guidance)
        info, source = dataset_info(folder), dataset_info(args.dataset)
        self.synthetic_record = info.get("augmented", {})
        if self.synthetic_record.get("original_train_counts") != source["counts"]["train"]:
            raise ValueError(f"--augmented {folder} was not made from {args.dataset} (its original train counts "
                             f"differ): make it with solar-diffusion augment --dataset {args.dataset}")
        frames = model_space_split(folder, "train", self.pipe.normalization, self.size)
        rows = load_split(folder, "train", columns=("label_source", "flare_log10_peak_flux_goes_r"))
        flags = is_synthetic(rows["label_source"])
        # a generated frame shows its flare in progress: its flare history is that flare
        frames.covariates = history_covariate(np.asarray(rows["flare_log10_peak_flux_goes_r"], float))[:, None]
        return frames.where(flags)

    def _pre_flare_frames(self) -> LabelledImages:
        """The generated frames of ``--forecast-augmented``: a forecast model's Suns in the hours
        before a flare of their label, refused unless ``augment --for-forecasting`` made them with
        this run's horizon."""
        from solar_diffusion.augment import is_synthetic

        folder = Path(self.args.forecast_augmented)
        info = dataset_info(folder)
        forecast = info.get("augmented", {}).get("forecast")
        if not forecast:
            raise ValueError(f"--forecast-augmented {folder}: not made by augment --for-forecasting (its build_info.json "
                             "has no augmented.forecast)")
        if forecast["horizon_hours"] != self.args.horizon_hours:
            raise ValueError(f"--forecast-augmented {folder}: its frames precede flares by up to "
                             f"{forecast['horizon_hours']:g} h, the predictor's horizon is {self.args.horizon_hours:g} h")
        channels = dataset_info(self.args.dataset)["config"]["channels"]
        if info["config"]["channels"] != channels:
            raise ValueError(f"--forecast-augmented {folder}: its frames are in {','.join(info['config']['channels'])} "
                             f"Å, {self.args.dataset}'s in {','.join(channels)} Å")
        frames = model_space_split(folder, "train", self.pipe.normalization, self.size)
        return frames.where(is_synthetic(load_split(folder, "train", columns=("label_source",))["label_source"]))

    def fit(self, arm: str, train: LabelledImages, inner: LabelledImages, synthetic: LabelledImages, id2label: dict,
            seed: int):
        """One arm at one seed: the classifier kept by the inner split, and its training history;
        ``synthetic``: the frames an arm with generated frames adds."""
        from solar_diffusion.training.train_classifier import fit_classifier

        args = copy.copy(self.args)
        args.seed, args.augment_rotation = seed, 0.0
        args.class_balance = 1.0 if arm == "oversampled" else 0.0
        data = _join(train, synthetic) if arm in ("real + synthetic", FORECAST_ARM) else train
        return fit_classifier(data, inner, id2label, self.pipe.normalization, args,
                              loss_balance=1.0 if arm == "class-weighted" else 0.0, augment=self.augmentation,
                              samples_per_epoch=len(train), log=False)

    def guidance_words(self) -> str:
        """The guidance the synthetic frames were made with, as their dataset records it."""
        from solar_diffusion.generate import describe_guidance

        return describe_guidance(self.synthetic_record["guidance_scale"], self.synthetic_record.get("guidance_by_flux"))

    def novelty_words(self) -> str:
        """The novelty guidance the synthetic frames were made with, as their dataset records it."""
        target = self.synthetic_record["novelty_target"]
        return f"novelty target {target:g}" if target else "no novelty guidance"

    def settings(self) -> dict:
        from solar_diffusion.augment import weights_digest

        return vars(self.args) | {"model": self.model_name, "model_weights": weights_digest(self.pipe.unet),
                                  "image_size": self.size,
                                  "safe_augmentation": {"brightness": self.augmentation.brightness,
                                                        "shift_px": self.augmentation.shift_px,
                                                        "noise_model_space": round(self.augmentation.noise, 5)}}


def _flare_keys(split) -> np.ndarray:
    """Per frame, the flare that labels it (GOES class and HEK position), "" without one."""
    classes = np.asarray(split["flare_goes_class"], dtype=object)
    xs, ys = np.asarray(split["flare_hpc_x"], float), np.asarray(split["flare_hpc_y"], float)
    return np.array([f"{c}@{x:.0f},{y:.0f}" if c else "" for c, x, y in zip(classes, xs, ys)], dtype=object)


def compare_arms(stats: dict, metric, n_boot: int, bounds: dict, seed: int = 0, comparisons=COMPARISONS) -> dict:
    """Every arm's figures and the paired differences of ``comparisons``, with bootstrap intervals.

    ``stats[arm]`` is an array (seeds, days, ...) of per-day sufficient statistics; ``metric``
    turns their sum over days into named figures (raising ``ValueError`` where undefined). A
    resample draws days and seeds with replacement, the same for every arm (paired). ``bounds``
    gives the range of each figure (a difference of two lies within +-their span). Each difference
    also gets ``detectable``: the smallest difference the design would detect.
    """
    from solar_diffusion.metrics import bootstrap

    arms = list(stats)
    n_seeds, n_days = next(iter(stats.values())).shape[:2]

    def figures(days, seeds):
        per_arm = {}
        for arm in arms:
            summed = stats[arm][seeds][:, days].sum(axis=1)
            runs = [metric(s) for s in summed]
            per_arm[arm] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        out = {f"{arm}|{k}": v for arm, values in per_arm.items() for k, v in values.items()}
        for a, b in comparisons:
            if a in per_arm and b in per_arm:
                out |= {f"{a} - {b}|{k}": per_arm[a][k] - per_arm[b][k] for k in per_arm[a]}
        return out

    ranges = {}
    for arm in arms:
        ranges |= {f"{arm}|{k}": v for k, v in bounds.items()}
    for a, b in comparisons:
        ranges |= {f"{a} - {b}|{k}": (lo - hi, hi - lo) for k, (lo, hi) in bounds.items()}
    intervals = bootstrap(figures, np.arange(n_days), np.arange(n_seeds), n_boot=n_boot, seed=seed, bounds=ranges)
    result = {"arms": {}, "differences": {}}
    for name, interval in intervals.items():
        key, figure = name.split("|")
        entry = {k: round(interval[k], 4) if isinstance(interval[k], float) else interval[k]
                 for k in ("value", "low", "high", "level")}
        if " - " in key:
            entry["detectable"] = round(DETECTABLE_SE * (interval["high"] - interval["low"]) / 3.92, 4)
            result["differences"].setdefault(key, {})[figure] = entry
        else:
            result["arms"].setdefault(key, {})[figure] = entry
    result["resamples"] = intervals[next(iter(intervals))]["method"]
    result["days"], result["seeds"] = int(n_days), int(n_seeds)
    return result


def verdict(difference: dict, what: str) -> str:
    """One plain sentence on a paired difference.

    >>> verdict({"value": 0.05, "low": 0.01, "high": 0.09, "detectable": 0.06}, "synthetic vs real, macro-F1")
    'synthetic vs real, macro-F1: better by 0.050 [0.010, 0.090]'
    """
    d = difference
    text = f"{d['value']:+.3f} [{d['low']:.3f}, {d['high']:.3f}]"
    if d["low"] > 0:
        return f"{what}: better by {d['value']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"
    if d["high"] < 0:
        return f"{what}: worse by {-d['value']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"
    return f"{what}: no difference detected, {text} (the design detects about ±{d['detectable']:.3f})"


def results_json(results: dict) -> str:
    """An experiment's ``results.json`` text: indented, each list of numbers on one line (the
    per-frame predictions: the files are 25 to 60% smaller, and they travel with every checkout).

    >>> print(results_json({"runs": [{"seed": 0, "p": [0.25, 0.5]}]}))
    {
     "runs": [
      {
       "seed": 0,
       "p": [0.25, 0.5]
      }
     ]
    }
    """
    text = json.dumps(results, indent=1, default=str)  # a newline after "[" is never inside a string
    return re.sub(r"\[\n\s*([-0-9.eE+,\s]+?)\n\s*\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)


def _write(out: Path, results: dict, markdown: str):
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.json", lambda tmp: Path(tmp).write_text(results_json(results)))
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(markdown))


def _bars(path: Path, comparison: dict, figures: list[str], title: str):
    """Grouped bars of each arm's figures with their 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = comparison["arms"]
    fig, ax = plt.subplots(figsize=(1.4 * len(figures) + 3, 3.2))
    x = np.arange(len(figures))
    width = 0.8 / len(arms)
    for i, (arm, values) in enumerate(arms.items()):
        v = np.array([values[f]["value"] for f in figures])
        err = np.array([[v[j] - values[f]["low"], values[f]["high"] - v[j]] for j, f in enumerate(figures)]).T
        ax.bar(x + (i - (len(arms) - 1) / 2) * width, v, width, yerr=np.maximum(err, 0), capsize=3, label=arm)
    ax.set_xticks(x, figures)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


# ------------------------------------------------------------------------------------------
# experiment 1: classifier
# ------------------------------------------------------------------------------------------


def classification_figures(confusion: np.ndarray, groups: list[str], scored: list[str]) -> dict:
    """Macro-F1 and per-group F1 (``scored`` groups) of a confusion matrix (rows: true).

    >>> classification_figures(np.array([[8, 2], [1, 4]]), ["no", "yes"], ["no", "yes"])
    {'macro-F1': 0.7847, 'F1 no': 0.8421, 'F1 yes': 0.7273}
    """
    f1 = {}
    for g in scored:
        i = groups.index(g)
        denominator = confusion[i, :].sum() + confusion[:, i].sum()
        if not confusion[i, :].sum():
            raise ValueError(f"no frames of {g}")
        f1[g] = 2 * confusion[i, i] / denominator
    return {"macro-F1": round(float(np.mean(list(f1.values()))), 4)} | {f"F1 {g}": round(float(v), 4)
                                                                       for g, v in f1.items()}


def scored_counts(args, group_of: dict, groups: list) -> dict:
    """Frames per class group in the scored months (validation and test); a ``ValueError`` when no
    group has ``--min-real`` of them (nothing could be scored)."""
    counts = dict.fromkeys(groups, 0)
    for split in ("validation", "test"):
        ds = load_split(args.dataset, split, columns=("flare_class",))
        names = ds.features["flare_class"].names
        for i in ds["flare_class"]:
            counts[group_of[names[int(i)]]] += 1
    if not any(n >= args.min_real for n in counts.values()):
        raise ValueError(f"{args.dataset}: no class group has {args.min_real} scored frames (it has {counts}): "
                         "nothing to score; lower --min-real or score more months")
    return counts


def classifier_experiment(args) -> dict:
    """Train and score the four arms for every seed; write the results. Returns them."""
    from solar_diffusion.splits import dataset_info

    out = Path(args.out)
    check_arguments(args)
    group_of = parse_groups(args.groups, dataset_info(args.dataset)["vocabulary"])
    groups = list(dict.fromkeys(group_of.values()))
    scored_counts(args, group_of, groups)  # refuses, before any work, a run that could score nothing
    ex = Experiment(args)
    id2label = dict(enumerate(groups))
    train = _relabel(ex.train, [group_of[c] for c in ex.train.labels])
    inner = _relabel(ex.inner, [group_of[c] for c in ex.inner.labels])
    synthetic = _relabel(ex.synthetic, [group_of[c] for c in ex.synthetic.labels])
    truth = np.array([group_of[c] for c in ex.scored.labels], dtype=object)
    counts = {g: int((truth == g).sum()) for g in groups}
    scored = [g for g in groups if counts[g] >= args.min_real]  # not empty: scored_counts refused that
    days, day_index = np.unique(ex.scored_days, return_inverse=True)
    runs = {arm: [] for arm in ARMS}
    stats = {arm: np.zeros((args.seeds, len(days), len(groups), len(groups)), np.int64) for arm in ARMS}
    true_ids = np.array([groups.index(g) for g in truth])
    bar = job_bar(args.seeds * len(ARMS), "training classifiers", "run")
    for seed in range(args.seeds):
        for arm in ARMS:
            bar.set_postfix_str(f"{arm}, seed {seed}")
            model, history = ex.fit(arm, train, inner, synthetic, id2label, seed)
            bar.update(1)
            predicted = np.array([groups.index(g) for g in model.predict(ex.scored.images)])
            np.add.at(stats[arm][seed], (day_index, true_ids, predicted), 1)
            runs[arm].append({"seed": seed, "kept_epoch": [r for r in history if r.get("kept")][-1]["epoch"],
                              "figures": classification_figures(stats[arm][seed].sum(0), groups, scored),
                              "predicted": predicted.tolist()})
    bar.close()
    comparison = compare_arms(stats, lambda c: classification_figures(c, groups, scored), args.bootstrap,
                              {f: (0.0, 1.0) for f in ["macro-F1"] + [f"F1 {g}" for g in scored]})
    flares = {g: len({k for k in ex.scored_flare[truth == g] if k}) for g in groups}
    results = {"settings": ex.settings(), "groups": group_of, "group_names": groups, "scored_groups": scored,
               "train_counts": train.counts(), "inner_validation_counts": inner.counts(),
               "synthetic_counts": ex.synthetic.counts(), "scored_counts": counts, "scored_flares": flares,
               "scored_months": sorted({d[:7] for d in days}), "scored_truth": true_ids.tolist(),
               "scored_days": day_index.tolist(), "runs": runs, "comparison": comparison,
               "not_scored": {g: f"too few scored frames (n={counts[g]} < {args.min_real})"
                              for g in groups if g not in scored}}
    figures = ["macro-F1"] + [f"F1 {g}" for g in scored]
    results["verdicts"] = [verdict(comparison["differences"][f"real + synthetic - {b}"][f],
                                   f"real + synthetic vs {b}, {f}") for b in ARMS[:-1] for f in figures]
    members = {g: "{" + ", ".join(c for c, h in group_of.items() if h == g) + "}" for g in groups}
    lines = [f"Classes: {'; '.join(f'{g} = {m}' for g, m in members.items())}. "
             f"Real training frames (training months, inner validation days left out): {train.counts()}; inner "
             f"validation: {inner.counts()}; synthetic frames of the real + synthetic arm: "
             f"{ex.synthetic.counts()} (model {ex.model_name}, {ex.pipe.inference_steps(args.steps)} steps, {ex.guidance_words()}, "
             f"{ex.novelty_words()}).",
             "", f"Scored: every frame of the months the diffusion model never saw ({', '.join(results['scored_months'])}): "
             + ", ".join(f"{g} {counts[g]} frames from {flares[g]} flares" if flares[g] else f"{g} {counts[g]} frames"
                         for g in groups) + f". {args.seeds} seeds per arm.", ""]
    lines += comparison_tables(comparison, figures)
    lines += [f"- {g}: {reason}" for g, reason in results["not_scored"].items()]
    lines += ["", "## Verdict", ""] + [f"- {v}" for v in results["verdicts"]]
    lines += ["", "Confusion matrices (rows: true, columns: predicted; " + ", ".join(groups) + "), summed over seeds:"]
    lines += [f"- {arm}: {stats[arm].sum(axis=(0, 1)).tolist()}" for arm in ARMS]
    _write(out, results, "\n".join(lines) + "\n")
    _bars(out / "f1.png", comparison, figures, "flare-class classifier: four arms (95 % intervals)")
    return results


# ------------------------------------------------------------------------------------------
# experiment 2: predictor
# ------------------------------------------------------------------------------------------


def flare_ahead(t_obs, events, threshold_flux: float, horizon_hours: float) -> np.ndarray:
    """Per frame time, the index (in ``events``) of the first flare with peak flux >=
    ``threshold_flux`` (GOES-R scale) peaking in (t, t + horizon], -1 where none does. ``events``
    is a flare table (``read_flare_list``)."""
    chosen = np.flatnonzero(events["peak_flux"].to_numpy() >= threshold_flux * (1 - 1e-9))
    peaks = events["peak"].to_numpy(dtype="datetime64[ns]")[chosen]
    order = np.argsort(peaks, kind="stable")
    peaks, chosen = peaks[order], chosen[order]
    times = utc_times(t_obs).to_numpy(dtype="datetime64[ns]")
    horizon = np.timedelta64(int(horizon_hours * 3600), "s")
    first_after = np.searchsorted(peaks, times, side="right")
    ahead = (first_after < len(peaks)) & (peaks[np.minimum(first_after, len(peaks) - 1)] <= times + horizon)
    return np.where(ahead, chosen[np.minimum(first_after, len(peaks) - 1)], -1)


def skill_scores(y_true, y_pred) -> dict:
    """Binary forecast skill: TSS (recall - false alarm rate), HSS, precision, recall, base rate.

    >>> skill_scores([1, 1, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0])
    {'tss': 0.25, 'hss': 0.25, 'precision': 0.5, 'recall': 0.5, 'base_rate': 0.3333, 'tp': 1, 'fn': 1, 'fp': 1, 'tn': 3}
    """
    y_true, y_pred = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    tp, fn = int((y_true & y_pred).sum()), int((y_true & ~y_pred).sum())
    fp, tn = int((~y_true & y_pred).sum()), int((~y_true & ~y_pred).sum())
    recall = tp / (tp + fn) if tp + fn else float("nan")
    far = fp / (fp + tn) if fp + tn else float("nan")
    precision = tp / (tp + fp) if tp + fp else 0.0
    denominator = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    hss = 2 * (tp * tn - fn * fp) / denominator if denominator else 0.0
    return {"tss": round(recall - far, 4), "hss": round(hss, 4), "precision": round(precision, 4),
            "recall": round(recall, 4), "base_rate": round((tp + fn) / len(y_true), 4),
            "tp": tp, "fn": fn, "fp": fp, "tn": tn}


def tss_threshold(y_true, p_yes) -> float:
    """The decision threshold on ``p_yes`` with the highest TSS on these frames (the inner split's:
    a forecaster's "yes" threshold is chosen on data it was not trained on, never on the scored
    frames); the midpoint between neighbouring probabilities, so that it does not sit on one; 0.5
    where the frames are all of one kind.

    >>> tss_threshold([0, 0, 1, 1, 0], [0.1, 0.2, 0.35, 0.4, 0.3])
    0.325
    """
    y, p = np.asarray(y_true, bool), np.asarray(p_yes, float)
    if y.all() or not y.any():
        return 0.5
    values = np.unique(p)
    cuts = np.concatenate([[values[0] - 1e-6], (values[1:] + values[:-1]) / 2])
    tss = [(p[y] >= c).mean() - (p[~y] >= c).mean() for c in cuts]
    return round(float(cuts[int(np.argmax(tss))]), 6)


#: Per-day sufficient statistics of a probabilistic forecast (``forecast_statistics``).
FORECAST_STATISTICS = ("tp", "fn", "fp", "tn", "brier", "brier_climatology")


def forecast_statistics(y_true, p_yes, climatology: float, day_index, n_days: int,
                        threshold: float = 0.5) -> np.ndarray:
    """(days, 6) sums of ``FORECAST_STATISTICS``: the contingency table of ``p_yes >= threshold``
    and the squared errors of ``p_yes`` and of the constant ``climatology``."""
    y, p = np.asarray(y_true, bool), np.asarray(p_yes, float)
    yes = p >= threshold
    columns = [y & yes, y & ~yes, ~y & yes, ~y & ~yes, (p - y) ** 2, (climatology - y) ** 2]
    return np.stack([np.bincount(day_index, weights=c.astype(float), minlength=n_days) for c in columns], 1)


def forecast_figures(s) -> dict:
    """TSS, HSS, Brier skill score and base rate of summed ``FORECAST_STATISTICS``.

    >>> forecast_figures([1, 1, 1, 3, 1.0, 1.5])
    {'TSS': 0.25, 'HSS': 0.25, 'BSS': 0.3333, 'base rate': 0.3333}
    """
    tp, fn, fp, tn, brier, climatology = (float(v) for v in s)
    if not tp + fn or not fp + tn:
        raise ValueError("no positive or no negative frames")
    denominator = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    return {"TSS": round(tp / (tp + fn) - fp / (fp + tn), 4),
            "HSS": round(2 * (tp * tn - fn * fp) / denominator, 4) if denominator else 0.0,
            "BSS": round(1 - brier / climatology, 4) if climatology else 0.0,
            "base rate": round((tp + fn) / (tp + fn + fp + tn), 4)}


def flare_history(t_obs, events, hours: float) -> np.ndarray:
    """Per frame time t, log10 of the largest peak flux (GOES-R scale, W m^-2) of the flares that
    began in (t - ``hours``, t]; -inf where none did: what a forecaster knows at t of the recent
    flares.

    >>> import pandas as pd
    >>> events = pd.DataFrame({"start": pd.to_datetime(["2012-03-07T00:02Z", "2012-03-07T01:05Z"]),
    ...                        "peak_flux": [1e-3, 1e-4]})
    >>> flare_history(["2012-03-06T23:00", "2012-03-07T01:00", "2012-03-08T00:30"], events, 24).tolist()
    [-inf, -3.0, -4.0]
    """
    starts = utc_times(events["start"]).to_numpy(dtype="datetime64[ns]")
    order = np.argsort(starts, kind="stable")
    starts, fluxes = starts[order], events["peak_flux"].to_numpy(dtype=float)[order]
    times = utc_times(t_obs).to_numpy(dtype="datetime64[ns]")
    high = np.searchsorted(starts, times, side="right")
    low = np.searchsorted(starts, times - np.timedelta64(int(hours * 3600), "s"), side="right")
    with np.errstate(divide="ignore"):
        return np.array([np.log10(np.nanmax(fluxes[a:b])) if b > a else -np.inf for a, b in zip(low, high)])


def flare_behind(t_obs, events, threshold_flux: float, hours: float) -> np.ndarray:
    """Per frame time t, whether a flare with peak flux >= ``threshold_flux`` (GOES-R scale) began
    in (t - ``hours``, t] (``flare_history``).

    >>> import pandas as pd
    >>> events = pd.DataFrame({"start": pd.to_datetime(["2012-03-07T00:02Z"]), "peak_flux": [2.7e-4]})
    >>> flare_behind(["2012-03-06T23:00", "2012-03-07T01:00", "2012-03-08T00:02"], events, 1e-5, 24).tolist()
    [False, True, False]
    """
    return flare_history(t_obs, events, hours) >= np.log10(threshold_flux * (1 - 1e-9))


def history_covariate(log10_flux) -> np.ndarray:
    """The predictor's flare-history input: log10 peak flux (GOES-R) mapped from [-7, -3] (B1 to
    X7, clipped) to [-1, 1]; no flare (-inf or NaN) is -1.

    >>> history_covariate([-np.inf, -5.0, -2.0]).tolist()
    [-1.0, 0.0, 1.0]
    """
    x = np.nan_to_num(np.asarray(log10_flux, dtype=np.float64), nan=-np.inf)
    return ((np.clip(x, -7.0, -3.0) + 5.0) / 2.0).astype(np.float32)


def reference_forecasts(t_obs, events, threshold_flux: float, horizon_hours: float, climatology: float) -> dict:
    """The forecasts a predictor must beat (``REFERENCES``), as probabilities of "yes" per frame:
    climatology (the training base rate for every frame) and persistence (1 where a flare of the
    threshold began in the ``horizon_hours`` before the frame, else 0: flares cluster in time, so
    "what happened in the last day happens in the next" is the forecast to beat)."""
    behind = flare_behind(t_obs, events, threshold_flux, horizon_hours)
    return {"climatology": np.full(len(behind), float(climatology)), "persistence": behind.astype(float)}


def scored_selection(t_obs, stride: int):
    """The scored frames (those whose nominal hour is a multiple of ``stride``), their days and
    each frame's day index."""
    times = utc_times(t_obs)
    keep = times.dt.round("h").dt.hour.to_numpy() % stride == 0
    days, day_index = np.unique(times.dt.strftime("%Y-%m-%d").to_numpy()[keep], return_inverse=True)
    return keep, days, day_index


def score_predictor(r: dict, references: dict, day_index, n_days: int, n_boot: int, threshold: str) -> dict:
    """The figures of one threshold from its runs' saved ``p_yes`` (``r``: the threshold's results,
    with ``scored_truth``, ``training_base_rate`` and ``runs``): each run's figures, the arms'
    comparison, the real arm against ``references`` and the verdicts. Synthetic verdicts are given
    only where the real-only predictor beats every reference in TSS (interval above 0); a predictor
    without skill gives no ground to judge what is added to it."""
    truth, climatology = np.asarray(r["scored_truth"], bool), r["training_base_rate"]
    bounds = {"TSS": (-1.0, 1.0), "HSS": (-1.0, 1.0), "BSS": (-np.inf, 1.0), "base rate": (0.0, 1.0)}
    stats = {}
    for arm, runs in r["runs"].items():
        stats[arm] = np.stack([forecast_statistics(truth, run["p_yes"], climatology, day_index, n_days,
                                                   run.get("decision_threshold", 0.5)) for run in runs])
        for run, s in zip(runs, stats[arm]):
            run["figures"] = forecast_figures(s.sum(0))
    n_seeds = len(stats["real"])
    reference_stats = {"real": stats["real"]} | {
        name: np.repeat(forecast_statistics(truth, p, climatology, day_index, n_days)[None], n_seeds, axis=0)
        for name, p in references.items()}
    figures = ["TSS", "HSS", "BSS"]
    out = {"comparison": compare_arms(stats, forecast_figures, n_boot, bounds, comparisons=PREDICTOR_COMPARISONS),
           "references": compare_arms(reference_stats, forecast_figures, n_boot, bounds,
                                      comparisons=REFERENCE_COMPARISONS)}
    against = out["references"]["differences"]
    out["verdicts"] = [verdict(against[f"real - {b}"][f], f">= {threshold}: real vs {b}, {f}")
                       for b in REFERENCES for f in figures]
    out["beats_references"] = all(against[f"real - {b}"]["TSS"]["low"] > 0 for b in REFERENCES)
    added = [a for a in (ARMS[-1], FORECAST_ARM) if a in stats]
    if out["beats_references"]:
        out["verdicts"] += [verdict(out["comparison"]["differences"][f"{a} - {b}"][f], f">= {threshold}: {a} vs {b}, {f}")
                            for a in added for b in ARMS if b != a for f in figures]
    else:
        behind = [b for b in REFERENCES if against[f"real - {b}"]["TSS"]["low"] <= 0]
        out["verdicts"] += [f">= {threshold}: {a}: no verdict, the real-only predictor does not beat "
                            f"{' or '.join(behind)} in TSS (the arms' figures are in the tables)" for a in added]
    return out


def predictor_markdown(results: dict) -> str:
    """``report.md`` of a predictor run, from its results."""
    s = results["settings"]
    lines = [f"Scored: frames of the months the diffusion model never saw ({', '.join(results['scored_months'])}) "
             f"whose nominal hour is a multiple of {s['eval_hour_stride']}: {results['scored_frames']} frames on "
             f"{max(results['scored_days'], default=-1) + 1} days. {s['seeds']} seeds per arm; the epoch kept is chosen "
             f"on every {s['inner_every']}th day of the training months. Synthetic positives are generated "
             "flare-in-progress images (see the module docstring for why they may help a 24 h predictor). "
             "Reference forecasts: climatology (the training base rate) and persistence (yes where a flare of the "
             f"threshold began in the {s['horizon_hours']:g} h before the frame). The predictor reads "
             + (f"the image and the flare history (the largest flare that began in the {s['history_hours']:g} h "
                "before the frame)." if s.get("history_hours") else "the image alone.")
             + (f" The runs of {', '.join(results['reused_runs'])} were kept from the earlier run in this folder "
                "(`--reuse-runs`: the same settings, data and model)." if results.get("reused_runs") else ""), ""]
    for threshold, r in results["thresholds"].items():
        lines += [f"### >= {threshold} within {s['horizon_hours']:g} h", ""]
        if "comparison" not in r:
            lines += [f"Not scored: {r['not_scored']}.", ""]
            continue
        lines += [f"Train: {r['train_positives']} positive of {r['train_frames']} real frames (base rate "
                  f"{r['training_base_rate']}), plus {r['synthetic_positives']} synthetic positives in the real + "
                  f"synthetic arm" + (f" and {r['pre_flare_positives']} pre-flare synthetic positives (a forecast "
                                     f"model's) in the {FORECAST_ARM} arm" if "pre_flare_positives" in r else "")
                  + f". Scored: {r['scored_positives']} positive frames before {r['scored_flares']} "
                  f"distinct flares, base rate {r['scored_base_rate']}.", "", decision_words(r["runs"]), "",
                  "Against the reference forecasts:", ""]
        lines += comparison_tables(r["references"], ["TSS", "HSS", "BSS"]) + ["", "The arms:", ""]
        lines += comparison_tables(r["comparison"], ["TSS", "HSS", "BSS"]) + [""]
    lines += ["## Verdict", ""] + [f"- {v}" for v in results["verdicts"]]
    return "\n".join(lines) + "\n"


def write_predictor(out: Path, results: dict):
    """A predictor run's ``results.json``, ``report.md`` and ``skill.png``."""
    results["verdicts"] = [v for r in results["thresholds"].values() for v in r.get("verdicts", [])]
    _write(out, results, predictor_markdown(results))
    done = [t for t, r in results["thresholds"].items() if "comparison" in r]
    if done:
        arms = list(results["thresholds"][done[0]]["comparison"]["arms"])
        merged = {"arms": {arm: {f">={t} TSS": results["thresholds"][t][where]["arms"][arm]["TSS"] for t in done}
                           for where, names in (("references", REFERENCES), ("comparison", arms)) for arm in names}}
        _bars(out / "skill.png", merged, [f">={t} TSS" for t in done],
              f"24 h flare predictor: references and {len(arms)} arms (95 % intervals)")


def predictor_experiment(args) -> dict:
    """The four arms, every seed, every threshold, and the reference forecasts; write the results.
    Returns them. With ``--rescore``: ``rescore_predictor``."""
    if args.rescore:
        return rescore_predictor(args)
    from solar_diffusion import GOES_R_SCALE, SWPC_SCALE, convert_flux_scale, parse_flare_class
    from solar_diffusion.dataset_builder.flares import read_flare_list

    out = Path(args.out)
    ex = Experiment(args)
    events = read_flare_list(args.flare_list)
    thresholds = args.thresholds or ["M", "C"]
    keep, days, day_index = scored_selection(ex.scored.t_obs, args.eval_hour_stride)
    scored = ex.scored.where(keep)
    histories = {name: history_covariate(flare_history(t_obs, events, args.history_hours))[:, None]
                 if args.history_hours else None  # the same for every threshold
                 for name, t_obs in (("train", ex.train.t_obs), ("inner", ex.inner.t_obs), ("scored", scored.t_obs))}
    id2label = {0: "no", 1: "yes"}
    arms = ARMS + ((FORECAST_ARM,) if ex.pre_flare is not None else ())
    results = {"settings": ex.settings(), "synthetic_counts": ex.synthetic.counts(), "scored_frames": len(scored),
               "scored_months": sorted({d[:7] for d in days}), "scored_days": day_index.tolist(), "thresholds": {}}
    if ex.pre_flare is not None:
        results["pre_flare_counts"] = ex.pre_flare.counts()
    kept = reusable_runs(out / "results.json", results) if getattr(args, "reuse_runs", False) else {}
    if kept:
        results["reused_runs"] = sorted({arm for by_arm in kept.values() for arm in by_arm})
    bar = job_bar(len(thresholds) * args.seeds * len(arms), "training predictors", "run")
    for threshold in thresholds:
        flux = convert_flux_scale(parse_flare_class(threshold), SWPC_SCALE, GOES_R_SCALE)
        letter = threshold[0].upper()
        labels = {name: np.where(flare_ahead(d.t_obs, events, flux, args.horizon_hours) >= 0, "yes", "no")
                  for name, d in (("train", ex.train), ("inner", ex.inner))}
        train = _relabel(ex.train, labels["train"], covariates=histories["train"])
        inner = _relabel(ex.inner, labels["inner"], covariates=histories["inner"])
        positive = at_least(ex.synthetic.labels, letter)
        synthetic = ex.synthetic.where(positive)
        synthetic = _relabel(synthetic, np.full(len(synthetic), "yes"),
                             covariates=synthetic.covariates if args.history_hours else None)
        added = {ARMS[-1]: synthetic}
        if ex.pre_flare is not None:
            added[FORECAST_ARM] = pre_flare_positives(ex.pre_flare, letter, train)
        which = flare_ahead(scored.t_obs, events, flux, args.horizon_hours)
        truth = which >= 0
        climatology = float((train.labels == "yes").mean())
        if truth.all() or not truth.any() or climatology in (0.0, 1.0):
            reason = (f"the scored frames are all {'positive' if truth.all() else 'negative'}" if truth.all()
                      or not truth.any() else "the training frames are all of one kind")
            results["thresholds"][threshold] = {"not_scored": reason}
            bar.update(args.seeds * len(arms))
            continue
        runs = {arm: list(kept.get(threshold, {}).get(arm, [])) for arm in arms}
        bar.update(sum(len(r) for r in runs.values()))
        for seed in range(args.seeds):
            for arm in arms:
                if arm in kept.get(threshold, {}):
                    continue
                bar.set_postfix_str(f">= {threshold}, {arm}, seed {seed}")
                model, history = ex.fit(arm, train, inner, added.get(arm), id2label, seed)
                bar.update(1)
                # 4 decimals as doubles: "0.0023" in results.json, not float32's "0.002300000051036477"
                p_yes = model.predict_proba(scored.images, histories["scored"])[:, 1].astype(np.float64)
                p_inner = model.predict_proba(inner.images, inner.covariates)[:, 1].astype(np.float64)
                runs[arm].append({"seed": seed, "kept_epoch": [r for r in history if r.get("kept")][-1]["epoch"],
                                  "decision_threshold": tss_threshold(inner.labels == "yes", np.round(p_inner, 4)),
                                  "p_yes": np.round(p_yes, 4).tolist()})
        r = results["thresholds"][threshold] = {
            "train_positives": int((train.labels == "yes").sum()), "train_frames": len(train),
            "training_base_rate": round(climatology, 4), "synthetic_positives": int(positive.sum()),
            **({"pre_flare_positives": len(added[FORECAST_ARM])} if FORECAST_ARM in added else {}),
            "scored_positives": int(truth.sum()), "scored_flares": int(len(set(which[truth]))),
            "scored_base_rate": round(float(truth.mean()), 4) if len(truth) else None,
            "scored_truth": truth.astype(int).tolist(), "runs": runs}
        references = reference_forecasts(scored.t_obs, events, flux, args.horizon_hours, r["training_base_rate"])
        r |= score_predictor(r, references, day_index, len(days), args.bootstrap, threshold)
    bar.close()
    write_predictor(out, results)
    return results


def reusable_runs(path: Path, results: dict) -> dict:
    """The trained runs of the four arms (``ARMS``) of an earlier predictor run's ``results.json``
    that a run beginning with ``results`` (its settings and data, no runs yet) can keep, as
    {threshold: {arm: runs}}: each run depends only on its arm, seed and data, so keeping them
    equals training them again. Refused, naming what differs, unless the earlier run had the same
    settings (output folder and ``--forecast-augmented`` aside), model weights, synthetic counts
    and scored frames, and every seed of each arm. The forecast arm is never kept: its frames are
    the ones a rerun changes."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no earlier predictor run to reuse")
    old = json.loads(path.read_text())
    ignore = {"func", "command_line", "out", "forecast_augmented", "rescore", "reuse_runs"}
    now = {k: v for k, v in json.loads(results_json({"s": results["settings"]}))["s"].items() if k not in ignore}
    then = {k: v for k, v in old["settings"].items() if k not in ignore}
    differ = sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k))
    differ += [k for k in ("synthetic_counts", "scored_frames", "scored_days") if old.get(k) != results[k]]
    if differ:
        raise ValueError(f"{path}: made with other settings or data ({', '.join(differ)}): its runs cannot be reused")
    kept = {}
    for threshold, r in old["thresholds"].items():
        runs = {arm: r["runs"][arm] for arm in ARMS if arm in r.get("runs", {})}
        for arm, by_seed in runs.items():
            if [run["seed"] for run in by_seed] != list(range(results["settings"]["seeds"])):
                raise ValueError(f"{path}: >= {threshold}, {arm}: seeds {[run['seed'] for run in by_seed]}, this run "
                                 f"wants 0 to {results['settings']['seeds'] - 1}")
        kept[threshold] = runs
    return kept


def at_least(labels, letter: str) -> np.ndarray:
    """Which labels are GOES letters of ``letter`` or above.

    >>> at_least(["quiet", "C", "M", "X"], "M").tolist()
    [False, False, True, True]
    """
    from solar_diffusion import FLARE_LETTERS

    return np.array([c in FLARE_LETTERS and FLARE_LETTERS.index(c) >= FLARE_LETTERS.index(letter) for c in labels],
                    dtype=bool)


def pre_flare_positives(frames: LabelledImages, letter: str, train: LabelledImages) -> LabelledImages:
    """The pre-flare frames of class ``letter`` or above as positives; each gets the flare history
    of a real positive training frame drawn at random (seeded: every arm and seed sees the same),
    since a generated Sun has no past, and the real Suns before a flare do.

    >>> train = LabelledImages(torch.zeros(3, 1, 4, 4), np.array(["no", "yes", "yes"], dtype=object),
    ...                        np.array([None] * 3), np.array([[-1.0], [0.5], [0.25]], np.float32))
    >>> pre = LabelledImages(torch.zeros(2, 1, 4, 4), np.array(["C", "X"], dtype=object), np.array([None] * 2))
    >>> out = pre_flare_positives(pre, "M", train)
    >>> out.labels.tolist(), bool(np.isin(out.covariates, [0.5, 0.25]).all())
    (['yes'], True)
    """
    frames = frames.where(at_least(frames.labels, letter))
    covariates = None
    if train.covariates is not None:
        pool = train.covariates[train.labels == "yes"]
        covariates = pool[np.random.default_rng(0).integers(0, len(pool), len(frames))]
    return _relabel(frames, np.full(len(frames), "yes"), covariates=covariates)


def rescore_predictor(args) -> dict:
    """Recompute a predictor run's figures, reference forecasts and verdicts from the predictions
    its ``results.json`` holds (no training): the scoring changed, the trained arms did not. The
    scored frames and labels of ``--dataset`` and ``--flare-list`` must be the run's own."""
    from solar_diffusion import GOES_R_SCALE, SWPC_SCALE, convert_flux_scale, parse_flare_class
    from solar_diffusion.dataset_builder.flares import read_flare_list

    out = Path(args.out)
    path = out / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no predictor results to rescore")
    results = json.loads(path.read_text())
    settings = results["settings"]
    t_obs = np.concatenate([np.asarray(load_split(args.dataset, s, columns=("t_obs",))["t_obs"], dtype=object)
                            for s in ("validation", "test")])
    keep, days, day_index = scored_selection(t_obs, settings["eval_hour_stride"])
    if int(keep.sum()) != results["scored_frames"] or day_index.tolist() != results["scored_days"]:
        raise ValueError(f"{path}: scored {results['scored_frames']} frames; {args.dataset} gives {int(keep.sum())} "
                         "on other days: the run was made from other data")
    events = read_flare_list(args.flare_list)
    for threshold, r in results["thresholds"].items():
        if "runs" not in r:
            continue
        flux = convert_flux_scale(parse_flare_class(threshold), SWPC_SCALE, GOES_R_SCALE)
        truth = flare_ahead(t_obs[keep], events, flux, settings["horizon_hours"]) >= 0
        if truth.astype(int).tolist() != r["scored_truth"]:
            raise ValueError(f"{path}: the >= {threshold} labels differ from those of {args.flare_list}: "
                             "the run was made with another flare list or horizon")
        references = reference_forecasts(t_obs[keep], events, flux, settings["horizon_hours"], r["training_base_rate"])
        r |= score_predictor(r, references, day_index, len(days), args.bootstrap, threshold)
    settings.setdefault("image_size", dataset_info(args.dataset)["config"]["size"])  # runs made before it was kept
    results["rescored"] = {"flare_list": Path(args.flare_list).name, "bootstrap": args.bootstrap}
    write_predictor(out, results)
    return results


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    return (classifier_experiment if args.experiment == "classifier" else predictor_experiment)(args)


if __name__ == "__main__":
    main()
