"""The results page, README summary and model cards are made from reports/, never typed in."""

import json
import re
import shutil
from pathlib import Path

import pytest

from solar_diffusion import evaluation_keys as keys
from solar_diffusion import results

ROOT = Path(__file__).resolve().parents[1]


def test_committed_results_files_are_what_the_reports_make():
    stale = results.check(ROOT)
    assert not stale, f"run `make results` (python -m solar_diffusion.results): {[str(p) for p in stale]} differ"


def test_readme_summary_is_five_headlines_linking_the_results_page():
    text = (ROOT / "README.md").read_text()
    block = text[text.index(results.SUMMARY_START):text.index(results.SUMMARY_END)]
    assert len([line for line in block.splitlines() if line.startswith("- ")]) == 5, block
    links = re.findall(r"\]\(([^)#]+)[^)]*\)", block)
    assert "reports/README.md" in links and all((ROOT / link).exists() for link in links), links


def test_a_changed_measurement_changes_every_file_that_shows_it(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "reports", root / "reports")
    for name in ("README.md", "model_card.md"):
        shutil.copy(ROOT / name, root / name)
    (root / "solar_diffusion" / "models" / "default").mkdir(parents=True)
    metrics = json.loads((root / "reports" / "evaluation" / "metrics.json").read_text())
    pooled = metrics["feature_spaces"][keys.SOLAR_ENCODER]["pooled"]["frechet"]
    pooled |= {"value": 123.456, "low": 120.0, "high": 130.0}
    (root / "reports" / "evaluation" / "metrics.json").write_text(json.dumps(metrics))
    assert results.main(root) == 0
    for name in ("README.md", "model_card.md", "reports/README.md", "solar_diffusion/models/default/README.md"):
        assert "123" in (root / name).read_text(), name
    assert results.check(root) == []
    assert (root / "model_card.md").read_text() == (root / "solar_diffusion/models/default/README.md").read_text()


def _intervals(node, where=""):
    if isinstance(node, dict):
        if {"value", "low", "high"} <= set(node):
            yield where, node
        for key, child in node.items():
            yield from _intervals(child, f"{where}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _intervals(child, f"{where}/{i}")


def test_every_reported_interval_contains_its_estimate():
    checked, outside = 0, []
    for path in sorted((ROOT / "reports").rglob("*.json")):
        for where, r in _intervals(json.loads(path.read_text())):
            if r["value"] is None or r["low"] is None or r["low"] != r["low"]:  # no images / NaN: nothing claimed
                continue
            checked += 1
            if not r["low"] - 1e-12 <= r["value"] <= r["high"] + 1e-12:
                outside.append(f"{path.relative_to(ROOT)}{where}: {r['value']} [{r['low']}, {r['high']}]")
    assert checked > 100 and not outside, outside[:10]


def _keys(node, where=""):
    if isinstance(node, dict):
        for key, child in node.items():
            yield f"{where}/{key}", key
            yield from _keys(child, f"{where}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _keys(child, f"{where}/{i}")


def test_evaluation_reports_are_keyed_by_identifiers():
    """The committed ``metrics.json`` files name their sets and comparisons with ``evaluation_keys``'
    identifiers, not sentences; the pages make the words."""
    for path in sorted((ROOT / "reports").glob("evaluation*/metrics.json")):
        metrics = json.loads(path.read_text())
        sentences = [where for where, key in _keys(metrics) if " " in key]
        assert not sentences, f"{path.relative_to(ROOT)}: {sentences[:5]}"
        assert keys.REAL_SPLIT in metrics["sample_sizes"] and keys.SOLAR_ENCODER in metrics["feature_spaces"]



def _experiment_run(reports: Path, folder: str, size: int | None):
    """A committed classifier run copied to ``reports/experiments/<folder>`` as a run at ``size`` px."""
    result = json.loads((ROOT / "reports" / "experiments" / "classifier" / "results.json").read_text())
    result["settings"].pop("image_size", None)
    if size is not None:
        result["settings"]["image_size"] = size
    (reports / "experiments" / folder).mkdir(parents=True)
    (reports / "experiments" / folder / "results.json").write_text(json.dumps(result))


def test_experiments_are_shown_side_by_side_by_the_image_size_they_ran_at(tmp_path):
    reports = tmp_path / "reports"
    _experiment_run(reports, "classifier-256", 256)
    _experiment_run(reports, "classifier", 64)
    entries = results.experiments_by_size(reports)
    assert [(e["size"], e["folders"], e["predictor"]) for e in entries] == [
        (64, {"classifier": "experiments/classifier"}, None), (256, {"classifier": "experiments/classifier-256"}, None)]
    page = results.results_page(results.load_reports(reports))
    assert page.index("## Experiment 1 at 64 px") < page.index("## Experiment 1 at 256 px")
    assert "(experiments/classifier-256/report.md)" in page
    headline = results._question_headline(entries)
    assert "At 64 px: flare-class classifier" in headline and ". At 256 px: flare-class classifier" in headline

    _experiment_run(reports, "classifier-again", 256)
    with pytest.raises(ValueError, match="a second classifier run at 256 px .*experiments/classifier-256"):
        results.experiments_by_size(reports)
    shutil.rmtree(reports / "experiments" / "classifier-again")
    _experiment_run(reports, "classifier-old", None)
    with pytest.raises(ValueError, match="classifier-old/results.json: no settings.image_size"):
        results.experiments_by_size(reports)
