"""The dataset card (``README.md`` with ``configs``) of a built dataset."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from solar_diffusion.splits import split_sizes

CREDITS = (
    "Images: NASA/SDO and the AIA science team. X-ray flux and flare classes: NOAA GOES XRS "
    "(NCEI, SWPC). Flare events: the Heliophysics Event Knowledgebase (HEK). The pixels and "
    "fluxes are US-government open data."
)


#: Every column of a build: (name, type, unit, meaning). ``{unit}`` is the build's image unit.
COLUMNS = (
    ("image", "uint8 or float32 array (channels, size, size)", "{unit}",
     "the frame, channels first in the order of `channel`, FITS row order (row 0 is the south edge, "
     "x grows westward), disk-centred; `browse` is the display-scaled 8-bit brightness of the SDO browse "
     "images (not calibrated), DN/s is calibrated level-1 data divided by the exposure time"),
    ("flare_class", "ClassLabel", "-", "the label: the GOES letter (SWPC scale) of the strongest flare in progress, "
     "else of the GOES 1-8 A background flux, else `quiet` (see Label rule)"),
    ("flare_log10_peak_flux_goes_r", "float32", "log10(W m^-2)",
     "log10 of the peak 1-8 A flux of the flare that sets the label, on the GOES-R (unscaled) scale, i.e. "
     "SWPC-scale class flux / 0.7; NaN where no flare is in progress"),
    ("goes_flux_at_obs", "float32", "W m^-2 (linear)",
     "GOES 1-8 A flux at `t_obs`, GOES-R (unscaled) scale; NaN where no XRS flux lies within 5 min of `t_obs` "
     "(or none was given)"),
    ("t_obs", "string, ISO 8601", "UTC", "observation time of the frame (of its first channel)"),
    ("label_source", "string", "-", "`flare`, `xrs background` or `none`: what set `flare_class`"),
    ("flare_goes_class", "string", "-", "the published GOES class of the flare that sets the label, e.g. `X5.4`"),
    ("flare_hpc_x", "float32", "arcsec", "its helioprojective x (west positive) as the flare list gives it"),
    ("flare_hpc_y", "float32", "arcsec", "its helioprojective y (north positive)"),
    ("flares", "struct of lists", "-", "every flare in progress at `t_obs` (within the flare window), strongest "
     "first, so the first is the one that sets the label; one list per field below, one entry per flare, "
     "empty lists where none is in progress"),
    ("flares.goes_class", "list of string", "-", "GOES class as the list publishes it (HEK and SWPC: SWPC scale)"),
    ("flares.log10_peak_flux_goes_r", "list of float32", "log10(W m^-2)",
     "log10 of the peak 1-8 A flux, GOES-R (unscaled) scale"),
    ("flares.start", "list of string, ISO 8601", "UTC", "flare start"),
    ("flares.peak", "list of string, ISO 8601", "UTC", "time of the 1-8 A peak"),
    ("flares.end", "list of string, ISO 8601", "UTC", "flare end"),
    ("flares.hpc_x", "list of float32", "arcsec",
     "helioprojective x as the list gives it (HEK: AIA_XCEN, seen from Earth); NaN where the list has none"),
    ("flares.hpc_y", "list of float32", "arcsec", "helioprojective y (HEK: AIA_YCEN); NaN where the list has none"),
    ("flares.hgs_lat", "list of float32", "deg",
     "Stonyhurst heliographic latitude at `t_obs` (sunpy, observer Earth); NaN off the disk or without a position"),
    ("flares.hgs_lon", "list of float32", "deg", "Stonyhurst longitude at `t_obs`, -180 to 180 (west positive); "
     "NaN off the disk or without a position"),
    ("flares.x_px", "list of float32", "px",
     "the position's column in `image` (0-based, pixel centres at integers, x grows westward); NaN without a "
     "position; plate scale from the solar radius at `t_obs`"),
    ("flares.y_px", "list of float32", "px",
     "the position's row in `image` (FITS row order: row 0 is south, y grows northward); NaN without a position"),
    ("flares.on_disk", "list of bool", "-", "whether the position is usable: known and on the visible disk "
     "(within 1 R_sun at `t_obs`); false for a missing position or one beyond the limb"),
    ("flares.event_source", "list of string", "-", "the flare list the flare comes from (`hek`, `swpc`, ...)"),
    ("source", "string", "-", "the image file the frame was made from"),
    ("channel", "string", "Angstrom", "the AIA channels of `image`'s planes, comma separated, e.g. `171,131,94`"),
    ("unit", "string", "-", "the unit of `image`: `browse` (8-bit brightness) or `DN/s`"),
    ("image_size", "int32", "px", "width and height of `image`"),
    ("fov_rsun", "float32", "R_sun", "width of the field of view in solar radii"),
    ("rsun_px", "float32", "px", "the solar radius in `image`"),
)


def columns_markdown(unit: str) -> str:
    """A markdown table of every column of a build with its type and unit."""
    lines = ["| column | type | unit | meaning |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {kind} | {unit_.format(unit=unit)} | {meaning} |" for name, kind, unit_, meaning
              in COLUMNS]
    return "\n".join(lines)


def positions_markdown(positions: dict) -> str:
    """Words for ``flare_positions`` of the build record."""
    if not positions:
        return "This build has no record of flare positions."
    unusable = positions["flares_off_disk"] + positions["flares_without_position"]
    return (
        f"{positions['flares']} distinct flares are in progress at the frames ({positions['frame_entries']} "
        f"frame-flare entries; {positions['frames_with_flares']} frames have at least one flare, "
        f"{positions['frames_with_several_flares']} several). {positions['flares_on_disk']} have a position on the "
        f"visible disk. **{unusable} have no usable position**: {positions['flares_without_position']} have none in "
        f"the flare lists ({positions['frame_entries_without_position']} entries) and {positions['flares_off_disk']} "
        f"lie off the disk, beyond 1 R_sun at the frame's time ({positions['frame_entries_off_disk']} entries). They "
        "are listed all the same, with `on_disk` false and no Stonyhurst position; a model conditioned on position "
        "should use only entries with `on_disk` true."
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


#: The terms of use of SDO data (NASA; open, with credit), linked from every dataset card.
SDO_DATA_RULES = "https://sdo.gsfc.nasa.gov/data/rules.php"


def size_category(n: int) -> str:
    """The Hub's size category of a dataset of ``n`` rows.

    >>> size_category(4410), size_category(999), size_category(2_000_000)
    ('1K<n<10K', 'n<1K', '1M<n<10M')
    """
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]
    return next((name for limit, name in bounds if n < limit), "n>100M")


def write_dataset_card(out: Path, info: dict, counts: pd.DataFrame) -> Path:
    """Write ``README.md``: YAML ``configs`` (so ``load_dataset(out)`` works), provenance, label
    rule, label counts per split, clipped fractions, rejected files and credits."""
    from huggingface_hub import DatasetCard, DatasetCardData

    config = info["config"]
    name = config["config_name"]
    splits = list(counts.columns)
    data = DatasetCardData(
        # the datasets cache keys a local folder by its card: each build's own sizes keep two builds
        # in folders of the same name from being served each other's rows by load_dataset(folder)
        dataset_info=split_sizes(out, name, {s: int(counts[s].sum()) for s in counts.columns}),
        pretty_name=f"SDO/AIA {','.join(config['channels'])} A full-disk images with GOES flare labels",
        license="other",
        license_name="us-government-open-data",
        license_link=SDO_DATA_RULES,
        size_categories=[size_category(int(counts.to_numpy().sum()))],
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

## Columns

Schema version {info.get('schema_version', 1)} (`schema_version` in build_info.json).

{columns_markdown(info['unit'])}

## Flares and their positions

{positions_markdown(info.get('flare_positions'))}

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
