"""The markdown report of an evaluation (``metrics.json`` as written by ``solar_diffusion.evaluate``).

``render_report`` joins one table per section; ``fmt`` writes one figure with its interval.
"""

from __future__ import annotations

import math
from pathlib import Path

from solar_diffusion import evaluation_keys as keys
from solar_diffusion.generate import describe_guidance

#: What every interval in the report means, said once at its top.
INTERVAL_MEANING = ("95% intervals: the spread of the statistic over {n_boot} bootstrap resamples of the images, "
                    "centred on the estimate, so they describe the figure at these sample sizes (Wilson score "
                    "intervals for proportions).")


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
    n = f" (n={'/'.join(str(k) for k in r['n'])})" if "n" in r else ""  # sample sizes, where the figure has them
    if "low" not in r:
        return f"{r['value']:.{digits}g}{n}"
    magnitude = max(abs(r["value"]), abs(r["low"]), abs(r["high"]), 1e-3)
    decimals = min(6, max(0, digits - 1 - int(math.floor(math.log10(magnitude)))))
    return f"{r['value']:.{decimals}f} [{r['low']:.{decimals}f}, {r['high']:.{decimals}f}]{n}"


def render_report(report: dict) -> str:
    """The markdown report of ``metrics.json``: the settings and what the intervals mean, then a
    table per section."""
    lines = _introduction(report)
    for name, space in report["feature_spaces"].items():
        lines += _feature_space(keys.label(name), space, report["settings"]["split"])
    lines += _conditioning_f1(report["conditioning_f1"], report["settings"]["split"])
    for statistic, title in (("peak_brightness", "Peak brightness (mean model-space value of the brightest 0.2% "
                                                  "of on-disk pixels)"),
                             ("brightest_pixel", "Brightest on-disk pixel (model space)")):
        lines += _physical_statistic(report, statistic, title)
    lines += _exposure(report["exposure_outliers"], report["settings"]["split"])
    if report.get("disk_geometry"):
        lines += _disk_geometry(report["disk_geometry"], report["settings"]["split"])
    if report["steps_curve"]:
        lines += _steps_curve(report["steps_curve"])
    if report.get("flare"):
        lines += flare_tables(report["flare"], report["settings"]["split"])
    return "\n".join(lines) + "\n"


def sampling_text(report: dict) -> str:
    """How an evaluation's images were sampled: steps, guidance and (where on) novelty target.

    >>> sampling_text({"settings": {"guidance_scale": 3.0, "novelty_target": 1.0}, "model": {"num_inference_steps": 10}})
    '10 steps, guidance 3, novelty target 1'
    """
    s = report["settings"]
    novelty = f", novelty target {s['novelty_target']:g}" if s.get("novelty_target") else ""
    return (f"{report['model']['num_inference_steps']} steps, "
            f"{describe_guidance(s['guidance_scale'], report['model'].get('guidance_by_flux'))}{novelty}")


def _introduction(report: dict) -> list:
    s = report["settings"]
    split = s["split"]
    model = Path(s["model"]).resolve()
    model = model.relative_to(Path.cwd()) if model.is_relative_to(Path.cwd()) else s["model"]
    counts = report["sample_sizes"]
    return [f"Model `{model}` ({report['model']['scheduler']}, {sampling_text(report)}), {s['num_per_class']} generated images per class, against the real "
            f"`{split}` split of `{s['dataset']}`. {INTERVAL_MEANING.format(n_boot=s['n_boot'])} "
            f"n = generated/real (or floor/real) images. Floor: real train frames vs real {split} "
            f"frames at the same sample sizes (what a perfect generator of the training distribution would score). "
            f"Generation took {report['seconds_per_image']:.2f} s per image.",
            "", "Real images per class: " + ", ".join(f"{c} {n}" for c, n in counts[keys.REAL_SPLIT].items())
            + f" ({split}); " + ", ".join(f"{c} {n}" for c, n in counts[keys.REAL_TRAIN].items()) + " (train).",
            ""]


