"""The results page, the README's results summary and the model cards, made from the measured
numbers in ``reports/`` (one source; nothing is typed in by hand)::

    python -m solar_diffusion.results          # after an evaluation, experiment or benchmark run

Writes ``reports/README.md`` (the results page), the summary between the ``results-summary``
markers of ``README.md`` and ``model_card.md``, and copies ``model_card.md`` to the bundled
model's ``README.md`` (its Hub card). ``check`` reports which of those files differ from what
the reports make, which a test runs, so a hand edit of a number fails CI.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from solar_diffusion import evaluation_keys as keys
from solar_diffusion.cascade_evaluation import report_lines
from solar_diffusion.evaluation_report import disk_rows, flare_tables, fmt, paired_steps, sampling_text
from solar_diffusion.files import atomic_write

SUMMARY_START, SUMMARY_END = "<!-- results-summary:start -->", "<!-- results-summary:end -->"
ROOT = Path(__file__).resolve().parents[1]


def load_reports(reports: Path) -> dict:
    """The measured results: the evaluation, both experiments and the sampling benchmark (each
    None where its file is absent)."""
    def read(name):
        path = reports / name
        return json.loads(path.read_text()) if path.exists() else None

    return {"evaluation": read("evaluation/metrics.json"), "paper_evaluation": read("evaluation-paper-171/metrics.json"),
            "experiments": experiments_by_size(reports), "sampling": read("bench_sampling.json"),
            "student": read("bench_student.json"), "cascade": read("cascade/metrics.json"),
            "forecast": read("forecast-evaluation/metrics.json"), "forecast_cascade": read("forecast-cascade/metrics.json"),
            "cascade_speed": read("bench_cascade.json")}


def experiments_by_size(reports: Path) -> list[dict]:
    """Both experiments' results, one entry per image size they were run at, smallest first:
    ``{"size": 64, "classifier": {...} or None, "predictor": ..., "folders": {"classifier": "experiments/classifier"}}``
    (read from every ``experiments/classifier*`` and ``experiments/predictor*`` folder)."""
    by_size: dict[int, dict] = {}
    for kind in ("classifier", "predictor"):
        for path in sorted(reports.glob(f"experiments/{kind}*/results.json")):
            result = json.loads(path.read_text())
            if "image_size" not in result["settings"]:
                raise ValueError(f"{path}: no settings.image_size (a run made before sizes were kept: rerun it, or "
                                 "rescore a predictor run)")
            entry = by_size.setdefault(result["settings"]["image_size"], {"classifier": None, "predictor": None,
                                                                          "folders": {}})
            if entry[kind] is not None:
                raise ValueError(f"{path}: a second {kind} run at {result['settings']['image_size']} px "
                                 f"(the other is in {entry['folders'][kind]})")
            entry[kind], entry["folders"][kind] = result, path.parent.relative_to(reports).as_posix()
    return [{"size": size} | entry for size, entry in sorted(by_size.items())]


def _default_row(sampling: dict, size: int = 64) -> dict | None:
    return next((r for r in sampling["rows"] if r["default"] and r["size"] == size), None) if sampling else None


def summary(results: dict, link: str = "reports/README.md") -> str:
    """A few lines of the headline numbers, for README.md and model_card.md."""
    lines = []
    ev = results["evaluation"]
    if ev:
        s = ev["settings"]
        lines.append(f"Bundled model against the real `{s['split']}` months ({s['num_per_class']} images per class, "
                     f"{sampling_text(ev)}; 95% intervals):")
        lines.append("")
        if ev.get("flare"):
            lines += _flare_summary(ev["flare"], s["split"])
        for space, pooled in ((n, v["pooled"]) for n, v in ev["feature_spaces"].items() if "pooled" in v):
            lines.append(f"- Fréchet distance ({keys.label(space)}, pooled over the scored classes): "
                         f"{fmt(pooled['frechet'])}; "
                         f"real train frames against the same real frames: {fmt(pooled['floor_frechet'])}.")
        lowest = ev["model"]["classes"][0]
        difference = keys.minus_lowest(keys.GENERATED)
        flare_rows = {c: row[difference] for c, row in ev["peak_brightness"].items()
                      if difference in row and c in ("M", "X")}
        if flare_rows:
            lines.append(f"- Brightest 0.2% of on-disk pixels minus {lowest} (model space; a flare should raise it): "
                         + "; ".join(f"{c} {fmt(r)}" for c, r in flare_rows.items()) + ".")
    for entry in results["experiments"]:
        clf, pred, size = entry["classifier"], entry["predictor"], entry["size"]
        if clf:
            macro = clf["comparison"]["arms"]
            lines.append(f"- At {size} px, flare-class classifier ({', '.join(clf['scored_groups'])}), macro-F1 on the "
                         f"months the diffusion model never saw ({clf['settings']['seeds']} seeds; 95% intervals over "
                         "days and seeds): " + "; ".join(f"{arm} {fmt(v['macro-F1'])}" for arm, v in macro.items()) + ".")
            lines += [f"  - {v}" for v in clf["verdicts"] if ", macro-F1" in v]
        for threshold, t in ((k, v) for k, v in (pred or {}).get("thresholds", {}).items() if "comparison" in v):
            arms = t["comparison"]["arms"] | t.get("references", {}).get("arms", {})
            lines.append(f"- At {size} px, flare ≥ {threshold} within 24 h (base rate {t['scored_base_rate']:.3f}, "
                         f"{t['scored_flares']} flares), TSS: "
                         + "; ".join(f"{arm} {fmt(v['TSS'])}" for arm, v in arms.items()) + ".")
            lines += [f"  - {v}" for v in t["verdicts"] if ", TSS" in v or "no verdict" in v]
    row = _default_row(results["sampling"])
    if row:
        lines.append(f"- Sampling at 64 px with the defaults: {row['speedup_vs_paper_batch1']:.0f} times faster than "
                     f"the paper's sampler at batch 1, {row['speedup_vs_paper_batch16']:.0f} times in a batch of 16 "
                     "(BENCHMARKS.md).")
    lines += _student_summary(results["student"])
    lines += ["", f"All tables, with sample sizes and what each interval means: [{link}]({link})."]
    return "\n".join(lines)


def readme_summary(results: dict, link: str = "reports/README.md") -> str:
    """README.md's headline lines (the flare model's release checks, its 131 Å class steps, copies,
    Fréchet distances, the paper's question), with a link to the results page."""
    lines = []
    ev = results["evaluation"]
    if ev:
        s = ev["settings"]
        lines += [f"Bundled model against the real `{s['split']}` months ({s['num_per_class']} images per class, "
                  f"{sampling_text(ev)}; 95% intervals):", ""]
        if ev.get("flare"):
            lines += _flare_headline(ev["flare"], s["split"])
        pooled = {space: v["pooled"] for space, v in ev["feature_spaces"].items() if "pooled" in v}
        lines.append("- Fréchet distance pooled over the scored classes, and its floor (real train frames against "
                     "the same real frames): "
                     + "; ".join(f"{keys.label(space)} {fmt(p['frechet'])}, floor {fmt(p['floor_frechet'])}"
                                 for space, p in pooled.items()) + ".")
    if results["experiments"]:
        lines.append(_question_headline(results["experiments"]))
    return "\n".join(lines + ["", f"Every table, with sample sizes and what each interval means: [{link}]({link})."])


