"""Add generated frames to a built dataset's training split: ``solar-diffusion augment``.

    solar-diffusion augment --dataset DIR --out DIR [--target balanced | --ratio R] [--model PATH]

The new dataset is in the builder's format (same columns, so ``load_dataset`` and ``load_split``
read it): the validation and test shards are copied byte for byte, the training shards are
copied and followed by shards of generated frames for the minority classes (every class but the
most frequent; ``--flare-class`` chooses). ``--ratio R`` adds R times a class's count; ``--target
balanced`` raises each to the most frequent class's count (at most ``--max-per-class`` added).

A generated row is flagged in the columns every row has: ``label_source = "synthetic"``, ``source =
"synthetic:<model>:seed=<k>"``, its requested class and log10 peak flux in the label columns, and
for a flare model its requested position (arcsec and pixels) in ``flare_hpc_x/y`` and ``flares``
(``event_source = "synthetic"``); ``t_obs`` is empty (a generated frame was never observed).
``synthetic.json`` lists every added frame, and ``build_info.json`` counts them under
``augmented``. The requested strengths are those of real training frames of the class, drawn
with the seed; a flare model draws its positions from its training flares unless
``--flare-position`` gives one per ``--flare-class``.

A synthetic "M" frame shows a flare in progress, not the Sun hours before one: it adds examples
of what a flaring Sun looks like, not of what precedes a flare. For a forecaster, ``--for-forecasting``
adds the Sun before a flare instead: the model is a forecast model (trained on a dataset built with
``--forecast-hours H``), the dataset one built with the same H, and an added "M" frame is the Sun
in the H hours before an M flare, its region where the flare will be (``build_info.json`` records
the horizon under ``augmented.forecast``). Each refuses the other's model and data.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
from huggingface_hub import DatasetCard

from solar_diffusion.files import atomic_write
from solar_diffusion.generate import (
    check_requests,
    describe_guidance,
    load_pipeline,
    outermost_missing,
    sample_batches,
    unets,
    use_scheduler,
)
from solar_diffusion.hub import model_name
from solar_diffusion.pipelines import QUIET_LABEL, requested_flux, rsun_px
from solar_diffusion.splits import dataset_info, image_dtype, split_sizes, split_table

#: ``label_source`` of a generated row.
SYNTHETIC = "synthetic"


def is_synthetic(label_source) -> np.ndarray:
    """Which rows were generated (their ``label_source`` column).

    >>> is_synthetic(["hek", "synthetic", "goes"]).tolist()
    [False, True, False]
    """
    return np.asarray(label_source, dtype=object) == SYNTHETIC


def weights_digest(module) -> str:
    """A short SHA-1 of a module's weights: which model made a set of synthetic frames.

    >>> import torch
    >>> layer = torch.nn.Linear(2, 2)
    >>> _ = torch.nn.init.zeros_(layer.weight), torch.nn.init.zeros_(layer.bias)
    >>> weights_digest(layer)
    'd3399b7262fb'
    """
    import hashlib

    digest = hashlib.sha1()
    for tensor in module.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def plan_additions(counts: dict, flare_classes=None, ratio: float | None = None, target: str | None = None,
                   max_per_class: int | None = None) -> dict:
    """How many frames to add per class, from the training split's ``counts``.

    >>> plan_additions({"quiet": 100, "C": 10, "M": 2}, ratio=1.5)
    {'C': 15, 'M': 3}
    >>> plan_additions({"quiet": 100, "C": 10, "M": 2}, target="balanced", max_per_class=50)
    {'C': 50, 'M': 50}
    """
    if (ratio is None) == (target is None):
        raise ValueError("give one of --ratio R or --target balanced")
    if target is not None and target != "balanced":
        raise ValueError(f"--target is 'balanced', got {target!r}")
    if ratio is not None and not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"--ratio must be a positive number, got {ratio}")
    if max_per_class is not None and max_per_class < 1:
        raise ValueError(f"--max-per-class must be at least 1, got {max_per_class}")
    majority = max(counts, key=counts.get)
    chosen = list(flare_classes) if flare_classes else [c for c in counts if c != majority and counts[c] > 0]
    unknown = [c for c in chosen if c not in counts or counts[c] == 0]
    if unknown:
        raise ValueError(f"the training split has no frames of {', '.join(unknown)} (it has: "
                         f"{', '.join(c for c, n in counts.items() if n)})")
    if ratio is not None:
        plan = {c: int(round(ratio * counts[c])) for c in chosen}
    else:
        plan = {c: max(0, counts[majority] - counts[c]) for c in chosen}
    if max_per_class is not None:
        plan = {c: min(n, max_per_class) for c, n in plan.items()}
    return {c: n for c, n in plan.items() if n > 0}


def augment(dataset, out, model, ratio=None, target=None, flare_classes=None, max_per_class=None, seed: int = 0,
            num_inference_steps=None, scheduler=None, guidance_scale=None, novelty_target=None, batch_size=None,
            flare_positions=None, date=None, for_forecasting: bool = False, log=print) -> dict:
    """Write the augmented dataset to ``out`` (new or empty); returns its ``build_info.json``.
    ``for_forecasting``: a forecast model's pre-flare frames added to a forecast dataset of the
    same horizon (the module docstring).

    ``flare_positions`` (a flare model's; text as ``--flare-position`` takes it, NOAA locations
    seen at ``date``) go with the ``flare_classes`` of the same rank: every frame added of that
    class has its flare there. Everything is checked before ``out`` is written; a run that fails
    later removes what it wrote.
    """
    dataset, out = Path(dataset), Path(out)
    plan_additions({"quiet": 2, "C": 1}, None, ratio, target, max_per_class)  # the request's form, before any work
    if len(flare_positions or []) > len(flare_classes or []):
        raise ValueError(f"{len(flare_positions)} flare positions for {len(flare_classes or [])} flare classes: each "
                         "--flare-position goes with the --flare-class of the same rank")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {out} is not empty: augment writes a new dataset folder")
    info = dataset_info(dataset)
    pipe = _model_for(model, dataset, info, scheduler)
    forecast = check_forecasting(pipe, model, dataset, info, for_forecasting)
    train = split_table(dataset, "train", info["config"].get("config_name", "default"))
    vocabulary = info["vocabulary"]
    labels = np.array([vocabulary[i] for i in train.column("flare_class").to_numpy()], dtype=object)
    counts = {c: int((labels == c).sum()) for c in vocabulary}
    plan = plan_additions(counts, flare_classes, ratio, target, max_per_class)
    for c in plan:
        if pipe.conditioning == "class" and c not in pipe.id2label.values():
            raise ValueError(f"{model} does not know the class {c!r}; it knows: {', '.join(pipe.id2label.values())}")
    where = _positions_of(pipe, flare_classes, flare_positions, date)
    sampling = {"num_inference_steps": pipe.inference_steps(num_inference_steps),
                "guidance_scale": pipe.guidance_setting(guidance_scale),
                "novelty_target": pipe.novelty_setting(novelty_target)}  # refused before any file is written
    requests, positions = _draw_requests(pipe, train, labels, plan, where, np.random.default_rng(seed))
    created = outermost_missing(out)
    try:
        return _write_augmented(dataset, out, pipe, model, info, train, counts, plan, requests, positions,
                                sampling | {"forecast": forecast}, seed, guidance_scale, batch_size, log)
    except Exception:  # everything in out is this run's: it was new or empty
        for path in [created] if created else list(out.iterdir()):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        raise


def _model_for(model, dataset: Path, info: dict, scheduler: str | None):
    """The pipeline that generates the frames (``scheduler`` swapped in where given), refused
    where its images are not the dataset's (unit, channels, size) or it is conditioned on flux alone.
    A cascade makes the dataset's size: its base model's or its upscaler's (``_generated_rows``)."""
    config = info["config"]
    pipe = load_pipeline(model)
    if scheduler:
        use_scheduler(pipe, scheduler)
    pipe.set_progress_bar_config(disable=True)
    sizes, n_channels = [unet.config.sample_size for unet in unets(pipe)], pipe.unet.config.out_channels
    if pipe.normalization.unit != info["unit"]:
        raise ValueError(f"{model} makes {pipe.normalization.unit!r} images, {dataset} holds {info['unit']!r}")
    if config["size"] not in sizes or n_channels != len(config["channels"]):
        raise ValueError(f"{model} makes {n_channels} x {' or '.join(map(str, sizes))} px images, {dataset} holds "
                         f"{len(config['channels'])} x {config['size']} px: use a model of the dataset's channels and size")
    if pipe.conditioning == "flux":
        raise ValueError(f"{model} is conditioned on flux alone; augment needs a class or flare model")
    return pipe


