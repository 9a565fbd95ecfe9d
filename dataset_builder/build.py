"""Build a labelled Hugging Face dataset (Parquet shards + dataset card) from AIA images.

The build is planned first (index the images, label every frame, assign time splits, cut
shards), then each shard is read, preprocessed and written atomically (a temporary file, then a
rename). A finished shard is never redone, so a killed build resumes where it stopped and ends
with the same dataset. Files that cannot be used are reported per file and skipped.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from solar_diffusion.files import atomic_write, fault_point
from solar_diffusion.pipelines import LABEL_ORDER
from solar_diffusion.presets import label_vocabulary
from solar_diffusion.times import iso_utc, utc_times
from solar_diffusion.dataset_builder.images import (
    BROWSE_SUFFIXES,
    DEFAULT_COMPOSITE_CHANNELS,
    DEFAULT_FOV_RSUN,
    FITS_SUFFIXES,
    JP2_SUFFIXES,
    FrameRejected,
    crop_and_resize,
    read_frame,
    time_from_name,
)
from solar_diffusion.dataset_builder.flares import read_known_gaps
from solar_diffusion.dataset_builder.labels import (FLARE_FIELDS, FORECAST_RULE, LABEL_RULE, flares_in_progress,
                                                   frame_flares, label_coverage, label_frames)

#: Default time splits: months of every year (July is left out as a guard block).
DEFAULT_SPLITS = "train=1-6,validation=8-9,test=10-12"
#: Frames this close to the end of a split block are dropped, so blocks are >= 24 h apart.
SPLIT_GAP = pd.Timedelta("24h")
FLAG_COLUMNS = ("smeared", "bad", "flagged", "reject")
BUILD_INFO = "build_info.json"
#: The version of the dataset's columns, recorded as ``schema_version`` in ``build_info.json``
#: (builds without it are version 1). 2: every flare in progress per frame (``flares``), the
#: label flare's log10 peak flux under its own name (``flare_log10_peak_flux_goes_r``), flare
#: positions counted in ``flare_positions``. 3: times (``t_obs``, ``flares.start/peak/end``) are
#: ISO 8601 UTC strings, which ``with_format("torch")`` passes through (Arrow timestamps make it
#: raise). 4: no ``peak_flux`` column (schema 2 and 3 kept it as an alias of the log10 flux).
SCHEMA_VERSION = 4


@dataclass
class BuildConfig:
    """Settings of one dataset build (also written to ``build_info.json``)."""

    out: str
    size: int = 128
    channels: tuple = ("171",)
    window_minutes: float = 0.0
    splits: str = DEFAULT_SPLITS
    fov_rsun: float = DEFAULT_FOV_RSUN
    limb_mask: float | None = None
    shard_size: int = 256
    config_name: str = "default"
    composite_channels: tuple = DEFAULT_COMPOSITE_CHANNELS
    register: bool = False
    pointing_table: str | None = None
    correction_table: str | None = None
    flare_list_gaps: tuple = ()  # files of windows the flare lists are known to miss (read_known_gaps)
    max_quiet_days: float = 14.0  # longer stretches without a flare in progress are reported
    forecast_hours: float | None = None  # labels: the flares peaking within these hours after a frame (FORECAST_RULE)

    def __post_init__(self):
        """Refuse settings that would write an empty, unloadable or wrong dataset, before any work."""
        checks = [("--size", self.size, isinstance(self.size, int) and 8 <= self.size <= 8192, "an integer of 8 to 8192 px"),
                  ("--shard-size", self.shard_size, isinstance(self.shard_size, int) and self.shard_size >= 1,
                   "an integer of at least 1"),
                  ("--fov-rsun", self.fov_rsun, math.isfinite(self.fov_rsun) and self.fov_rsun > 2.0,
                   "more than 2 solar radii (the whole disk)"),
                  ("--window", self.window_minutes, math.isfinite(self.window_minutes) and self.window_minutes >= 0,
                   "a finite number of minutes, 0 or more"),
                  ("--max-quiet-days", self.max_quiet_days, self.max_quiet_days > 0, "a positive number of days"),
                  ("--channels", self.channels, len(self.channels) > 0, "at least one AIA channel")]
        if self.forecast_hours is not None:
            checks.append(("--forecast-hours", self.forecast_hours,
                           math.isfinite(self.forecast_hours) and self.forecast_hours > 0, "a positive number of hours"))
        if self.limb_mask is not None:
            checks.append(("--limb-mask", self.limb_mask, math.isfinite(self.limb_mask) and self.limb_mask >= 1.0,
                           "at least 1 solar radius"))
        for flag, value, ok, what in checks:
            if not ok:
                raise ValueError(f"{flag} must be {what}, got {value!r}")
        unknown = [c for c in self.channels if str(c).lstrip("0") not in AIA_CHANNELS]
        if unknown:
            raise ValueError(f"--channels {','.join(map(str, unknown))}: not AIA channels (AIA has "
                             f"{', '.join(AIA_CHANNELS)} Å)")


#: AIA's channels, in Å.
AIA_CHANNELS = ("94", "131", "171", "193", "211", "304", "335", "1600", "1700", "4500")


@dataclass
class BuildResult:
    out: Path
    counts: pd.DataFrame
    rejected: list = field(default_factory=list)
    unassigned: int = 0
    frame_notes: list = field(default_factory=list)
    label_coverage: dict = field(default_factory=dict)
    flare_positions: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------
# planning
# ------------------------------------------------------------------------------------------


def index_images(images, channels=("171",)) -> pd.DataFrame:
    """Table of image files with ``file``, ``t_obs`` and ``flag`` (a reason to reject, or None).

    ``images`` is a folder (searched recursively; times from the file names, or from the FITS
    header) or an index CSV with a ``file`` column and a time column (``t_obs``, ``t_obs_utc``,
    or the channel's own such as ``t_aia171_utc``); boolean columns named smeared/bad/flagged
    mark frames to reject.
    """
    images = Path(images)
    if images.is_file() and images.suffix.lower() == ".csv":
        return _index_csv(images, channels)
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: not a folder of images nor an index CSV")
    suffixes = FITS_SUFFIXES + JP2_SUFFIXES + BROWSE_SUFFIXES
    files = sorted(p for p in images.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))
    rows = []
    for path in files:
        try:
            t_obs, flag = _time_of(path), None
        except FrameRejected as err:
            t_obs, flag = pd.NaT, str(err)
        rows.append({"file": str(path), "t_obs": t_obs, "flag": flag})
    return pd.DataFrame(rows, columns=["file", "t_obs", "flag"])


def _time_of(path: Path) -> pd.Timestamp:
    try:
        return time_from_name(path)
    except FrameRejected:
        if path.name.lower().endswith(FITS_SUFFIXES):
            from astropy.io import fits

            try:
                header = fits.getheader(path, ext=1 if path.name.lower().endswith(".fz") else 0)
                return pd.Timestamp(header.get("T_OBS", header.get("DATE-OBS")).rstrip("Z"))
            except Exception as err:
                raise FrameRejected(f"{path}: no observation time in name or header ({err})") from None
        raise


def _index_csv(csv_path: Path, channels) -> pd.DataFrame:
    table = pd.read_csv(csv_path)
    if "file" not in table.columns:
        raise ValueError(f"{csv_path}: an index CSV needs a 'file' column; it has {list(table.columns)}")
    candidates = [f"t_aia{str(channels[0]).zfill(3)}_utc", f"t_aia{channels[0]}_utc", "t_obs", "t_obs_utc"]
    time_column = next((c for c in candidates if c in table.columns), None)
    if time_column is None:
        raise ValueError(f"{csv_path}: no time column (looked for {candidates})")
    flags = [c for c in table.columns if c.lower() in FLAG_COLUMNS]
    out = pd.DataFrame({
        "file": [str((csv_path.parent / f).resolve()) for f in table["file"]],
        "t_obs": utc_times(table[time_column]).to_numpy(),
        "flag": None,
    })
    for column in flags:
        marked = table[column].astype(str).str.lower().isin(["true", "1", "yes"])
        out.loc[marked, "flag"] = [f"{f}: flagged '{column}' in {csv_path.name}" for f in out.loc[marked, "file"]]
    bad_time = out["t_obs"].isna() & out["flag"].isna()
    out.loc[bad_time, "flag"] = [f"{f}: unreadable time in column {time_column}" for f in out.loc[bad_time, "file"]]
    return out


def parse_splits(spec: str) -> list[tuple[str, str, str]]:
    """Parse a split spec into ``(split, first, last)`` month blocks.

    Either months of every year (``"train=1-6,validation=8-9,test=10-12"``) or absolute
    months (``"train=2012-01:2012-06,test=2012-10:2012-12"``).

    >>> parse_splits("train=1-6,test=10-12")
    [('train', '1', '6'), ('test', '10', '12')]
    """
    blocks = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\w+)\s*=\s*(\d{4}-\d{2}|\d{1,2})\s*[-:]\s*(\d{4}-\d{2}|\d{1,2})\s*", part) or \
            re.fullmatch(r"\s*(\w+)\s*=\s*(\d{4}-\d{2}|\d{1,2})()\s*", part)
        if match is None:
            raise ValueError(f"cannot parse split {part!r}: expected e.g. train=1-6 or train=2012-01:2012-06")
        name, first, last = match.groups()
        blocks.append((name, first, last or first))
    return blocks


def assign_splits(times: pd.Series, spec: str = DEFAULT_SPLITS, gap=SPLIT_GAP) -> pd.Series:
    """The split of each time (None outside every block or within ``gap`` of a block's end)."""
    times = pd.to_datetime(times)
    result = pd.Series([None] * len(times), index=times.index, dtype=object)
    for name, first, last in parse_splits(spec):
        if "-" in first:  # absolute months
            start = pd.Timestamp(first + "-01")
            end = pd.Timestamp(last + "-01") + pd.offsets.MonthBegin(1)
            inside = (times >= start) & (times < end - gap)
        else:
            months = times.dt.month
            m0, m1 = int(first), int(last)
            end = (times.dt.to_period("M").dt.to_timestamp() + pd.offsets.MonthBegin(1)).where(months == m1)
            inside = (months >= m0) & (months <= m1) & ~(times >= end - gap)
        result[inside & result.isna()] = name
    return result


def plan_build(index: pd.DataFrame, events: pd.DataFrame, xrs=None, config: BuildConfig = None):
    """Label and split every indexed frame; return ``(plan, rejected, unassigned_count)``."""
    rejected = [{"file": f, "reason": r} for f, r in zip(index["file"], index["flag"]) if r]
    usable = index[index["flag"].isna()].sort_values("t_obs", kind="stable").reset_index(drop=True)
    keep, duplicates = duplicate_frames(usable)
    rejected += duplicates
    usable = usable[keep].reset_index(drop=True)
    window = pd.Timedelta(minutes=config.window_minutes)
    if config.forecast_hours:  # a forecast model learns the Sun before a flare, not during one (FORECAST_RULE)
        flaring = np.zeros(len(usable), bool)
        flaring[flares_in_progress(usable["t_obs"], events, window)["frame"].to_numpy(dtype=int)] = True
        rejected += [{"file": f, "reason": f"{f}: a flare in progress (forecast labels keep frames before flares only)"}
                     for f in usable.loc[flaring, "file"]]
        usable = usable[~flaring].reset_index(drop=True)
    labels = label_frames(usable["t_obs"], events, xrs, window=window, forecast_hours=config.forecast_hours)
    plan = pd.concat([usable[["file", "t_obs"]], labels], axis=1)
    plan["split"] = assign_splits(plan["t_obs"], config.splits).to_numpy()
    unassigned = int(plan["split"].isna().sum())
    plan = plan[plan["split"].notna()].reset_index(drop=True)
    plan["flares"] = frame_flares(plan["t_obs"], events, window, config.size, config.fov_rsun, config.forecast_hours)
    return plan, rejected, unassigned


def duplicate_frames(index: pd.DataFrame) -> tuple[np.ndarray, list[dict]]:
    """Which rows to keep (the first of each file and of each observation time: a frame goes into a
    dataset once), and a rejection record for each row left out.

    >>> index = pd.DataFrame({"file": ["a.jpg", "a.jpg", "b.jpg", "c.jpg"],
    ...                       "t_obs": pd.to_datetime(["2012-01-01 00:00", "2012-01-01 00:00", "2012-01-01 01:00",
    ...                                                "2012-01-01 01:00"])})
    >>> keep, records = duplicate_frames(index)
    >>> keep.tolist(), [r["reason"] for r in records]
    ([True, False, True, False], ['a.jpg: duplicate index row (file listed before)', 'c.jpg: duplicate frame (same observation time as b.jpg)'])
    """
    keep, records, first_at = np.ones(len(index), bool), [], {}
    seen_files = set()
    for k, (file, t_obs) in enumerate(zip(index["file"], index["t_obs"])):
        if file in seen_files:
            keep[k] = False
            records.append({"file": file, "reason": f"{file}: duplicate index row (file listed before)"})
        elif t_obs in first_at:
            keep[k] = False
            records.append({"file": file, "reason": f"{file}: duplicate frame (same observation time as "
                                                    f"{first_at[t_obs]})"})
        else:
            first_at[t_obs] = file
        seen_files.add(file)
    return keep, records


def shard_plan(plan: pd.DataFrame, shard_size: int) -> list[tuple[str, int, int, pd.DataFrame]]:
    """Cut each split into shards of ``shard_size`` frames: ``(split, k, n_shards, rows)``."""
    shards = []
    for split in dict.fromkeys(plan["split"]):
        rows = plan[plan["split"] == split]
        n = max(1, -(-len(rows) // shard_size))
        for k in range(n):
            shards.append((split, k, n, rows.iloc[k * shard_size:(k + 1) * shard_size]))
    return shards


# ------------------------------------------------------------------------------------------
# processing and writing
# ------------------------------------------------------------------------------------------


def flare_features() -> dict:
    """The ``datasets`` features of the ``flares`` column: one list per field (`FLARE_FIELDS`),
    one entry per flare in progress, strongest first (an Arrow struct of lists)."""
    from datasets import List, Value

    time = Value("string")  # ISO 8601 UTC (times.iso_utc)
    types = {"goes_class": Value("string"), "start": time, "peak": time, "end": time, "on_disk": Value("bool"),
             "event_source": Value("string")}
    return {name: List(types.get(name, Value("float32"))) for name in FLARE_FIELDS}


def skip_reasons(rejected: list) -> str:
    """The reasons frames were skipped, counted by kind, most frequent first.

    >>> skip_reasons([{"file": "a.jpg", "reason": "a.jpg: cannot be decoded as an image (bad header)"},
    ...               {"file": "b.jpg", "reason": "b.jpg: not a whole solar disk in 131 Å: contrast 0.5"},
    ...               {"file": "c.jpg", "reason": "c.jpg: cannot be decoded as an image (truncated)"}])
    '2 cannot be decoded as an image; 1 not a whole solar disk in 131 Å'
    """
    kinds = Counter(r["reason"].removeprefix(f"{r['file']}: ").split(" (")[0].split(":")[0].strip() for r in rejected)
    return "; ".join(f"{n} {kind}" for kind, n in kinds.most_common())


def remove_empty_build(out: Path, config: BuildConfig, tasks: list, new_folder: bool):
    """Remove the shards (all empty) and their records that a build which kept no frame wrote, and
    its folders where it made them: nothing unusable is left to be taken for a dataset."""
    for _, config_, split, k, n, _, _ in tasks:
        path = _shard_path(out, config_, split, k, n)
        path.unlink(missing_ok=True)
        path.with_suffix(".rejected.json").unlink(missing_ok=True)
    (out / ".build_settings.json").unlink(missing_ok=True)  # nothing kept: another build may use the folder
    for folder in (out / config.config_name, out) if new_folder else ():
        if folder.exists() and not any(folder.iterdir()):
            folder.rmdir()


def dataset_features(vocabulary: list[str], n_channels: int, size: int, unit: str):
    """The ``datasets.Features`` of a build: ``image`` is channels first in the data unit; the
    units of every column are in ``card.COLUMNS``."""
    from datasets import Array3D, ClassLabel, Features, Value

    from solar_diffusion.splits import image_dtype

    return Features({
        "image": Array3D(shape=(n_channels, size, size), dtype=image_dtype(unit).name),
        "flare_class": ClassLabel(names=list(vocabulary)),
        "flare_log10_peak_flux_goes_r": Value("float32"),
        "goes_flux_at_obs": Value("float32"),
        "t_obs": Value("string"),  # ISO 8601 UTC (times.iso_utc)
        "label_source": Value("string"),
        "flare_goes_class": Value("string"),
        "flare_hpc_x": Value("float32"),
        "flare_hpc_y": Value("float32"),
        "flares": flare_features(),
        "source": Value("string"),
        "channel": Value("string"),
        "unit": Value("string"),
        "image_size": Value("int32"),
        "fov_rsun": Value("float32"),
        "rsun_px": Value("float32"),
    })


def _shard_path(out: Path, config: BuildConfig, split: str, k: int, n: int) -> Path:
    return out / config.config_name / f"{split}-{k:05d}-of-{n:05d}.parquet"


def _shards(out: Path, config: BuildConfig) -> list[Path]:
    """The finished shards of a build (temporary files of a killed build are not shards)."""
    return sorted(p for p in (out / config.config_name).glob("*-of-*.parquet") if not p.name.startswith("."))


def process_shard(args) -> tuple[str, int, int]:
    """Read, preprocess and write one shard; returns ``(split, k, rows written)``."""
    out, config, split, k, n, rows, features = args
    path = _shard_path(out, config, split, k, n)
    if path.exists():
        return split, k, -1
    records, rejected, notes = {name: [] for name in features}, [], []
    for row in rows.itertuples(index=False):
        try:
            frame = read_frame(row.file, config.channels, t_obs=row.t_obs,
                               composite_channels=config.composite_channels, register=config.register,
                               pointing_table=config.pointing_table, correction_table=config.correction_table)
            image, rsun = crop_and_resize(frame, config.size, config.fov_rsun, config.limb_mask)
        except FrameRejected as err:
            rejected.append({"file": row.file, "reason": str(err)})
            continue
        except Exception as err:  # a bad file must never take the batch down
            rejected.append({"file": row.file, "reason": f"{row.file}: {type(err).__name__}: {err}"})
            continue
        unit = frame.unit
        if frame.notes:
            notes.append({"file": frame.source, "notes": list(frame.notes)})
        values = {
            "image": image,
            "flare_class": row.flare_class,
            "flare_log10_peak_flux_goes_r": row.flare_log10_peak_flux_goes_r,
            "goes_flux_at_obs": row.goes_flux_at_obs,
            "t_obs": iso_utc([row.t_obs])[0],
            "label_source": row.label_source,
            "flare_goes_class": row.flare_goes_class,
            "flare_hpc_x": row.flare_hpc_x,
            "flare_hpc_y": row.flare_hpc_y,
            "flares": row.flares,
            "source": os.path.basename(frame.source),
            "channel": ",".join(frame.channels),
            "unit": unit,
            "image_size": config.size,
            "fov_rsun": config.fov_rsun,
            "rsun_px": rsun,
        }
        for name, value in values.items():
            records[name].append(value)
    side = {"rejected": rejected, "notes": notes}
    atomic_write(path.with_suffix(".rejected.json"), lambda tmp: Path(tmp).write_text(json.dumps(side, indent=1)))
    _write_shard(path, records, features)
    fault_point("build:shard")
    return split, k, len(records["image"])


def _write_shard(path: Path, records: dict, features):
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()

    dataset = Dataset.from_dict(records, features=features)
    atomic_write(path, dataset.to_parquet)


def build_dataset(index: pd.DataFrame, events: pd.DataFrame, config: BuildConfig, xrs=None,
                  num_proc: int = 1, progress: bool = True, provenance: dict | None = None) -> BuildResult:
    """Plan, process and package a dataset; see the module docstring."""
    from tqdm.auto import tqdm

    out = Path(config.out)
    new_folder = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    plan, rejected, unassigned = plan_build(index, events, xrs, config)
    if plan.empty:
        raise ValueError(f"no frames fall in the splits {config.splits!r}: nothing to build")
    label_vocabulary(plan["flare_class"])  # refuses a label outside LABEL_ORDER
    vocabulary = list(LABEL_ORDER)  # the same ids in every build: id 1 is A whether or not this build has an A frame
    is_fits = plan["file"].str.lower().str.endswith(FITS_SUFFIXES)
    if is_fits.any() and not is_fits.all():
        raise ValueError("the images mix FITS (DN/s) with browse or JPEG 2000 files (8-bit): build them apart")
    unit = "DN/s" if is_fits.all() else "browse"
    features = dataset_features(vocabulary, len(config.channels), config.size, unit)
    tasks = [(out, config, split, k, n, rows, features) for split, k, n, rows in shard_plan(plan, config.shard_size)]
    check_requested_steps(config, unit)
    known_gaps = [gap for path in config.flare_list_gaps for gap in read_known_gaps(path)]
    coverage = label_coverage(plan["t_obs"], events, xrs, known_gaps, pd.Timedelta(days=config.max_quiet_days))
    _check_resume(out, config, vocabulary, features, plan, events)
    for stale in (out / config.config_name).glob(".*.tmp*"):  # left by a killed build
        stale.unlink()
    bar = tqdm(total=len(tasks), desc="shards", disable=not progress)
    if num_proc > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(num_proc) as pool:
            for _ in pool.imap_unordered(process_shard, tasks):
                bar.update()
    else:
        for task in tasks:
            process_shard(task)
            bar.update()
    bar.close()
    frame_notes = []
    for _, config_, split, k, n, _, _ in tasks:
        side = json.loads(_shard_path(out, config_, split, k, n).with_suffix(".rejected.json").read_text())
        rejected += side["rejected"]
        frame_notes += side.get("notes", [])
    counts, rsun_median, clipped = summarize_shards(out, config, vocabulary, unit)
    if int(counts.to_numpy().sum()) == 0:
        remove_empty_build(out, config, tasks, new_folder)
        first = rejected[0]["reason"] if rejected else "no reason recorded"
        raise ValueError(f"every one of the {len(plan)} frames was skipped ({skip_reasons(rejected)}; the first: "
                         f"{first}): nothing was built; fix the images or the settings")
    positions = count_flare_positions(_shards(out, config))
    info = {
        "schema_version": SCHEMA_VERSION,
        "config": asdict(config),
        "vocabulary": vocabulary,
        "unit": unit,
        "label_rule": f"{FORECAST_RULE} Here H = {config.forecast_hours:g} h." if config.forecast_hours else LABEL_RULE,
        "counts": counts.to_dict(),
        "rejected": rejected,
        "duplicates_dropped": sum(1 for r in rejected if ": duplicate " in r["reason"]),
        "frame_notes": frame_notes,
        "label_coverage": coverage,
        "flare_positions": positions,
        "unassigned_frames": unassigned,
        "rsun_px_median": rsun_median,
        "t_obs_median_train": str(plan.loc[plan["split"] == "train", "t_obs"].median()),
        "clipped_fraction": clipped,
        "provenance": provenance or {},
    }
    atomic_write(out / BUILD_INFO, lambda tmp: Path(tmp).write_text(json.dumps(info, indent=1, default=str)))
    from solar_diffusion.dataset_builder.card import write_dataset_card

    write_dataset_card(out, info, counts)
    return BuildResult(out=out, counts=counts, rejected=rejected, unassigned=unassigned, frame_notes=frame_notes,
                       label_coverage=coverage, flare_positions=positions)


def check_requested_steps(config: BuildConfig, unit: str):
    """Stop before any work if a requested calibration step cannot run: the aiapy steps need
    aiapy, level-1 FITS images (DN/s) and the tables they were given.

    >>> check_requested_steps(BuildConfig(out="x", register=True), "browse")
    Traceback (most recent call last):
    ...
    ValueError: --register/--pointing-table/--correction-table calibrate level-1 FITS, but the images are browse images (8-bit): leave them off or give FITS files
    """
    requested = config.register or config.pointing_table is not None or config.correction_table is not None
    if not requested:
        return
    if unit != "DN/s":
        raise ValueError("--register/--pointing-table/--correction-table calibrate level-1 FITS, but the images are "
                         f"{unit} images (8-bit): leave them off or give FITS files")
    try:
        import aiapy.calibrate  # noqa: F401
    except ImportError:
        raise ValueError("--register/--pointing-table/--correction-table need aiapy: "
                         "pip install 'solar-diffusion[aia]'") from None
    for flag, table in (("--pointing-table", config.pointing_table), ("--correction-table", config.correction_table)):
        if table is not None and not Path(table).is_file():
            raise FileNotFoundError(f"{flag} {table}: no such file")


def _check_resume(out: Path, config: BuildConfig, vocabulary, features, plan: pd.DataFrame, events: pd.DataFrame):
    """Refuse to mix shards of a different build into this one: a folder is resumed only by a build
    of the same settings (paths resolved, so ``./out/x`` and ``out/x`` are one build) and the same
    inputs (``build_inputs_digest``); a folder holding shards without that record is refused too."""
    stamp = out / ".build_settings.json"
    settings = json.dumps({"config": normalised_config(config), "vocabulary": vocabulary,
                           "features": features.to_dict(), "inputs": build_inputs_digest(plan, events)},
                          sort_keys=True, default=str)
    fresh = "remove it (or its contents) to build afresh, or choose an empty --out"
    if stamp.exists() and stamp.read_text() != settings:
        before = json.loads(stamp.read_text())
        what = "other inputs (image files, their sizes or times, or the flare lists)" \
            if before.get("config") == json.loads(settings)["config"] else "other settings"
        raise ValueError(f"{out} holds a build with {what}: {fresh}")
    if not stamp.exists() and _shards(out, config):
        raise ValueError(f"{out} holds dataset shards of a build this one cannot check: {fresh}")
    atomic_write(stamp, lambda tmp: Path(tmp).write_text(settings))


def normalised_config(config: BuildConfig) -> dict:
    """The build settings with every path resolved (the resume check compares these).

    >>> normalised_config(BuildConfig(out="./x"))["out"] == normalised_config(BuildConfig(out="x"))["out"]
    True
    """
    settings = asdict(config)
    for key in ("out", "pointing_table", "correction_table"):
        if settings[key] is not None:
            settings[key] = str(Path(settings[key]).resolve())
    settings["flare_list_gaps"] = [str(Path(p).resolve()) for p in settings["flare_list_gaps"]]
    if settings["forecast_hours"] is None:  # builds from before forecast labels resume as they are
        del settings["forecast_hours"]
    return settings


def build_inputs_digest(plan: pd.DataFrame, events: pd.DataFrame) -> str:
    """SHA-256 of what a build reads: each planned image file (resolved path, size, modification
    time), the plan's times, labels and splits, and the flare events. A different build into a
    used folder differs here even with the same settings."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(set(map(str, plan["file"]))):
        path = Path(name)
        stat = path.stat() if path.exists() else None
        digest.update(f"{path.resolve()}|{stat.st_size if stat else -1}|{stat.st_mtime_ns if stat else -1}\n".encode())
    columns = [c for c in ("file", "t_obs", "flare_class", "split") if c in plan.columns]
    digest.update(pd.util.hash_pandas_object(plan[columns].astype(str), index=False).to_numpy().tobytes())
    if len(events):
        digest.update(pd.util.hash_pandas_object(events.astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()


def clipped_fraction_of(images: np.ndarray, unit: str) -> np.ndarray:
    """Per image, the fraction of pixels the default normalisation clips at its top.

    DN/s: above 3500 DN/s (the paper's 171 A clip); browse: saturated at 255.
    """
    from solar_diffusion.pipelines import ClipLogNormalization

    norm = ClipLogNormalization.for_unit(unit)
    return (images >= norm.hi).reshape(len(images), -1).mean(axis=1)


def summarize_shards(out: Path, config: BuildConfig, vocabulary, unit: str):
    """One pass over the finished shards: ``(label_counts, median rsun_px, clipped_fraction)``.

    ``label_counts`` has frames per label (rows, lowest first) and split (columns);
    ``clipped_fraction`` is the mean clipped fraction of pixels per label, so a clip that
    erases flare kernels shows.
    """
    import pyarrow.parquet as pq

    counts, radii, clipped = {}, [], {}
    for path in _shards(out, config):
        table = pq.read_table(path, columns=["image", "flare_class", "rsun_px"])
        split = path.name.split("-")[0]
        counts.setdefault(split, {})
        if table.num_rows == 0:
            continue
        values = table.column("image").combine_chunks()
        values = getattr(values, "storage", values).flatten().flatten().flatten()  # datasets' Array3D extension
        fractions = clipped_fraction_of(values.to_numpy(zero_copy_only=False).reshape(table.num_rows, -1), unit)
        radii.append(table.column("rsun_px").to_numpy())
        for class_id, fraction in zip(table.column("flare_class").to_numpy(), fractions):
            label = vocabulary[class_id]
            counts[split][label] = counts[split].get(label, 0) + 1
            clipped.setdefault(label, []).append(float(fraction))
    splits = sorted(counts, key=lambda s: (["train", "validation", "test"] + [s]).index(s))
    table = pd.DataFrame(counts, columns=splits)
    table = table.reindex([label for label in LABEL_ORDER if label in vocabulary]).fillna(0).astype(int)
    radii = np.concatenate(radii) if radii else np.array([])
    rsun_median = float(np.median(radii)) if radii.size else float("nan")
    return table, rsun_median, {label: float(np.mean(clipped[label])) for label in vocabulary if label in clipped}


def count_flare_positions(shards) -> dict:
    """How many of the flares listed in the built frames (the ``flares`` column of ``shards``)
    have a usable position: on the visible disk at the frame's time, or without a position in
    the lists (NaN), or off the disk (beyond 1 R_sun: behind or above the limb).

    Counted per distinct flare (a flare on the disk in one of its frames counts as on the disk)
    and per (frame, flare) entry; written as ``flare_positions`` in ``build_info.json``.
    """
    import pyarrow.parquet as pq

    status = {}  # distinct flare -> 0 on the disk, 1 off the disk, 2 without a position
    entries = np.zeros(3, dtype=int)
    frames_with, frames_several = 0, 0
    for path in shards:
        column = pq.read_table(path, columns=["flares"]).column("flares").combine_chunks()
        if len(column) == 0:
            continue
        fields = dict(zip([f.name for f in column.type], column.flatten()))
        lengths = fields["goes_class"].value_lengths().to_numpy(zero_copy_only=False)
        frames_with += int((lengths > 0).sum())
        frames_several += int((lengths > 1).sum())
        values = {name: fields[name].flatten().to_numpy(zero_copy_only=False)
                  for name in ("goes_class", "start", "peak", "end", "hpc_x", "hpc_y", "on_disk", "event_source")}
        for name in ("start", "peak", "end"):  # a missing time as one comparable key
            values[name] = utc_times(values[name]).to_numpy(dtype="datetime64[us]").astype(np.int64)
        known = np.isfinite(values["hpc_x"]) & np.isfinite(values["hpc_y"])
        code = np.where(values["on_disk"], 0, np.where(known, 1, 2))
        entries += np.bincount(code, minlength=3)
        keys = zip(values["goes_class"], values["start"], values["peak"], values["end"], values["event_source"])
        for key, c in zip(keys, code):
            status[key] = min(status.get(key, 2), int(c))
    distinct = np.bincount(np.fromiter(status.values(), dtype=int, count=len(status)), minlength=3)
    return {
        "flares": len(status),
        "flares_on_disk": int(distinct[0]),
        "flares_off_disk": int(distinct[1]),
        "flares_without_position": int(distinct[2]),
        "frame_entries": int(entries.sum()),
        "frame_entries_on_disk": int(entries[0]),
        "frame_entries_off_disk": int(entries[1]),
        "frame_entries_without_position": int(entries[2]),
        "frames_with_flares": frames_with,
        "frames_with_several_flares": frames_several,
    }


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------


def merge_events(tables) -> pd.DataFrame:
    """Flare-event tables of several lists as one: a flare that more than one list gives (the
    same start and end) is kept once, with the highest peak flux and, among those, a row with a
    position (so an SWPC row never hides HEK's position of the same flare); sorted by start.
    """
    events = pd.concat(list(tables), ignore_index=True)
    has_position = events["hpc_x"].notna() & events["hpc_y"].notna()
    order = np.lexsort((~has_position.to_numpy(), -events["peak_flux"].to_numpy(dtype=float)))
    events = events.iloc[order].drop_duplicates(["start", "end"])
    return events.sort_values("start", kind="stable").reset_index(drop=True)


def check_lists_cover(lists: dict, t_obs) -> None:
    """Refuse flare lists (path -> events) none of which overlaps the images' dates: every frame
    would be labelled quiet. Lists that overlap in part keep the per-frame coverage warning.

    >>> events = pd.DataFrame({"start": pd.to_datetime(["2011-02-15"]), "end": pd.to_datetime(["2011-02-16"])})
    >>> check_lists_cover({"flares-2011.csv": events}, pd.to_datetime(["2012-03-07", "2012-03-09"]))
    Traceback (most recent call last):
    ...
    ValueError: the flare lists end before the images begin or start after they end, so every frame would be 'quiet': flares-2011.csv spans 2011-02-15 to 2011-02-16, the images 2012-03-07 to 2012-03-09
    """
    times = pd.to_datetime(pd.Series(t_obs)).dropna()
    spans = {path: (events["start"].min(), events["end"].max()) for path, events in lists.items() if len(events)}
    if times.empty or not spans:
        return
    first, last = times.min(), times.max()
    if any(start <= last and end >= first for start, end in spans.values()):
        return
    ranges = "; ".join(f"{path} spans {start:%Y-%m-%d} to {end:%Y-%m-%d}" for path, (start, end) in spans.items())
    raise ValueError(f"the flare lists end before the images begin or start after they end, so every frame would be "
                     f"'quiet': {ranges}, the images {first:%Y-%m-%d} to {last:%Y-%m-%d}")


def build_from_args(args) -> BuildResult:
    """Run ``solar-diffusion build-dataset`` from parsed arguments, printing the label counts."""
    from solar_diffusion.dataset_builder import flares, goes
    from solar_diffusion.dataset_builder.card import counts_markdown

    channels = tuple(c.strip() for c in args.channels.split(","))
    config = BuildConfig(  # the settings are checked before any file is read
        out=str(args.out), size=args.size, channels=channels, window_minutes=args.window, splits=args.splits,
        fov_rsun=args.fov_rsun, limb_mask=args.limb_mask, shard_size=args.shard_size, config_name=args.config_name,
        composite_channels=tuple(c.strip() for c in args.composite_channels.split(",")),
        register=args.register, pointing_table=args.pointing_table, correction_table=args.correction_table,
        flare_list_gaps=tuple(args.flare_list_gaps), max_quiet_days=args.max_quiet_days,
        forecast_hours=args.forecast_hours,
    )
    parse_splits(config.splits)
    provenance = {}
    if args.images:
        index = index_images(args.images, channels)
        provenance["images"] = str(args.images)
    elif args.start and args.end:
        from solar_diffusion.dataset_builder.jsoc import JSOCImageSource

        if not args.jsoc_email:
            raise ValueError("the online path downloads AIA images from JSOC: give --jsoc-email (registered at JSOC)")
        source = JSOCImageSource(email=args.jsoc_email, cache_dir=Path(args.cache_dir).expanduser() / "aia")
        files = source.fetch(args.start, args.end, args.cadence, channels[0])
        index = pd.DataFrame({"file": [str(f) for f in files], "t_obs": [_time_of(Path(f)) for f in files], "flag": None})
        provenance["images"] = f"JSOC aia.lev1_euv_12s {args.start}..{args.end} every {args.cadence}"
    else:
        raise ValueError("give --images (local) or --start and --end (online)")
    if index.empty:
        raise ValueError(f"no image files found in {args.images}")

    if args.flare_list:
        lists = [flares.read_flare_list(path) for path in args.flare_list]
        check_lists_cover(dict(zip(map(str, args.flare_list), lists)), index["t_obs"])
        events = merge_events(lists)
        provenance["flare lists"] = ", ".join(map(str, args.flare_list))
    elif args.start and args.end:
        events = merge_events([flares.HEKFlareSource().events(args.start, args.end)])
        provenance["flare lists"] = "HEK (GOES flare events), queried month by month"
    else:
        raise ValueError("give --flare-list (local) or --start/--end to query HEK")

    xrs = None
    if args.goes:
        xrs = goes.read_xrs(args.goes)
        provenance["GOES XRS"] = ", ".join(map(str, args.goes))
    elif args.start and args.end:
        xrs = goes.GOESXRSSource().flux(args.start, args.end)
        provenance["GOES XRS"] = "Fido, 1-min averages"

    result = build_dataset(index, events, config, xrs=xrs, num_proc=args.num_proc, provenance=provenance)
    print(f"\nLabel counts ({result.out}):\n{counts_markdown(result.counts)}")
    print(f"{result.unassigned} frames outside the splits; {len(result.rejected)} files skipped")
    for item in result.rejected[:20]:
        print(f"  skipped: {item['reason']}")
    if len(result.rejected) > 20:
        print(f"  ... {len(result.rejected) - 20} more in {result.out / BUILD_INFO}")
    coverage = result.label_coverage
    if coverage.get("frames_in_flare_list_gaps"):
        print(f"WARNING: {coverage['frames_in_flare_list_gaps']} frames lie where the flare lists have a known gap or "
              f"no flare in progress for over {coverage['max_quiet']} ({len(coverage['flare_list_gaps'])} stretches, "
              f"first {coverage['flare_list_gaps'][0][0]} to {coverage['flare_list_gaps'][0][1]}): their 'quiet' labels "
              f"may be wrong; give lists that cover the images (see 'label_coverage' in {result.out / BUILD_INFO})",
              file=sys.stderr)
    if coverage.get("frames_without_xrs"):
        print(f"WARNING: {coverage['frames_without_xrs']} frames have no GOES XRS flux within 5 min (their background "
              "letter is unknown)", file=sys.stderr)
    positions = result.flare_positions
    unusable = positions.get("flares_off_disk", 0) + positions.get("flares_without_position", 0)
    if unusable:
        listed = ("ahead of the frames (a flare rotated behind the limb at a frame's time has none there)"
                  if config.forecast_hours else "in progress at the frames")
        print(f"WARNING: {unusable} of the {positions['flares']} flares {listed} have no usable "
              f"position ({positions['flares_without_position']} without one in the flare lists or at the frame, "
              f"{positions['flares_off_disk']} off the disk): they are listed with on_disk false and no Stonyhurst "
              f"position (see 'flare_positions' in {result.out / BUILD_INFO})", file=sys.stderr)
    if result.frame_notes:
        print(f"WARNING: {len(result.frame_notes)} frames were changed on the way (listed per frame under "
              f"'frame_notes' in {result.out / BUILD_INFO}), e.g.:", file=sys.stderr)
        for item in result.frame_notes[:5]:
            print(f"  {item['file']}: {'; '.join(item['notes'])}", file=sys.stderr)
    return result