def _flare_headline(flare: dict, split: str) -> list:
    """The README's lines on the flare: release checks passed, the 131 Å class steps, copies."""
    checks = flare.get("checks", {})
    passed = {f"{w} Å {name}": ok for w, row in checks.items() if isinstance(row, dict) for name, ok in row.items()}
    passed |= {name: ok for name, ok in checks.items() if not isinstance(ok, dict)}
    failing = [name for name, ok in passed.items() if not ok]
    lines = ["- Release checks of the flare model ([what they check](docs/evaluation.md#release-checks)): "
             f"{len(passed) - len(failing)} of {len(passed)} pass"
             + (f"; failing: {', '.join(failing)}." if failing else ".")]
    steps = paired_steps(flare["signature"])
    if steps and "131" in flare["signature"]["channels"]:
        lines.append("- 131 Å at the requested position, each step up the classes (same seeds and positions; "
                     "brightest 3x3 pixels, fraction of the 8-bit range): "
                     + "; ".join(f"{name} {fmt(row['131'])}" for name, row in steps) + ".")
    mem = flare["memorisation"]["classes"]

    def copies(key: str) -> str:
        return "; ".join(f"{c} {fmt(mem[c][key])}" for c in ("M", "X") if c in mem)

    novelty = "novelty_target" in flare["memorisation"]
    flips = all(keys.OVER_REAL_HELD_OUT_WITH_FLIPS in mem[c] for c in ("M", "X") if c in mem)
    lines.append(f"- Copies? Median distance to the nearest training frame, over that of real frames of months never "
                 f"seen ({split}): {copies(keys.OVER_REAL_HELD_OUT)}"
                 + (f" (without novelty guidance: {copies(keys.OVER_REAL_HELD_OUT_WITHOUT_NOVELTY)})" if novelty else "")
                 + ("" if not flips else
                    f"; searching the training frames' flips too (a model trained with flips may redraw a mirrored "
                    f"day): {copies(keys.OVER_REAL_HELD_OUT_WITH_FLIPS)}"
                    + (f" (without novelty guidance: {copies(keys.OVER_REAL_HELD_OUT_WITH_FLIPS_WITHOUT_NOVELTY)})"
                       if novelty else "")) + ".")
    return lines