def check_forecasting(pipe, model, dataset, info: dict, for_forecasting: bool) -> dict | None:
    """The horizon record of a ``--for-forecasting`` run (None otherwise), after refusing a model
    and dataset that do not match the request: frames of the Sun before a flare go into a forecast
    dataset of the same horizon, frames of flares in progress into a dataset of flares in progress."""
    horizon = (pipe.config.get("forecast") or {}).get("horizon_hours")
    built = info["config"].get("forecast_hours")
    if not for_forecasting:
        if horizon or built:
            what = f"{model} is a forecast model" if horizon else f"{dataset} has forecast labels"
            raise ValueError(f"{what} (the Sun in the hours before a flare): add --for-forecasting")
        return None
    if not horizon:
        raise ValueError(f"--for-forecasting: {model} is not a forecast model (train one on a dataset built with "
                         "--forecast-hours); its flare frames show flares in progress")
    if built != horizon:
        raise ValueError(f"--for-forecasting: {dataset} " + (f"has forecast labels of {built:g} h" if built else
                         "has labels of flares in progress") + f", the model forecasts {horizon:g} h: build the dataset "
                         f"with --forecast-hours {horizon:g}")
    return dict(pipe.config.forecast)


def _positions_of(pipe, flare_classes, flare_positions, date) -> dict:
    """Each ``--flare-class``'s flare position as the pipeline takes it, checked."""
    if not flare_positions:
        return {}
    from solar_diffusion.positions import flare_positions as parse  # sunpy (seconds to import): only for positions

    where = dict(zip(flare_classes, parse(flare_positions, pipe, date)))
    check_requests(pipe, list(where), list(where.values()))
    return where