def _feature_space(name: str, space: dict, split: str) -> list:
    lines = [f"### Distances in the {name} feature space", "",
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
            lines.append(f"| {keys.label(key, split)} | {fmt(row['silhouette'])} | {fmt(row['davies_bouldin'])} | "
                         f"{fmt(row['calinski_harabasz'])} |")
    return lines + [""]


def _conditioning_f1(f1: dict, split: str) -> list:
    lines = ["### Conditioning F1 (the solar encoder, trained on real frames, classifies the images)", ""]
    if f1["classes"]:
        sets = (keys.GENERATED, keys.REAL_SPLIT)
        lines += ["| class | " + " | ".join(keys.label(k, split) for k in sets) + " |", "|---" * (len(sets) + 1) + "|"]
        for c in f1["classes"] + ["macro"]:
            lines.append(f"| {c} | " + " | ".join(fmt(f1[k][c]) for k in sets) + " |")
    return lines + [f"- {c}: {reason}" for c, reason in f1[keys.TOO_FEW].items()]


def _physical_statistic(report: dict, statistic: str, title: str) -> list:
    split, lowest = report["settings"]["split"], report["model"]["classes"][0]
    sets = (keys.GENERATED, keys.REAL_SPLIT, keys.REAL_TRAIN)
    header = ["| class | generated | real " + split + " | real train |", "|---|---|---|---|"]
    lines = ["", f"### {title}", ""] + header
    for c, row in report[statistic].items():
        lines.append(f"| {c} | " + " | ".join(fmt(row[k], 4) for k in sets) + " |")
    lines += ["", f"Difference from the lowest class ({lowest}); above 0 means brighter:", ""] + header
    for c, row in list(report[statistic].items())[1:]:
        lines.append(f"| {c} | " + " | ".join(fmt(row.get(keys.minus_lowest(k), "too few images"), 3)
                                              for k in sets) + " |")
    return lines


def _exposure(exposure: dict, split: str) -> list:
    low, high = exposure["range"]
    lines = ["", f"### Exposure outliers (image mean outside [{low:.3f}, {high:.3f}], "
             "the range of 99% of real train frames)", "", f"| class | generated | real {split} |", "|---|---|---|"]
    for c, row in exposure["classes"].items():
        lines.append(f"| {c} | {fmt(row[keys.GENERATED])} | {fmt(row[keys.REAL_SPLIT])} |")
    return lines


def _disk_geometry(disk: dict, split: str) -> list:
    lines = ["", f"### Disk geometry: fitted limb against the header (centre ({disk['centre_px'][0]:.1f}, "
             f"{disk['centre_px'][1]:.1f}) px, radius {disk['rsun_px']:.2f} px)", "",
             "| images | limb found | median centre offset, px | largest, px | median radius / header's "
             "| range |", "|---|---|---|---|---|---|"]
    for name, row in disk_rows(disk, split):
        cells = [name, fmt(row["found"])]
        if "centre_offset_px" in row:
            low, high = row["radius_ratio_range"]
            cells += [fmt(row["centre_offset_px"]), f"{row['max_centre_offset_px']:.2f}",
                      fmt(row["radius_ratio"], 4), f"{low:.3f}–{high:.3f}"]
        lines.append("| " + " | ".join(cells + [""] * (6 - len(cells))) + " |")
    return lines


def disk_rows(disk: dict, split: str) -> list:
    """The rows of the disk geometry, each with its name on a page: per generated class, then the real split.

    >>> disk_rows({keys.GENERATED: {"M": 1}, keys.REAL_SPLIT: {"all": 2}}, "test")
    [('M (generated)', 1), ('all (real test)', 2)]
    """
    return [(f"{c} ({keys.label(key, split)})", row) for key in (keys.GENERATED, keys.REAL_SPLIT)
            for c, row in disk[key].items()]


def _steps_curve(curve: list) -> list:
    lines = ["", "### Quality versus sampling steps (solar encoder, pooled)", "",
             "| steps | s / image | FD | KID |", "|---|---|---|---|"]
    for row in curve:
        lines.append(f"| {row['steps']} | {row['seconds_per_image']:.2f} | {fmt(row['frechet'])} | {fmt(row['kid'])} |")
    return lines


def flare_tables(flare: dict, split: str) -> list:
    """The flare model's tables: (a) the signature at the requested position per channel, (b) moving
    the position, (c) memorisation, (d) diversity, (e) the disk away from the position, (f) fidelity."""
    channels = flare["signature"]["channels"]
    lines = _signature_table(flare["signature"], channels) + _checks_line(flare.get("checks", {}))
    if flare.get("moved"):
        lines += _moved_table(flare["moved"], channels)
    lines += (_memorisation_table(flare["memorisation"], split) + _diversity_table(flare["diversity"], split)
              + _away_table(flare["away"], channels, split))
    return lines + (fidelity_tables(flare["fidelity"], split) if flare.get("fidelity") else [])


def _channel_cells(cells: dict, channels) -> str:
    return " | ".join(fmt(cells[w]) for w in channels) + " |"


def _signature_table(sig: dict, channels) -> list:
    """(a) One row per class and set, then real frames without a flare, then the paired steps."""
    lines = ["", f"### (a) Flare signature at the requested position (brightest 3x3 pixels within "
             f"{sig['radius_px']:g} px; fraction of the normalised range, and over the disk's 99th percentile)", "",
             "| class | set | " + " | ".join(f"{w} Å" for w in channels) + " |", "|---|---|" + "---|" * len(channels)]
    for c, row in sig["classes"].items():
        for key, cells in row.items():
            lines.append(f"| {c} | {keys.label(key)} | " + _channel_cells(cells, channels))
    for key in (keys.REAL_WITHOUT_FLARE, keys.REAL_WITHOUT_FLARE_OVER_DISK_P99):
        if key in sig:
            lines.append(f"| (none) | {keys.label(key)} | " + _channel_cells(sig[key], channels))
    for name, cells in paired_steps(sig):
        lines.append(f"| {name} | generated, paired (same seeds and positions) | " + _channel_cells(cells, channels))
    return lines


def paired_steps(sig: dict) -> list:
    """The paired steps up the classes of a signature section, lowest first, each as (its words, its cells).

    >>> sig = {"classes": {"quiet": {}, "C": {}, "M": {}}, keys.PAIRED_STEPS: {"C_minus_quiet": 1, "M_minus_C": 2}}
    >>> paired_steps(sig)
    [('C minus quiet', 1), ('M minus C', 2)]
    """
    ladder, steps = list(sig["classes"]), sig.get(keys.PAIRED_STEPS, {})
    return [(f"{higher} minus {lower}", steps[keys.paired_step(lower, higher)])
            for lower, higher in zip(ladder, ladder[1:]) if keys.paired_step(lower, higher) in steps]


def _checks_line(checks: dict) -> list:
    """The release criteria's checks, in one sentence."""
    if not checks:
        return []
    return ["", "Checks of the release criteria (generated means): " + "; ".join(
        f"{w} Å: " + ", ".join(f"{name} {value}" for name, value in row.items()) if isinstance(row, dict)
        else f"{w} {row}" for w, row in checks.items()) + "."]


def _moved_table(moved: dict, channels) -> list:
    """(b) The signature at A and at B, asked there minus asked at the other position."""
    lines = ["", f"### (b) Moving the requested position ({moved['class']}; same seeds at A = "
             f"({moved['a_arcsec'][0]:.0f}, {moved['a_arcsec'][1]:.0f})\" and B = "
             f"({moved['b_arcsec'][0]:.0f}, {moved['b_arcsec'][1]:.0f})\")", "",
             "| signature | " + " | ".join(f"{w} Å" for w in channels) + " |", "|---|" + "---|" * len(channels)]
    for key in (keys.AT_A, keys.AT_B):
        lines.append(f"| {keys.label(key)} | " + _channel_cells(moved[key], channels))
    return lines


def _memorisation_table(mem: dict, split: str) -> list:
    """(c) Distances to the nearest training frame: real references, then per class."""
    novelty = "novelty_target" in mem
    lines = ["", "### (c) Memorisation: RMS distance (model space) to the nearest training frame", "",
             f"Real frames of months the model never saw ({split}): median {fmt(mem[keys.REAL_HELD_OUT])}; "
             "real training frames against training frames more than 3 days away: median "
             f"{fmt(mem.get(keys.REAL_TRAIN_OTHER_DAYS, 'not measured'))}.", "",
             "| class | median | over real held-out | over generated quiet |"
             + (" without novelty guidance: over real held-out |" if novelty else ""),
             "|---|---|---|---|" + ("---|" if novelty else "")]
    for c, row in mem["classes"].items():
        lines.append(f"| {c} | {fmt(row['median'])} | {fmt(row[keys.OVER_REAL_HELD_OUT])} | "
                     f"{fmt(row.get(keys.OVER_GENERATED_QUIET, '-'))} |"
                     + (f" {fmt(row[keys.OVER_REAL_HELD_OUT_WITHOUT_NOVELTY])} |" if novelty else ""))
    if keys.REAL_HELD_OUT_WITH_FLIPS in mem:
        lines += ["", "Searching the flipped training frames too (left-right, up-down and both): real held-out median "
                  f"{fmt(mem[keys.REAL_HELD_OUT_WITH_FLIPS])}; over it, "
                  + "; ".join(f"{c} {fmt(row[keys.OVER_REAL_HELD_OUT_WITH_FLIPS])}"
                              + (f" (without novelty guidance {fmt(row[keys.OVER_REAL_HELD_OUT_WITH_FLIPS_WITHOUT_NOVELTY])})"
                                 if keys.OVER_REAL_HELD_OUT_WITH_FLIPS_WITHOUT_NOVELTY in row else "")
                              for c, row in mem["classes"].items() if keys.OVER_REAL_HELD_OUT_WITH_FLIPS in row) + "."]
    if keys.REAL_HELD_OUT_HEMISPHERE in mem:
        lines += ["", "The nearest training hemisphere instead of frame (each image's northern and southern half "
                  "against the training frames' and their flips', the nearer of the two): real held-out median "
                  f"{fmt(mem[keys.REAL_HELD_OUT_HEMISPHERE])}; over it, "
                  + "; ".join(f"{c} {fmt(row[keys.OVER_REAL_HELD_OUT_HEMISPHERE])}"
                              for c, row in mem["classes"].items() if keys.OVER_REAL_HELD_OUT_HEMISPHERE in row) + "."]
    if novelty:
        lines += ["", f"The images are made with the model's novelty guidance (target {mem['novelty_target']:g} day "
                  "distances: steered away from the nearest training layout while the noise is high); the last column "
                  "is the same requests and seeds without it, the model's own memorisation."]
    return lines


def _diversity_table(div: dict, split: str) -> list:
    """(d) Per class, then random pairs of real frames of the split."""
    lines = ["", "### (d) Diversity: mean RMS distance between images of the same request (other seeds)", "",
             "| class | distance |", "|---|---|"]
    for c, row in div["classes"].items():
        lines.append(f"| {c} | {fmt(row)} |")
    if keys.REAL_SPLIT in div:
        lines.append(f"| {keys.label(keys.REAL_SPLIT, split)} (random pairs) | {fmt(div[keys.REAL_SPLIT])} |")
    return lines


def _away_table(away: dict, channels, split: str) -> list:
    """(e) Per class, then the real split's mean and central 95% of frames."""
    real = keys.label(keys.REAL_SPLIT, split)
    lines = ["", f"### (e) Away from the requested position: the disk's 99th percentile beyond "
             f"{away['radius_px']:g} px of it", "", "| class | " + " | ".join(f"{w} Å" for w in channels) + " |",
             "|---|" + "---|" * len(channels)]
    for c, row in away["classes"].items():
        lines.append(f"| {c} | " + _channel_cells(row, channels))
    lines.append(f"| {real} (mean) | " + _channel_cells(away[keys.REAL_SPLIT], channels))
    ranges = away.get(keys.REAL_SPLIT_CENTRAL_95)
    if ranges:
        lines.append(f"| {keys.label(keys.REAL_SPLIT_CENTRAL_95, split)} | "
                     + " | ".join(f"{ranges[w][0]:.3f}–{ranges[w][1]:.3f}" for w in channels) + " |")
    return lines


def fidelity_tables(fid: dict, split: str) -> list:
    """(f) The fidelity figures: power ratio per band and channel, the 171 Å pit, very bright
    pixels under a flare, colour speckle, the limb, and the criteria's checks."""
    real = keys.label(keys.REAL_SPLIT, split)
    power = fid["power_ratio"]
    bands = [f"{a}-{b}" for a, b in power["bands_cycles_per_image"]]
    lines = ["", f"### (f) Fidelity against real frames at {fid['size']} px ({fid['num_per_class']} images per class; "
             "intervals over seeds for generated images, over days for real frames)", "",
             f"Power of the disk (inside 0.9 R_sun), generated over {real}, per band of cycles per image:", "",
             "| channel | " + " | ".join(bands) + " |", "|---|" + "---|" * len(bands)]
    for w, row in power["channels"].items():
        lines.append(f"| {w} Å | " + " | ".join(fmt(row[b]) for b in bands) + " |")
    pit = fid.get("pit", {})
    if "generated_median" in pit:
        lines += ["", f"The {pit['channel']} Å pit: the darkest pixel within {pit['radius_px']:g} px of the flare "
                  f"({', '.join(pit['classes'])} images at the requested positions; real {'/'.join(pit['classes'])} "
                  "frames of every split at their HEK positions; fraction of the normalised range):", "",
                  "| generated median | real 10th percentile | real median | real minimum | generated below the real "
                  "minimum |", "|---|---|---|---|---|",
                  f"| {fmt(pit['generated_median'])} | {fmt(pit['real_p10'])} | {fmt(pit['real_median'])} | "
                  f"{fmt(pit['real_min'])} | {fmt(pit['generated_below_real_min'])} |"]
    bright = fid.get("very_bright", {})
    if "threshold" in bright:
        lines += ["", f"Very bright {bright['channel']} Å disk pixels (above {bright['threshold']:.3f}, the "
                  f"{bright['percentile']:g}th percentile of the {real} quiet frames' disk pixels): the fraction in "
                  "flare images over that in quiet ones (a flare does not darken 171 Å: about 1):", "",
                  "| class | generated, over quiet at the same seeds | " + keys.label(keys.REAL_SAME_DAYS) + " |",
                  "|---|---|---|"]
        for c in dict.fromkeys(list(bright[keys.GENERATED]) + list(bright[keys.REAL_SAME_DAYS])):
            lines.append(f"| {c} | {fmt(bright[keys.GENERATED].get(c, 'not measured'))} | "
                         f"{fmt(bright[keys.REAL_SAME_DAYS].get(c, 'no real frames'))} |")
    speckle = fid["colour_speckle"]
    sets = (keys.GENERATED, keys.REAL_SPLIT, keys.GENERATED_MINUS_REAL)
    lines += ["", "Colour speckle: the correlation between channels of the disk's fine structure (above "
              f"{speckle['from_cycles_per_image']:g} cycles per image, inside 0.8 R_sun; independent noise per channel "
              "gives 0):", "", "| channels | " + " | ".join(keys.label(k, split) for k in sets) + " |", "|---|---|---|---|"]
    for pair, row in speckle["pairs"].items():
        lines.append(f"| {pair} Å | " + " | ".join(fmt(row[k]) for k in sets) + " |")
    limb = fid["limb"]
    lines += ["", "The limb: a circle fitted to where each image falls most steeply at its edge, on 64 rays from the "
              "header's centre (no point dropped):", "", "| images | limb found | median residual RMS, px | largest, px "
              "| radius, px | largest centre offset, px |", "|---|---|---|---|---|---|"]
    for key in (keys.GENERATED, keys.REAL_SPLIT):
        row = limb[key]
        cells = [keys.label(key, split), fmt(row["found"])]
        if "residual_rms_px" in row:
            low, high = row["radius_px_range"]
            cells += [fmt(row["residual_rms_px"]), f"{row['max_residual_px']:.2f}", f"{low:.2f}–{high:.2f}",
                      f"{row['max_centre_offset_px']:.2f}"]
        lines.append("| " + " | ".join(cells + [""] * (6 - len(cells))) + " |")
    lines += ["", f"Generated limbs within the real maximum residual: {fmt(limb['generated_within_real_max'])}"
              + (f"; beyond it: {', '.join(limb['beyond_real_max'])}." if limb["beyond_real_max"] else ".")]
    return lines + _fidelity_checks_line(fid.get("checks", {}))


def _fidelity_checks_line(checks: dict) -> list:
    """The fidelity criteria's checks, in one sentence.

    >>> _fidelity_checks_line({"a": True, "b": {"94": False, "171": True}, "c": None})
    ['', 'Checks of the fidelity criteria (at 64 px, 32 images per class or more): a yes; b no (94 no, 171 yes); c not measured.']
    """
    if not checks:
        return []

    def word(ok):
        return "not measured" if ok is None else "yes" if ok else "no"

    return ["", "Checks of the fidelity criteria (at 64 px, 32 images per class or more): " + "; ".join(
        f"{name} " + (word(ok) if not isinstance(ok, dict) else
                      f"{word(all(ok.values()))} (" + ", ".join(f"{w} {word(v)}" for w, v in ok.items()) + ")")
        for name, ok in checks.items()) + "."]