def _question_headline(experiments: list[dict]) -> str:
    """The paper's question in one line: at each image size, real + synthetic against each other arm
    it is compared with (a predictor's pre-flare arm has lines of its own in the section)."""
    def against(comparison: dict, figure: str, synthetic: str = "real + synthetic") -> list:
        return [(other, comparison["differences"][f"{synthetic} - {other}"][figure]) for other in comparison["arms"]
                if f"{synthetic} - {other}" in comparison["differences"]]

    def verdict(d: dict) -> str:
        word = "better" if d["low"] > 0 else "worse" if d["high"] < 0 else "no difference detected"
        return f"{word}, {'+' if d['value'] >= 0 else ''}{fmt(d)}"

    sizes = []
    for entry in experiments:
        clf, pred, parts = entry["classifier"], entry["predictor"], []
        if clf:
            parts.append("flare-class classifier, macro-F1 against "
                         + "; ".join(f"{other}: {verdict(d)}" for other, d in against(clf["comparison"], "macro-F1")))
        if pred:
            scored = {k: t for k, t in pred["thresholds"].items() if "comparison" in t}
            unskilled = [k for k, t in scored.items() if not t.get("beats_references", True)]
            if unskilled:
                references = {k: scored[k]["references"]["arms"] for k in unskilled}
                parts.append("24 h flare predictor: no verdict, the real-only predictor does not beat persistence "
                             "(TSS " + "; ".join(f"≥ {k}: real {fmt(r['real']['TSS'])}, persistence "
                                                 f"{fmt(r['persistence']['TSS'])}" for k, r in references.items()) + ")")
            else:
                tss = [d for t in scored.values() for _, d in against(t["comparison"], "TSS")]
                found = sum(not d["low"] <= 0 <= d["high"] for d in tss)
                parts.append(f"24 h flare predictor, TSS: a difference detected in {found} of {len(tss)} comparisons")
        sizes.append(f"At {entry['size']} px: " + "; ".join(parts))
    return "- Do synthetic images of big flares help (real + synthetic frames against each other arm)? " \
        + ". ".join(sizes) + "."


def _student_summary(bench: dict | None) -> list:
    """One line per distilled student: its fastest row that matches the teacher's defaults in
    every measure, and its fastest row."""
    if not bench or not bench.get("speed") or not bench.get("quality"):
        return []
    q = bench["quality"]
    measures = list(q["feature_spaces"].values()) + list(q.get("flare_signature", {}).values())
    names = [f"FD {space}" for space in q["feature_spaces"]] + \
        [f"{w} Å flare signature" for w in q.get("flare_signature", {})]

    def failing(row) -> list:
        return [name for name, block in zip(names, measures) if not block["rows"][row["set"]]["equivalent"]]

    lines = []
    for student, what in (("guidance", "A guidance-distilled student (one UNet call per step"),
                          ("progressive", "A progressive student (guidance and steps distilled, on its own grid")):
        rows = [r for r in bench["speed"] if r["model"] == student]
        if not rows:
            continue
        equivalent = [r for r in rows if not failing(r)]
        fastest = min(rows, key=lambda r: r["seconds_per_image_batch16"])
        parts = []
        if equivalent:
            best = min(equivalent, key=lambda r: r["seconds_per_image_batch16"])
            parts.append(f"at {best['steps']} steps it matches its teacher at guidance 3 (both without novelty guidance) "
                         f"within every margin "
                         f"({q['level']:.0%} paired intervals; both feature spaces and the flare signature) at "
                         f"{best['speedup_vs_paper_batch16']:.0f} times the paper's sampler's speed in a batch of 16 "
                         f"({best['speedup_vs_paper_batch1']:.0f} times at batch 1)")
        if fastest not in equivalent:
            parts.append(f"at {fastest['steps']} steps it is {fastest['speedup_vs_paper_batch16']:.0f} times faster "
                         f"but not shown equivalent in {', '.join(failing(fastest))}")
        lines.append(f"- {what}; not bundled, made by `solar-diffusion distill`): " + "; ".join(parts) + ".")
    return lines