def _draw_requests(pipe, train, labels, plan: dict, where: dict, rng) -> tuple[list, list | None]:
    """Each added frame's request and position: for a flare model a real training frame's
    published class of its label, drawn with ``rng``, at the class's position in ``where`` (None:
    drawn by the pipeline); else the label itself."""
    published = np.array(train.column("flare_goes_class").to_pylist(), dtype=object)
    requests, positions = [], []
    for c, n in plan.items():
        pool = [p for p in published[labels == c] if p] if c != QUIET_LABEL else []
        picks = rng.choice(pool, size=n) if (pool and pipe.conditioning == "flare") else [c] * n
        requests += [str(p) for p in picks]
        positions += [where.get(c)] * n
    return requests, positions if where else None


def _write_augmented(dataset: Path, out: Path, pipe, model, info: dict, train, counts: dict, plan: dict,
                     requests: list, positions, sampling: dict, seed: int, guidance_scale, batch_size, log) -> dict:
    """The new dataset's folder: the original files, the shards of generated frames, the records."""
    import pyarrow.parquet as pq

    name = info["config"].get("config_name", "default")
    out.mkdir(parents=True, exist_ok=True)
    (out / name).mkdir()
    for path in sorted((dataset / name).iterdir()):  # every original shard and side file, unchanged
        if not path.name.startswith("."):
            shutil.copy2(path, out / name / path.name)
    for extra in ("README.md",):
        if (dataset / extra).exists():
            shutil.copy2(dataset / extra, out / extra)
    guidance = sampling["guidance_scale"]
    flux_table = dict(pipe.config.get("guidance_by_flux") or {}) if guidance is None else None
    guidance_text = describe_guidance(guidance, flux_table)
    model_id = model_name(model)
    log(f"augment: adding {sum(plan.values())} generated frames ({', '.join(f'{c} {n}' for c, n in plan.items())}) "
        f"with {model_id}, {type(pipe.scheduler).__name__}, {sampling['num_inference_steps']} steps, {guidance_text}")
    rows, manifest = _generated_rows(pipe, info, train, requests, positions, seed, sampling, guidance_scale,
                                     batch_size, model_id)
    shard_size = int(info["config"].get("shard_size") or 256)
    existing = len(list((dataset / name).glob("train-*-of-*.parquet")))
    n_shards = math.ceil(len(rows) / shard_size)
    for s in range(n_shards):
        table = _table(rows[s * shard_size:(s + 1) * shard_size], train.schema)
        path = out / name / f"train-{existing + s:05d}-synthetic-{s:05d}-of-{n_shards:05d}.parquet"
        atomic_write(path, lambda tmp, table=table: pq.write_table(table, tmp))
    added = {c: sum(1 for m in manifest if m["flare_class"] == c) for c in plan}
    new_info = dict(info)
    new_info["counts"] = {**info["counts"], "train": {c: counts[c] + added.get(c, 0) for c in info["vocabulary"]}}
    new_info["augmented"] = {"source_dataset": str(dataset), "model": model_id,
                             "model_weights": weights_digest(pipe.unet), "requested": plan, "seed": seed,
                             "scheduler": type(pipe.scheduler).__name__, **sampling, "guidance_by_flux": flux_table,
                             "added": added, "original_train_counts": counts, "rule": "label_source == 'synthetic'"}
    if not new_info["augmented"]["forecast"]:
        del new_info["augmented"]["forecast"]
    atomic_write(out / "build_info.json", lambda tmp: Path(tmp).write_text(json.dumps(new_info, indent=1, default=str)))
    atomic_write(out / "synthetic.json", lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))
    if (out / "README.md").exists():
        card = DatasetCard((out / "README.md").read_text())  # the source's card, with this build's sizes
        name = info["config"]["config_name"]
        card.data.dataset_info = split_sizes(out, name, {s: sum(c.values()) for s, c in new_info["counts"].items()})
        text = str(card)
        text += (f"\n## Synthetic frames\n\n`solar-diffusion augment` added {sum(added.values())} generated frames to "
                 f"the train split ({', '.join(f'{c}: {n}' for c, n in added.items())}) with `{model_id}` (seed "
                 f"{seed}, {sampling['num_inference_steps']} steps, {guidance_text}). They are the rows with "
                 "`label_source == \"synthetic\"` (their `source` names model and seed; `t_obs` is empty); "
                 "`synthetic.json` lists them. Validation and test splits are the original ones.\n")
        if sampling["forecast"]:
            text += (f"\nThe model is a forecast model: each added frame is the Sun in the "
                     f"{sampling['forecast']['horizon_hours']:g} h before a flare of its class, its region where the "
                     "flare will be, as the dataset's own frames are labelled.\n")
        atomic_write(out / "README.md", lambda tmp: Path(tmp).write_text(text))
    log(f"augment: wrote {out} (train {sum(new_info['counts']['train'].values())} frames, of which "
        f"{sum(added.values())} generated)")
    return new_info


