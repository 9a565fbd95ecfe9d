"""An evaluation in a Hub model card: ``model-index`` results and the report as a section."""

from __future__ import annotations

from pathlib import Path

from solar_diffusion import evaluation_keys as keys
from solar_diffusion.files import atomic_write
from solar_diffusion.splits import hub_dataset_id

CARD_START, CARD_END = "<!-- evaluation:start -->", "<!-- evaluation:end -->"


def update_model_card(path, report: dict, markdown: str, config):
    """Put the evaluation in a model card: ``model-index`` results (huggingface_hub ``EvalResult``:
    pooled FD, KID, precision and recall per feature space, and the conditioning macro-F1) in its
    metadata, and the report between the evaluation markers (appended the first time, replaced
    after). ``config`` is the run's ``EvaluationConfig`` (its dataset and split)."""
    from huggingface_hub import ModelCard

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model card {path} does not exist")
    card = ModelCard.load(path)
    card.data.eval_results = eval_results(report, hub_dataset_id(config.dataset) or Path(config.dataset).name,
                                          config.split) or None
    card.data.model_name = card.data.model_name or "solar-diffusion"
    card.text = _with_section(card.text, f"{CARD_START}\n## Evaluation\n\n{markdown}\n{CARD_END}")
    atomic_write(path, lambda tmp: Path(tmp).write_text(str(card)))


def eval_results(report: dict, dataset: str, split: str) -> list:
    """The headline figures of ``metrics.json`` as ``EvalResult`` rows."""
    from huggingface_hub import EvalResult

    def result(metric_type, metric_name, value):
        return EvalResult(task_type="unconditional-image-generation", dataset_type=dataset, dataset_name=dataset,
                          dataset_split=split, metric_type=metric_type, metric_name=metric_name, metric_value=value)

    results = []
    for space, values in report["feature_spaces"].items():
        pooled, words = values.get("pooled"), keys.label(space)
        if pooled:
            for key, label in (("frechet", f"Fréchet distance ({words})"), ("kid", f"KID ({words})"),
                               ("precision", f"precision ({words})"), ("recall", f"recall ({words})")):
                results.append(result(key, label, round(pooled[key]["value"], 5)))
    f1 = report["conditioning_f1"]
    if f1["classes"]:
        macro = round(f1[keys.GENERATED]["macro"]["value"], 4)
        results.append(result("f1", "conditioning macro-F1 (solar encoder)", macro))
    return results


def _with_section(text: str, section: str) -> str:
    """``text`` with ``section`` in place of the one between the markers, or appended.

    >>> _with_section("intro", "<!-- evaluation:start -->A<!-- evaluation:end -->")
    'intro\\n\\n<!-- evaluation:start -->A<!-- evaluation:end -->\\n'
    >>> _with_section(_with_section("intro", CARD_START + "A" + CARD_END), CARD_START + "B" + CARD_END).count("B")
    1
    """
    if CARD_START in text and CARD_END in text:
        return text[:text.index(CARD_START)] + section + text[text.index(CARD_END) + len(CARD_END):]
    return text.rstrip() + "\n\n" + section + "\n"