def _flare_summary(flare: dict, split: str) -> list:
    """The flare model's headline: the signature at the requested position, copies, the disk away from it."""
    sig = flare["signature"]["classes"]
    lines = []
    for w in ("94", "131"):
        if w not in flare["signature"]["channels"]:
            continue
        generated = "; ".join(f"{c} {fmt(row[keys.GENERATED][w])}" for c, row in sig.items())
        real = "; ".join(f"{c} {fmt(row[keys.REAL_AT_HEK_POSITIONS][w])}" for c, row in sig.items()
                         if keys.REAL_AT_HEK_POSITIONS in row and c in ("C", "M", "X"))
        step = flare["signature"].get(keys.PAIRED_STEPS, {}).get(keys.paired_step("C", "M"))
        step = "" if not step else (f" M minus C, paired (same seeds and positions): {fmt(step[w])}"
                                    + (" (a tie)" if step[w].get("low", 1) <= 0 <= step[w].get("high", -1) else "")
                                    + ".")
        lines.append(f"- {w} Å at the requested flare position (brightest 3x3 pixels, fraction of the 8-bit range), "
                     f"generated: {generated}. Real frames at their HEK positions: {real}.{step}")
    checks = flare.get("checks", {})
    if "away_within_real_range" in checks:
        lines.append("- Away from the requested position (the disk's 99th percentile beyond "
                     f"{flare['away']['radius_px']:g} px of it), every class's mean lies within the central 95% of "
                     f"real {split} frames in every channel: {'yes' if checks['away_within_real_range'] else 'no'}.")
    mem = flare["memorisation"]["classes"]
    lines.append("- Copies? Median distance to the nearest training frame, over that of generated quiet images: "
                 + "; ".join(f"{c} {fmt(row[keys.OVER_GENERATED_QUIET])}" for c, row in mem.items()
                             if keys.OVER_GENERATED_QUIET in row and c in ("M", "X"))
                 + f"; over that of real frames of months never seen ({split}): "
                 + "; ".join(f"{c} {fmt(row[keys.OVER_REAL_HELD_OUT])}" for c, row in mem.items() if c in ("M", "X"))
                 + ("" if "novelty_target" not in flare["memorisation"] else
                    f" (with the novelty guidance, target {flare['memorisation']['novelty_target']:g} day distances; without it: "
                    + "; ".join(f"{c} {fmt(row[keys.OVER_REAL_HELD_OUT_WITHOUT_NOVELTY])}"
                                for c, row in mem.items() if c in ("M", "X")) + ")") + ".")
    return lines


def results_page(results: dict) -> str:
    """``reports/README.md``: every table of the measured results."""
    lines = ["# Results", "",
             "Made by `python -m solar_diffusion.results` from the JSON files in this folder; the commands that made "
             "those files are in each section. Intervals are 95%: the spread of the statistic over bootstrap "
             "resamples of the images, centred on the estimate (Wilson intervals for proportions); n = images.", ""]
    ev = results["evaluation"]
    if ev:
        lines += _evaluation_section(ev, "The bundled flare model on the real test months", "evaluation")
    if results["paper_evaluation"]:
        lines += _evaluation_section(results["paper_evaluation"], "The paper's mode (GOES labels, 171 Å: "
                                     "`solar_diffusion/models/paper-171`) on the real test months", "evaluation-paper-171")
    if results.get("forecast"):
        lines += _forecast_section(results["forecast"], ev)
    if results.get("forecast_cascade"):
        size = results["forecast_cascade"]["settings"]["size"]
        lines += _cascade_section(results["forecast_cascade"], None, f"The forecast cascade at {size} px: the bundled "
                                  "upscaler on the forecast model, against real frames before a flare")
    for entry in results["experiments"]:
        if entry["classifier"]:
            lines += _classifier_section(entry["classifier"], entry["size"], entry["folders"]["classifier"])
    for entry in results["experiments"]:
        if entry["predictor"]:
            lines += _predictor_section(entry["predictor"], entry["size"], entry["folders"]["predictor"])
    if results["cascade"]:
        lines += _cascade_section(results["cascade"], results["cascade_speed"])
    if results["sampling"]:
        lines += _sampling_section(results["sampling"])
    if results["student"]:
        lines += _student_section(results["student"])
    return "\n".join(lines).rstrip() + "\n"


def _pooled_rows(ev: dict) -> list:
    """The table of an evaluation's feature-space figures pooled over the scored classes, beside
    their real floors."""
    lines = ["| pooled over the scored classes | generated | floor (real train vs real) |", "|---|---|---|"]
    for space, values in ev["feature_spaces"].items():
        pooled = values.get("pooled")
        if not pooled:
            continue
        for key, label in (("frechet", "Fréchet distance"), ("kid", "KID"), ("precision", "precision"),
                           ("recall", "recall"), ("two_sample_accuracy", "real-vs-synthetic classifier accuracy")):
            lines.append(f"| {label}, {keys.label(space)} | {fmt(pooled[key])} | {fmt(pooled['floor_' + key])} |")
    return lines