def _generated_rows(pipe, info: dict, train, requests: list, positions, seed: int, sampling: dict, guidance_scale,
                    batch_size, model_id: str) -> tuple[list, list]:
    """The generated frames as rows of the builder's columns, and the manifest entry of each, at the
    dataset's size (a cascade's base model's or its upscaler's, whichever that is)."""
    config, vocabulary, geometry = info["config"], info["vocabulary"], pipe.config.geometry
    size, dtype = config["size"], image_dtype(info["unit"])
    rows, manifest = [], []
    for output in sample_batches(pipe, requests, seed, sampling["num_inference_steps"], guidance_scale, batch_size,
                                 positions, sampling["novelty_target"], image_size=size):
        physical = pipe.normalization.inverse(output.images.cpu().numpy())
        for image, meta in zip(physical, output.metadata):
            request = requests[len(rows)]
            label = QUIET_LABEL if request == QUIET_LABEL else (request[0].upper() if pipe.conditioning == "flare"
                                                                else request)
            flares = meta.get("flares", [])
            first = flares[0] if flares else None
            log10_flux = first["log10_peak_flux_goes_r"] if first else (
                math.nan if label == QUIET_LABEL else math.log10(requested_flux(label)))
            if np.issubdtype(dtype, np.integer):
                image = np.clip(np.round(image), np.iinfo(dtype).min, np.iinfo(dtype).max)
            manifest.append({"row": int(train.num_rows) + len(rows), "flare_class": label, "requested": request,
                             "seed": int(meta["seed"]), "flares": flares})
            rows.append({
                "image": image.astype(dtype), "flare_class": vocabulary.index(label),
                "flare_log10_peak_flux_goes_r": log10_flux, "goes_flux_at_obs": math.nan,
                "t_obs": None, "label_source": SYNTHETIC,
                "flare_goes_class": first["flare_class"] if first else ("" if label == QUIET_LABEL else label),
                "flare_hpc_x": first["position_arcsec"][0] if first and first["position_arcsec"] else math.nan,
                "flare_hpc_y": first["position_arcsec"][1] if first and first["position_arcsec"] else math.nan,
                "flares": _flares_column(flares),
                "source": f"{SYNTHETIC}:{model_id}:seed={meta['seed']}",
                "channel": ",".join(str(c) for c in config["channels"]), "unit": info["unit"],
                "image_size": size, "fov_rsun": config["fov_rsun"], "rsun_px": rsun_px(geometry, size),
            })
    return rows, manifest


