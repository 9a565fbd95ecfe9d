"""The dataset card (``README.md`` with ``configs``) of a built dataset."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

CREDITS = (
    "Images: NASA/SDO and the AIA science team. X-ray flux and flare classes: NOAA GOES XRS "
    "(NCEI, SWPC). Flare events: the Heliophysics Event Knowledgebase (HEK). The pixels and "
    "fluxes are US-government open data."
)


def counts_markdown(counts: pd.DataFrame) -> str:
    """A markdown table of frames per label and split, with totals."""
    table = counts.copy()
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    header = "| label | " + " | ".join(table.columns) + " |"
    lines = [header, "|" + "---|" * (len(table.columns) + 1)]
    lines += ["| " + str(label) + " | " + " | ".join(str(int(v)) for v in row) + " |" for label, row in table.iterrows()]
    return "\n".join(lines)


def write_dataset_card(out: Path, info: dict, counts: pd.DataFrame) -> Path:
    """Write ``README.md``: YAML ``configs`` (so ``load_dataset(out)`` works), provenance, label
    rule, label counts per split, clipped fractions, rejected files and credits."""
    from huggingface_hub import DatasetCard, DatasetCardData

    config = info["config"]
    name = config["config_name"]
    splits = list(counts.columns)
    data = DatasetCardData(
        pretty_name=f"SDO/AIA {','.join(config['channels'])} A full-disk images with GOES flare labels",
        license="other",
        license_name="us-government-open-data",
        task_categories=["unconditional-image-generation", "image-classification"],
        tags=["solar-physics", "sdo-aia", "goes", "solar-flares"],
        configs=[{
            "config_name": name,
            "default": True,
            "data_files": [{"split": s, "path": f"{name}/{s}-*.parquet"} for s in splits],
        }],
    )
    clipped = "\n".join(f"| {label} | {fraction:.2e} |" for label, fraction in info["clipped_fraction"].items())
    rejected = "\n".join(f"- {r['reason']}" for r in info["rejected"][:50])
    more = f"\n- ... and {len(info['rejected']) - 50} more (see build_info.json)" if len(info["rejected"]) > 50 else ""
    body = f"""---
{data.to_yaml()}
---

# {data.pretty_name}

Built by `solar-diffusion build-dataset` (solar-diffusion). Images are stored in the data's unit
(`{info['unit']}`), channels first, {config['size']} x {config['size']} px, FITS row order (row 0
is the south edge), a disk-centred field of view {config['fov_rsun']} solar radii wide (median
disk radius {info['rsun_px_median']:.2f} px). A model's normalisation is applied at training time,
so one dataset serves many models.

## Label rule

{info['label_rule']} Flare window: {config['window_minutes']} min.

## Label counts

Splits are month blocks (`{config['splits']}`); the last 24 h of each block are dropped so
blocks are at least 24 h apart. {info['unassigned_frames']} frames fell outside every block.

{counts_markdown(counts)}

## Clipped pixels

Mean fraction of pixels per frame at or above the top of the default normalisation
(3500 DN/s for DN/s data; 255 for 8-bit browse data), per label:

| label | fraction |
|---|---|
{clipped}

## Provenance

{_provenance(info)}

## Rejected files ({len(info['rejected'])})

{rejected or '- none'}{more}

## Credits

{CREDITS}
"""
    card = DatasetCard(body)
    path = Path(out) / "README.md"
    card.save(path)
    return path


def _provenance(info: dict) -> str:
    lines = [f"- {key}: {value}" for key, value in (info.get("provenance") or {}).items()]
    lines.append(f"- settings: {info['config']}")
    return "\n".join(lines)