def _forecast_section(forecast: dict, in_progress: dict | None) -> list:
    """The forecast model evaluated on a forecast build (real frames labelled by the flare ahead, at
    its position rotated to the frame): its flare signature at the requested position beside real
    frames of the hours before a flare and, from the flare model's evaluation, real frames with the
    flare in progress; its copies and Fréchet distances. Only its ``metrics.json`` is committed
    (the figures of its full report are not: the transfer budget)."""
    s = forecast["settings"]
    section = ["## The forecast model: the Sun in the hours before a flare", "",
               f"`{evaluate_command(s)}` (the command writes the full report "
               f"with its figures; `{s['out']}/metrics.json` is kept here): {s['num_per_class']} images per class, "
               f"{forecast['model']['scheduler']} with {sampling_text(forecast)}.", ""]
    mem = forecast["flare"]["memorisation"]["classes"]
    tail = ["Copies? Median distance to the nearest training frame over that of real frames of months never seen: "
            + "; ".join(f"{c} {fmt(row[keys.OVER_REAL_HELD_OUT])}" for c, row in mem.items() if c in ("M", "X"))
            + ".", ""] + _pooled_rows(forecast) + [""]
    signature = forecast["flare"]["signature"]
    now = ((in_progress or {}).get("flare") or {}).get("signature", {}).get("classes", {})
    table = ["Flare signature at the requested position (brightest 3x3 pixels, fraction of the range): the forecast "
             "model's images against real frames 1 to 24 h before a flare of the class (at the flare's position "
             "rotated to the frame's time) and real frames with a flare of the class in progress (the flare model's "
             "evaluation). A forecast model draws no flare: its figures belong with the second column, below the "
             "third.", "",
             "| class | channel | forecast model | real, before the flare | real, flare in progress |",
             "|---|---|---|---|---|"]
    for c, row in signature["classes"].items():
        if "real_at_hek_positions" not in row:
            continue
        for w in signature["channels"]:
            during = now.get(c, {}).get("real_at_hek_positions", {}).get(w)
            table.append(f"| {c} | {w} Å | {fmt(row['generated'][w])} | {fmt(row['real_at_hek_positions'][w])} | "
                         f"{fmt(during) if during else '—'} |")
    return section + table + [""] + tail


def _cascade_section(report: dict, speed: dict | None, title: str | None = None) -> list:
    """A cascade at its output size (``evaluate-cascade``, with the command it records) and its speed
    (``bench_cascade.py``)."""
    settings = report["settings"]
    command = f"`{settings['command']}`" if settings.get("command") else "Made in Python (no command recorded)"
    title = title or f"The cascade at {settings['size']} px"
    lines = [f"## {title}", "", f"{command}.", ""]
    lines += report_lines(report)[2:]
    if speed:
        lines += ["", f"Speed (`python benchmarks/bench_cascade.py --model {settings['model']} --json "
                      f"reports/bench_cascade.json`, {speed['threads']} threads): "
                      f"{speed['seconds_per_image_batch16']:.2f} s per {speed['size']} px image at batch 16, "
                      f"{speed['seconds_per_image_batch1']:.2f} s at batch 1 (base stage included); the paper's "
                      f"sampler at {speed['size']} px {speed['paper_seconds_per_image']:.0f} s per image: "
                      f"{speed['speedup_vs_paper_batch16']:.0f} times faster at batch 16, "
                      f"{speed['speedup_vs_paper_batch1']:.0f} at batch 1."]
    return lines + [""]


def evaluate_command(s: dict) -> str:
    """The ``solar-diffusion evaluate`` command of an evaluation's ``settings``, with the sampler
    settings it ran with (as recorded: a default the model resolved is written out).

    >>> evaluate_command({"model": "M", "dataset": "D", "split": "test", "num_per_class": 32, "out": "O",
    ...                   "guidance_scale": 1.5, "novelty_target": None, "inception": False})
    'solar-diffusion evaluate --model M --dataset D --split test --num-images 32 --guidance 1.5 --out O'
    """
    flags = [f"--model {s['model']}", f"--dataset {s['dataset']}", f"--split {s['split']}",
             f"--num-images {s['num_per_class']}"]
    flags += [f"--guidance {s['guidance_scale']:g}"] if s.get("guidance_scale") is not None else []
    flags += [f"--novelty-target {s['novelty_target']:g}"] if s.get("novelty_target") is not None else []
    flags += ["--inception"] if s.get("inception") else []
    return " ".join(["solar-diffusion evaluate", *flags, f"--out {s['out']}"])