def _flares_column(flares: list) -> dict:
    """The ``flares`` struct of a generated frame: its requested flares (no times, no Stonyhurst
    coordinates: it was never observed)."""
    def arcsec(f, i):
        return f["position_arcsec"][i] if f.get("position_arcsec") else math.nan

    return {"goes_class": [f["flare_class"] for f in flares],
            "log10_peak_flux_goes_r": [f["log10_peak_flux_goes_r"] for f in flares],
            "start": [None] * len(flares), "peak": [None] * len(flares), "end": [None] * len(flares),
            "hpc_x": [arcsec(f, 0) for f in flares], "hpc_y": [arcsec(f, 1) for f in flares],
            "hgs_lat": [math.nan] * len(flares), "hgs_lon": [math.nan] * len(flares),
            "x_px": [f["position_px"][0] for f in flares], "y_px": [f["position_px"][1] for f in flares],
            "on_disk": [True] * len(flares), "event_source": [SYNTHETIC] * len(flares)}


def _table(rows: list, schema):
    """Rows as a table of the training shards' schema (column order and types, metadata kept)."""
    import pyarrow as pa

    columns = {}
    for field in schema:
        values = [r[field.name] for r in rows]
        if field.name == "image":
            values = [v.tolist() for v in values]
        if isinstance(field.type, pa.ExtensionType):  # datasets' Array3D, where its types are registered
            columns[field.name] = pa.ExtensionArray.from_storage(field.type, pa.array(values, type=field.type.storage_type))
        else:
            columns[field.name] = pa.array(values, type=field.type)
    return pa.Table.from_pydict(columns, schema=schema)
