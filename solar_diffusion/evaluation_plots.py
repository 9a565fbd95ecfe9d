"""The figures of an evaluation: contact sheets of real and generated images, the per-class
metrics with their intervals, and quality versus sampling steps (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from solar_diffusion import evaluation_keys as keys
from solar_diffusion.files import atomic_write
from solar_diffusion.generate import write_contact_sheet, write_contact_sheets


def write_plots(out, report: dict, generated, labels, real, config, markers=None, wavelengths=()):
    """``real_vs_generated.png``, ``contact_sheet.png``, ``per_class_metrics.png`` and (with a
    steps curve) ``steps_curve.png`` in ``out``. ``generated`` are the model-space images,
    ``labels`` their conditioned classes, ``real`` the real images compared (``LabelledImages``)."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    write_evaluation_sheets(out, report, generated, labels, real, config, markers, wavelengths)
    write_per_class_metrics(out / "per_class_metrics.png", report)
    if report["steps_curve"]:
        write_steps_curve(out / "steps_curve.png", report["steps_curve"])


def write_evaluation_sheets(out, report: dict, generated, labels, real, config, markers=None, wavelengths=()):
    """Up to six real and six generated images per class side by side, and up to eight generated
    images per class on their own (per channel too, the requested flare positions circled),
    captioned with their time or seed."""
    classes = report["model"]["classes"]
    shown, names, captions = [], [], []
    for c in classes:
        r = np.flatnonzero(real.labels == c)[:6]
        g = np.flatnonzero(labels == c)[:6]
        shown += [real.images[i] for i in r] + [generated[i] for i in g]
        names += [f"{c} real"] * len(r) + [f"{c} generated"] * len(g)
        captions += [str(real.t_obs[i])[:16] for i in r] + [f"seed {config.seed + i % config.num_per_class}" for i in g]
    write_contact_sheet(out / "real_vs_generated.png", [x.numpy() for x in shown], names, captions,
                        title=f"real {config.split} frames and generated images per class")
    gen_only = [i for c in classes for i in np.flatnonzero(labels == c)[:8]]
    write_contact_sheets(  # image k of every class has seed + k
        out, generated[gen_only].numpy(), labels[gen_only].tolist(),
        [f"seed {config.seed + i % config.num_per_class}" for i in gen_only],
        f"{Path(config.model).name}: {report['model']['num_inference_steps']} steps, guidance {config.guidance_scale}",
        wavelengths, None if markers is None else [markers[i] for i in gen_only])


def write_per_class_metrics(path, report: dict):
    """Bars per class with their intervals: FD (solar encoder) generated and floor, peak
    brightness generated and real, and conditioning F1 generated and real where judged."""
    import matplotlib.pyplot as plt

    classes = report["model"]["classes"]
    space = report["feature_spaces"][keys.SOLAR_ENCODER]["per_class"]
    panels = [("FD (solar encoder)", [(space[c], "generated", "frechet") for c in classes],
               [(space[c], "floor", "floor_frechet") for c in classes]),
              ("peak brightness", [(report["peak_brightness"][c], "generated", keys.GENERATED) for c in classes],
               [(report["peak_brightness"][c], "real", keys.REAL_SPLIT) for c in classes])]
    f1 = report["conditioning_f1"]
    if f1["classes"]:
        judged = [c in f1["classes"] for c in classes]
        panels.append(("conditioning F1", [(f1[keys.GENERATED], "generated", c) if ok else (None, "", "")
                                           for c, ok in zip(classes, judged)],
                       [(f1[keys.REAL_SPLIT], "real", c) if ok else (None, "", "") for c, ok in zip(classes, judged)]))
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
                errors[0].append(max(0.0, r["value"] - r["low"]) if ok else 0)  # 0 where no interval (NaN)
                errors[1].append(max(0.0, r["high"] - r["value"]) if ok else 0)
            ax.bar(x + offset, values, width=0.4, yerr=errors, capsize=3, label=label)
        ax.set_xticks(x, classes)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def write_steps_curve(path, curve: list):
    """FD and KID (solar encoder, pooled) with their intervals against the number of sampling steps."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    steps = [r["steps"] for r in curve]
    for key, marker in (("frechet", "o"), ("kid", "s")):
        v = np.array([[r[key]["value"], r[key]["low"], r[key]["high"]] for r in curve])
        yerr = np.clip([v[:, 0] - v[:, 1], v[:, 2] - v[:, 0]], 0, None)
        ax.errorbar(steps, v[:, 0], yerr=yerr, marker=marker, capsize=3, label="FD" if key == "frechet" else "KID")
    ax.set_xscale("log")
    ax.set_xlabel("sampling steps")
    ax.set_ylabel("distance to real (solar encoder)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