def _evaluation_section(ev: dict, title: str, folder: str) -> list:
    s, split = ev["settings"], ev["settings"]["split"]
    lines = [f"## {title}", "",
             f"`{evaluate_command(s)}`: "
             f"{s['num_per_class']} images per class, {ev['model']['scheduler']} with {sampling_text(ev)}. Full report: "
             f"[{folder}/report.md]({folder}/report.md).", ""]
    if ev.get("flare"):
        channels = ev["flare"]["signature"]["channels"]
        lines += ["Generated images, every class asked at the same positions with the same seeds (circled), per "
                  "channel in its AIA colour map:", ""]
        lines += [f"![{w} Å]({folder}/contact_sheet_{int(w):04d}.png)" for w in reversed(channels)] + [""]
        lines += flare_tables(ev["flare"], split)[1:] + [""]
    lines += _pooled_rows(ev)
    f1 = ev["conditioning_f1"]
    if f1["classes"]:
        lines.append(f"| conditioning macro-F1 ({', '.join(f1['classes'])}), solar encoder | "
                     f"{fmt(f1[keys.GENERATED]['macro'])} | {fmt(f1[keys.REAL_SPLIT]['macro'])} (the encoder on real "
                     f"{split} frames) |")
    lowest = ev["model"]["classes"][0]
    lines += ["", f"What a flare does: the brightest 0.2% of on-disk pixels (model space; 0.01 is 1.3 levels of the "
                  f"8-bit scale), minus that of `{lowest}` images:", "",
              f"| class | generated | real {split} | real train |", "|---|---|---|---|"]
    for c, row in list(ev["peak_brightness"].items())[1:]:
        lines.append(f"| {c} | " + " | ".join(fmt(row.get(keys.minus_lowest(k), "too few images"))
                                              for k in (keys.GENERATED, keys.REAL_SPLIT, keys.REAL_TRAIN)) + " |")
    disk = ev.get("disk_geometry")
    if disk:
        lines += ["", "Where the Sun is: the limb found in each image as the builder finds it on real frames, "
                      "against the disk the FITS header states:", "",
                  "| images | limb found | median centre offset, px | median radius / header's |", "|---|---|---|---|"]
        for name, row in disk_rows(disk, split):
            if "centre_offset_px" in row:
                lines.append(f"| {name} | {fmt(row['found'])} | {fmt(row['centre_offset_px'])} | "
                             f"{fmt(row['radius_ratio'], 4)} |")
    exposure = ev["exposure_outliers"]["classes"]
    lines += ["", "Exposure outliers (image mean outside the range of 99% of real train frames): "
              + "; ".join(f"{c} {fmt(r[keys.GENERATED])}" for c, r in exposure.items()) + ".", ""]
    return lines


def _weights(experiment: dict) -> str:
    """The digest of the diffusion model's weights an experiment ran with (a bundled model is
    retrained under the same name).

    >>> _weights({"settings": {"model_weights": "5ed0be8dbd22"}}), _weights({"settings": {}})
    (', weights 5ed0be8dbd22', '')
    """
    digest = experiment["settings"].get("model_weights")
    return f", weights {digest}" if digest else ""


def _classifier_section(clf: dict, size: int, folder: str) -> list:
    counts = ", ".join(f"{g} {clf['scored_counts'][g]} frames ({clf['scored_flares'][g]} flares)"
                       for g in clf["group_names"])
    lines = [f"## Experiment 1 at {size} px: a flare-class classifier, four arms", "",
             f"`solar-diffusion experiment classifier --dataset {clf['settings']['dataset']}` (model "
             f"`{clf['settings']['model']}`{_weights(clf)}), {clf['settings']['seeds']} seeds per arm. Real training frames: "
             f"{clf['train_counts']}; synthetic frames added in the last arm: {clf['synthetic_counts']}. Scored on the "
             f"months the diffusion model never saw ({', '.join(clf['scored_months'])}): {counts}. Report: "
             f"[{folder}/report.md]({folder}/report.md).", ""]
    lines += comparison_tables(clf["comparison"], ["macro-F1"] + [f"F1 {g}" for g in clf["scored_groups"]])
    lines += [f"- {g}: {reason}" for g, reason in clf["not_scored"].items()]
    return lines + [""]


def _predictor_section(pred: dict, size: int, folder: str) -> list:
    lines = [f"## Experiment 2 at {size} px: a 24 h flare predictor, {ARM_COUNT_WORDS.get(len(_predictor_arms(pred)), 'its')} arms", "",
             f"`solar-diffusion experiment predictor --dataset {pred['settings']['dataset']}` (model "
             f"`{pred['settings']['model']}`{_weights(pred)}), {pred['settings']['seeds']} seeds per arm; {pred['scored_frames']} "
             f"frames scored, of the months the diffusion model never saw ({', '.join(pred['scored_months'])}). "
             f"Report: [{folder}/report.md]({folder}/report.md).", ""]
    for threshold, t in pred["thresholds"].items():
        if "comparison" not in t:
            lines += [f"Flare ≥ {threshold} within 24 h: not scored ({t['not_scored']}).", ""]
            continue
        pre_flare = (f"; {t['pre_flare_positives']} pre-flare synthetic positives (a forecast model's) in the "
                     "real + pre-flare synthetic arm") if "pre_flare_positives" in t else ""
        lines += [f"Flare ≥ {threshold} within 24 h: {t['scored_positives']} positive frames before "
                  f"{t['scored_flares']} flares, base rate {t['scored_base_rate']:.3f}; {t['synthetic_positives']} "
                  f"synthetic positives in the real + synthetic arm{pre_flare}. {decision_words(t['runs'])}", ""]
        if "references" in t:
            lines += ["Against the reference forecasts (climatology: the training base rate; persistence: yes where a "
                      "flare of the class began in the 24 h before the frame):", ""]
            lines += comparison_tables(t["references"], ["TSS", "HSS", "BSS"]) + ["", "The arms:", ""]
        lines += comparison_tables(t["comparison"], ["TSS", "HSS", "BSS"]) + [""]
    return lines


