"""The results page, README summary and model cards are made from reports/, never typed in."""

import json
import re
import shutil
from pathlib import Path

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