def decision_words(runs: dict) -> str:
    """How each arm's probabilities became yes/no forecasts (``decision_threshold`` of its runs;
    runs saved without one, before thresholds were chosen, used 0.5).

    >>> decision_words({"real": [{"decision_threshold": 0.2}, {"decision_threshold": 0.3}]})
    'A frame is forecast "yes" where p(yes) reaches the decision threshold with the best TSS on the inner split, chosen per run (median over seeds: real 0.25).'
    >>> decision_words({"real": [{}]})
    'A frame is forecast "yes" where p(yes) >= 0.5 (a run saved without decision thresholds).'
    """
    if not any("decision_threshold" in run for arm_runs in runs.values() for run in arm_runs):
        return 'A frame is forecast "yes" where p(yes) >= 0.5 (a run saved without decision thresholds).'
    medians = ", ".join(f"{arm} {statistics.median(run.get('decision_threshold', 0.5) for run in arm_runs):.3g}"
                        for arm, arm_runs in runs.items())
    return ('A frame is forecast "yes" where p(yes) reaches the decision threshold with the best TSS on the inner '
            f"split, chosen per run (median over seeds: {medians}).")


ARM_COUNT_WORDS = {4: "four", 5: "five"}


def _predictor_arms(pred: dict) -> list:
    """The arms of a predictor run (those of its first scored threshold)."""
    return next((list(t["comparison"]["arms"]) for t in pred["thresholds"].values() if "comparison" in t), [])


def comparison_tables(comparison: dict, figures: list[str]) -> list[str]:
    """Markdown of an experiment's comparison: the arms' figures, then the paired differences,
    with their intervals."""
    arms = list(comparison["arms"])
    lines = ["| figure | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for f in figures:
        cells = [comparison["arms"][a][f] for a in arms]
        lines.append(f"| {f} | " + " | ".join(f"{c['value']:.3f} [{c['low']:.3f}, {c['high']:.3f}]" for c in cells)
                     + " |")
    differences = list(comparison["differences"])
    lines += ["", "| paired difference | " + " | ".join(figures) + " |", "|---" * (len(figures) + 1) + "|"]
    for d in differences:
        cells = [comparison["differences"][d][f] for f in figures]
        lines.append(f"| {d} | " + " | ".join(f"{c['value']:+.3f} [{c['low']:.3f}, {c['high']:.3f}] "
                                                f"(±{c['detectable']:.3f})" for c in cells) + " |")
    lines += ["", f"95 % intervals: {comparison['resamples']} of {comparison['days']} days and "
                  f"{comparison['seeds']} seeds; in brackets after a difference, the smallest difference the design "
                  "detects (80 % power, 5 % two-sided)."]
    return lines


def _sampling_section(sampling: dict) -> list:
    lines = ["## Sampling speed", "", f"`{sampling['command']}` ({sampling['cpu_count']} CPU cores, torch "
             f"{sampling['torch']}); quality per sampler in [BENCHMARKS.md](../BENCHMARKS.md).", "",
             "| size | sampler | s / image, batch 1 | speed-up vs the paper's | s / image, batch 16 | speed-up |",
             "|---|---|---|---|---|---|"]
    for row in sampling["rows"]:
        if row["default"] or row["sampler"].startswith("(a)"):
            batch16 = row.get("seconds_per_image_batch16")
            lines.append(f"| {row['size']} | {row['sampler']}{' (default)' if row['default'] else ''} | "
                         f"{row['seconds_per_image_batch1']:.2f} | {row['speedup_vs_paper_batch1']:.0f}x | "
                         + (f"{batch16:.2f} | {row['speedup_vs_paper_batch16']:.0f}x |" if batch16 else "| |"))
    return lines + [""]


def _student_section(student: dict) -> list:
    """The distilled students against the paper's sampler and the teacher's defaults."""
    lines = ["## Distilled students: one UNet call per step", "",
             f"`{student['command']}` ({student['cpu_count']} CPU cores, torch {student['torch']}). The students:", ""]
    for name, d in student["students"].items():
        grid = (f", on its own {d['num_inference_steps']}-step grid, each step learnt from "
                f"{d['teacher_steps'] // d['num_inference_steps']} of its teacher's") if d.get("teacher_steps") else ""
        lines.append(f"- {name}: {d['method']}, guidance {d['guidance_scale']:g} built in{grid}; {d['steps']} "
                     f"distillation steps of batch {d['train_batch_size']} from `{d['teacher']}`.")
    lines.append("")
    if student.get("speed"):
        lines += ["| sampler | s / image, batch 1 | vs the paper's | vs the defaults | s / image, batch 16 | vs the "
                  "paper's | vs the defaults |", "|---|---|---|---|---|---|---|"]
        for row in student["speed"]:
            cells = [f"{row['seconds_per_image_batch1']:.3f}"]
            if "speedup_vs_paper_batch1" in row:
                cells += [f"{row['speedup_vs_paper_batch1']:.0f}x", f"{row['speedup_vs_defaults_batch1']:.2f}x",
                          f"{row['seconds_per_image_batch16']:.3f}", f"{row['speedup_vs_paper_batch16']:.0f}x",
                          f"{row['speedup_vs_defaults_batch16']:.2f}x"]
            else:
                cells += ["1x", "", "", "", ""]
            lines.append(f"| {row['row']} | " + " | ".join(cells) + " |")
        lines.append("")
    if student.get("startup"):
        start = student["startup"]
        lines += ["Start-up (fresh processes, best of the repeats): `python -c \"import torch, diffusers\"` "
                  f"{start['import torch, diffusers']:.2f} s (the same imports with the garbage collector paused "
                  f"and their objects frozen, as the command line imports: "
                  f"{start['import torch, diffusers, collector paused']:.2f} s); `solar-diffusion generate` of one image: "
                  + "; ".join(f"{name.split(': ')[1]} {value:.2f} s ({start['above the imports: ' + name.split(': ')[1]]:+.2f}"
                              " s above the imports)" for name, value in start.items()
                              if name.startswith("generate one image")) + ".", ""]
    q = student.get("quality")
    if q:
        lines += [f"Quality against the teacher's defaults ((b), the same seeds and flare positions), "
                  f"{q['generated_per_class']} images per class ({', '.join(q['classes'])}); Fréchet distance to "
                  f"{q['real_per_class']} real test frames per class of {', '.join(q['judged'])}; paired differences "
                  f"with {q['level']:.0%} intervals; equivalent = the interval inside ±{q['margin_fraction']:.0%} of "
                  "the real-vs-real floor (FD) or of the teacher's flare contrast (signature).", "",
                  "| measure | margin | " + " | ".join(_quality_rows(q)) + " |",
                  "|---|---|" + "---|" * len(_quality_rows(q))]
        for space, block in q["feature_spaces"].items():
            lines.append(f"| FD, {space} (teacher {block['teacher_fd']:.1f}, floor {block['floor_fd']:.1f}) | "
                         f"±{block['margin']:.2f} | " + " | ".join(_difference(block["rows"].get(name))
                                                         for name in _quality_rows(q)) + " |")
        for wavelength, block in q.get("flare_signature", {}).items():
            lines.append(f"| flare signature {wavelength} Å (teacher {block['teacher_signature']:.3f}) | "
                         f"±{block['margin']:.3f} | " + " | ".join(_difference(block["rows"].get(name), 3)
                                                          for name in _quality_rows(q)) + " |")
        lines.append("")
    return lines


def _quality_rows(q: dict) -> list:
    first = next(iter(q["feature_spaces"].values()))
    return list(first["rows"])


def _difference(row, digits: int = 2) -> str:
    if not row:
        return ""
    d = row["paired_difference"]
    verdict = "equivalent" if row["equivalent"] else "not shown equivalent"
    return f"{d['value']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}] {verdict}"


def _with_summary(text: str, block: str, path: Path) -> str:
    if SUMMARY_START not in text or SUMMARY_END not in text:
        raise ValueError(f"{path} has no {SUMMARY_START} ... {SUMMARY_END} markers for the results summary")
    return text[:text.index(SUMMARY_START) + len(SUMMARY_START)] + "\n" + block + "\n" + text[text.index(SUMMARY_END):]


def made_files(root: Path = ROOT) -> dict[Path, str]:
    """Each file this module writes, with the text the reports make of it."""
    results = load_reports(root / "reports")
    card = _with_summary((root / "model_card.md").read_text(), summary(results), root / "model_card.md")
    return {root / "reports" / "README.md": results_page(results),
            root / "README.md": _with_summary((root / "README.md").read_text(), readme_summary(results),
                                              root / "README.md"),
            root / "model_card.md": card,
            root / "solar_diffusion" / "models" / "default" / "README.md": card}


def check(root: Path = ROOT) -> list[Path]:
    """The files that differ from what the reports make (empty when all are up to date)."""
    return [path for path, text in made_files(root).items() if not path.exists() or path.read_text() != text]


def main(root: Path = ROOT) -> int:
    for path, text in made_files(root).items():
        atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text))
        print(f"wrote {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
