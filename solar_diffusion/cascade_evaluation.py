"""The cascade at its output resolution: fine structure, consistency with the base image, and real
low-resolution frames super-resolved against their originals, each figure with a bootstrap
interval over days.

    solar-diffusion evaluate-cascade --model DIR --dataset data/aia-browse2012-256-3ch --split test \\
        --num-images 32 --out reports/cascade

For generated images (``num_images`` per class: quiet, C, M, X) and for the split's real frames
taken to the base size by the builder's operator and super-resolved (``super_resolve``), against
the split's real frames at the output size: the power ratio generated / real in each band of
``fine_structure.BANDS`` per channel; the band-passed kurtosis (structure, not noise); the
consistency RMS of each output taken back down to the base size against its base image; for the
super-resolved frames, the RMS to their originals. The two controls, bicubic upsampling and
bicubic plus noise shaped to the real spectrum, are measured the same way on the same frames. Then
what detail is invented (the spread over seeds of one base frame) and how the noise augmentation
of the base image at sampling trades fidelity for detail (a sweep of its level, over real and
generated base images: run on the validation split, it chooses the model's level).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from solar_diffusion.files import atomic_write
from solar_diffusion.fine_structure import (BANDS, BROWSE_BLOCK_CYCLES, band_passed_kurtosis, band_powers, bicubic,
                                            bicubic_plus_shaped_noise, block_peak, disk_power_spectrum)
from solar_diffusion.hub import model_name
from solar_diffusion.fidelity import by_groups
from solar_diffusion.flare_evaluation import flare_signature, nearest_distances, real_flare_frames
from solar_diffusion.pipelines import disk_center_px, rescale_px, rsun_px
from solar_diffusion.splits import dataset_info, downsample, load_split

#: The name of the optional control upscaler's row (``evaluate_cascade(control=...)``).
CONTROL_UPSCALER = "control_upscaler"
#: The classes a cascade is asked for, image k of each with the same seed and position.
CLASSES = ("quiet", "C", "M", "X")
#: The classes whose generated and real frames are compared in the output-size encoder by default (the
#: real test months hold too few M and X frames for a Fréchet distance; a forecast build does not).
DISTANCE_CLASSES = ("quiet", "C")


def real_frames(dataset, split: str, limit: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Up to ``limit`` frames of a split (drawn without replacement, in time order) as stored (the
    data unit), and the day of each."""
    ds = load_split(dataset, split, columns=("image", "t_obs"))
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(ds), size=min(limit, len(ds)), replace=False))
    rows = [ds[int(i)] for i in picked]  # each frame read once
    raw = torch.from_numpy(np.stack([np.asarray(row["image"]) for row in rows]))
    days = np.array([str(row["t_obs"])[:10] for row in rows])
    return raw, days


def by_group(statistic, groups: np.ndarray, unit: str = "days", n_boot: int = 500, **kwargs) -> dict:
    """``statistic(rows)`` (rows: indices of the images) with a bootstrap interval that resamples
    whole groups: the days of real frames (frames of one day are near duplicates), the seeds of
    generated images (image k of every class shares its seed and position).

    >>> days = np.array(["d1", "d1", "d2", "d3"]); values = np.array([1.0, 1.0, 2.0, 3.0])
    >>> r = by_group(lambda rows: values[rows].mean(), days, n_boot=50)
    >>> r["value"], r["low"] <= r["value"] <= r["high"], r["n"], r["unit"]
    (1.75, True, [3], 'days')
    """
    return by_groups(statistic, groups, n_boot=n_boot, unit=unit, **kwargs)


def fine_structure_figures(images: np.ndarray, real_bands: np.ndarray, center, radius: float, groups,
                           unit: str = "days", block_cycles: float = BROWSE_BLOCK_CYCLES) -> dict:
    """Per channel and band the power ratio of ``images`` to the real frames' mean band power
    (``real_bands``: C, bands), the band-passed kurtosis and the JPEG block peak near
    ``block_cycles`` (``block_peak``; none for 0), each with its interval over ``groups``."""
    spectra = disk_power_spectrum(images, center, radius)
    bands = band_powers(spectra, BANDS, images.shape[-1])  # (N, C, B)
    kurtosis = band_passed_kurtosis(images, center, radius)  # (N, C)
    peak = block_peak(spectra, block_cycles) if block_cycles else None
    out = {}
    for c in range(images.shape[1]):
        out[f"channel_{c}"] = {
            "power_ratio": {f"{low}-{high}": by_group(
                lambda rows, b=b: float(bands[rows, c, b].mean() / real_bands[c, b]), groups, unit, bounds=(0, np.inf))
                for b, (low, high) in enumerate(BANDS)},
            "kurtosis": by_group(lambda rows: float(kurtosis[rows, c].mean()), groups, unit)}
        if peak is not None and np.isfinite(peak[:, c]).all():
            out[f"channel_{c}"]["block_peak"] = by_group(lambda rows: float(peak[rows, c].mean()), groups, unit,
                                                         bounds=(0, np.inf))
    return out


def rms(a, b) -> np.ndarray:
    """Per-image RMS difference of two (N, C, H, W) arrays."""
    return np.sqrt(((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).mean(axis=(1, 2, 3)))


def to_base(images: torch.Tensor, normalization, size: int) -> torch.Tensor:
    """Model-space images taken to ``size`` by the builder's operator, in the data unit (as the
    base model's training frames were made)."""
    data = normalization.inverse(images.float())
    if normalization.unit == "browse":
        data = data.round().clamp(0, 255).to(torch.uint8)
    return normalization.forward(downsample(data, size).float())


def super_resolve_frames(cascade, low: torch.Tensor, seed: int = 0, batch_size: int = 16, flares: list | None = None,
                         **settings) -> torch.Tensor:
    """Base-size frames ``low`` super-resolved by ``cascade`` in batches, frame k with seed
    ``seed + k`` (so every way of super-resolving the same frames draws the same noise), on the CPU;
    ``flares``: each frame's flares (``super_resolve``'s), None for none."""
    generator = [torch.Generator().manual_seed(seed + k) for k in range(len(low))]
    return torch.cat([cascade.super_resolve(low[i:i + batch_size], None if flares is None else flares[i:i + batch_size],
                                            generator[i:i + batch_size], **settings).cpu()
                      for i in range(0, len(low), batch_size)])


def generate(pipe, num_images: int, seed: int = 0, batch_size: int = 16, **upscaling):
    """``num_images`` per class of ``CLASSES`` (image k of each class: seed ``seed + k``), at the base
    size and super-resolved (``upscaling``: ``super_resolve``'s settings); returns the base images,
    the outputs, the seconds per output image and each image's flares (the pipeline's metadata,
    positions in pixels of the base size)."""
    base, high, seconds, all_flares = [], [], 0.0, []
    requests = [c for c in CLASSES for _ in range(num_images)]
    for start in range(0, len(requests), batch_size):
        chunk = requests[start:start + batch_size]
        generators = [torch.Generator().manual_seed(seed + (start + i) % num_images) for i in range(len(chunk))]
        began = time.perf_counter()
        out = pipe(chunk, generator=generators, output_type="model", image_size=pipe.unet.config.sample_size)
        flares = [m.get("flares", []) for m in out.metadata]
        up = pipe.super_resolve(out.images, flares, generators, **upscaling)
        seconds += time.perf_counter() - began
        base.append(out.images.cpu())
        high.append(up.cpu())
        all_flares += flares
    return torch.cat(base), torch.cat(high), seconds / len(requests), all_flares


def evaluate_cascade(pipe, dataset, split: str = "test", num_images: int = 32, real_limit: int = 256,
                     seed: int = 0, batch_size: int = 16, upscaler_steps: int | None = None,
                     noise_level: float | None = None, spread_seeds: int = 8, sweep_levels=(0.0, 0.05, 0.1, 0.2),
                     sweep_frames: int = 64, encoder=None, control=None, tile_frames: int = 16,
                     memorisation: bool = True, block_cycles: float = BROWSE_BLOCK_CYCLES,
                     distance_classes=DISTANCE_CLASSES) -> dict:
    """The cascade's figures (see the module docstring), sampled with ``upscaler_steps`` and
    ``noise_level`` (default: the model's ``upscaling``); the seed spread over ``spread_seeds`` seeds
    (``seed_spread``) and the noise-level sweep over the first ``sweep_frames`` real frames at
    ``sweep_levels`` (``noise_level_sweep``; none for an empty tuple); with ``encoder`` (a
    ``FlareClassifier`` trained at the output size) the distances in it (``encoder_section``); with
    ``control`` (a cascade of the same sizes, such as the L1 regression upscaler of
    ``train-upscaler --objective regression``) the real frames it super-resolves, as a control; over
    the first ``tile_frames`` real frames, whole frames against the upscaler run per crop-sized tile
    (``tile_comparison``; none for 0); with ``memorisation``, the generated images' distance to the
    training frames at the output size (``memorisation_section``). ``block_cycles``: where the
    source's JPEG blocks put power (``fine_structure.block_peak``; 0: not measured).
    ``distance_classes``: the classes the encoder's distances compare (``encoder_section``)."""
    upscaling = {"num_inference_steps": upscaler_steps, "noise_level": noise_level}
    size, base_size = pipe.upscaler.config.sample_size, pipe.unet.config.sample_size
    info = dataset_info(dataset)
    if info["config"]["size"] != size or info["unit"] != pipe.normalization.unit:
        raise ValueError(f"{dataset} holds {info['config']['size']} px {info['unit']!r} frames; this cascade makes "
                         f"{size} px {pipe.normalization.unit!r} images")
    if encoder is not None:
        check_encoder(encoder, pipe, size)
    if control is not None:
        check_control(control, pipe)
    norm, geometry = pipe.normalization, pipe.config.geometry
    center, radius = disk_center_px(geometry, size), rsun_px(geometry, size)
    raw, days = real_frames(dataset, split, real_limit, seed)
    real = norm.forward(raw.float())
    real_base = norm.forward(downsample(raw, base_size).float())
    real_spectra = disk_power_spectrum(real.numpy(), center, radius)
    real_bands = band_powers(real_spectra, BANDS, size).mean(axis=0)
    resolved = super_resolve_frames(pipe, real_base, seed, batch_size, **upscaling)
    controls = {"bicubic": bicubic(real_base, size),
                "bicubic_plus_shaped_noise": bicubic_plus_shaped_noise(real_base, size, real_spectra.mean(axis=0),
                                                                       center, radius, seed)}
    if control is not None:
        controls[CONTROL_UPSCALER] = super_resolve_frames(control, real_base, seed, batch_size)
    base, high, seconds, flares = generate(pipe, num_images, seed, batch_size, **upscaling)
    real_kurtosis = band_passed_kurtosis(real.numpy(), center, radius)
    generated_consistency = rms(to_base(high, norm, base_size), base)
    seeds = np.tile(np.arange(num_images), len(CLASSES)).astype(str)  # image k of each class: one seed
    report = {
        "settings": {"dataset": str(dataset), "split": split, "size": size, "base_size": base_size,
                     "num_images_per_class": num_images, "classes": list(CLASSES), "real_frames": len(real),
                     "real_days": int(len(np.unique(days))), "seed": seed,
                     "batch_size": batch_size, "spread_seeds": spread_seeds, "sweep_levels": list(sweep_levels),
                     "sweep_frames": sweep_frames, "tile_frames": tile_frames, "memorisation": memorisation,
                     "block_cycles": block_cycles, "distance_classes": list(distance_classes),
                     "upscaling": dict(pipe.config.upscaling) | {k: v for k, v in upscaling.items() if v is not None},
                     "bands_cycles_per_image": [list(b) for b in BANDS], "model": model_name(pipe.name_or_path),
                     "encoder": None if encoder is None else model_name(encoder.config.get("_name_or_path") or ""),
                     "control_upscaler": None if control is None else model_name(control.name_or_path or ""),
                     "wavelengths_angstrom": list(pipe.config.geometry.get("wavelengths_angstrom") or [])},
        "real": {"kurtosis": {f"channel_{c}": by_group(lambda rows, c=c: float(real_kurtosis[rows, c].mean()), days)
                              for c in range(real.shape[1])}},
        "generated": fine_structure_figures(high.numpy(), real_bands, center, radius, seeds, "seeds", block_cycles)
        | {"consistency_rms": by_group(lambda rows: float(generated_consistency[rows].mean()), seeds, "seeds",
                                       bounds=(0, np.inf))},
        "super_resolved": {}, "seconds_per_generated_image": seconds,
        "flare_signature": flare_signature_section(pipe, high, flares, num_images, dataset, seed),
        "seed_spread": seed_spread(pipe, real_base, real, center, radius, spread_seeds, **upscaling),
        "tiles": tile_comparison(pipe, real_base[:tile_frames], real[:tile_frames], real_bands, center, radius,
                                 int(pipe.config.upscaling.get("crop_px", size // 4)), batch_size, seed,
                                 **upscaling) if tile_frames else None,
        "noise_level_sweep": noise_level_sweep(pipe, real_base[:sweep_frames], real[:sweep_frames], real_bands, center,
                                               radius, sweep_levels, batch_size, seed, upscaler_steps,
                                               base[sweep_subset(num_images, sweep_frames)],
                                               [flares[k] for k in sweep_subset(num_images, sweep_frames)])}
    if block_cycles:
        real_peak = block_peak(real_spectra, block_cycles)
        if np.isfinite(real_peak).all():
            report["real"]["block_peak"] = {
                f"channel_{c}": by_group(lambda rows, c=c: float(real_peak[rows, c].mean()), days, bounds=(0, np.inf))
                for c in range(real.shape[1])}
    if memorisation:
        report["memorisation"] = memorisation_section(pipe, dataset, high, seeds, real, days, num_images)
    if encoder is not None:
        report["encoder"] = encoder_section(encoder, pipe, dataset, split, high, np.repeat(CLASSES, num_images), seeds,
                                            real_spectra.mean(axis=0), {"real": real, "upscaler": resolved, **controls},
                                            days, num_images, seed, batch_size, control, distance_classes,
                                            **upscaling)
    for name, images in {"upscaler": resolved, **controls}.items():
        to_original, consistency = rms(images, real), rms(to_base(images, norm, base_size), real_base)
        report["super_resolved"][name] = fine_structure_figures(images.numpy(), real_bands, center, radius, days,
                                                                block_cycles=block_cycles) | {
            "rms_to_original": by_group(lambda rows, x=to_original: float(x[rows].mean()), days, bounds=(0, np.inf)),
            "consistency_rms": by_group(lambda rows, x=consistency: float(x[rows].mean()), days, bounds=(0, np.inf))}
    return report


def memorisation_section(pipe, dataset, high: torch.Tensor, seeds: np.ndarray, real: torch.Tensor, days: np.ndarray,
                         num_images: int) -> dict:
    """Memorisation at the output size (the flare evaluation's (c)): per class, the median RMS
    distance of the generated images (``high``: ``num_images`` per class of ``CLASSES``) to their
    nearest training frame at this size, over that of the real frames of the split (``real``,
    months the models never saw), with intervals over seeds and days; plain, and with the training
    frames' flips searched on both sides (a base trained with flips may redraw a flipped day).
    Near 1: as far from the training days as new real days are; well below 1: copies."""
    raw, _ = real_frames(dataset, "train", limit=10**9)  # every training frame
    train = torch.cat([pipe.normalization.forward(raw[i:i + 256].float()) for i in range(0, len(raw), 256)])
    del raw
    out = {"train_frames": len(train), "held_out_frames": len(real), "classes": {}}
    for search, flips in (("plain", False), ("with_flips", True)):
        generated, held_out = nearest_distances(high, train, flips=flips), nearest_distances(real, train, flips=flips)
        out[f"real_median_{search}"] = by_group(lambda rows, x=held_out: float(np.median(x[rows])), days,
                                                bounds=(0, np.inf))
        for k, c in enumerate(CLASSES):
            mine = generated[k * num_images:(k + 1) * num_images]
            out["classes"].setdefault(c, {})[f"over_real_{search}"] = by_groups(
                lambda g, r, mine=mine, held_out=held_out: float(np.median(mine[g]) / np.median(held_out[r])),
                seeds[k * num_images:(k + 1) * num_images], days, bounds=(0, np.inf), unit="seeds/days")
    return out


def class_frames(dataset, split: str, classes, per_class: int, seed: int = 0):
    """Up to ``per_class`` frames of each of ``classes`` from a split (drawn without replacement),
    as stored, with the day and the class of each."""
    ds = load_split(dataset, split, columns=("image", "t_obs", "flare_class"))
    names = np.asarray(ds.features["flare_class"].names)[np.asarray(ds["flare_class"])]
    rng = np.random.default_rng(seed)
    picked = np.sort(np.concatenate([rng.choice(np.flatnonzero(names == c), min(per_class, int((names == c).sum())),
                                                replace=False) for c in classes]).astype(int))
    rows = [ds[int(i)] for i in picked]
    raw = torch.from_numpy(np.stack([np.asarray(row["image"]) for row in rows]))
    return raw, np.array([str(row["t_obs"])[:10] for row in rows]), names[picked]


def check_control(control, pipe):
    """Refuse a control cascade that cannot super-resolve this cascade's base frames (no upscaler,
    other sizes, channels or normalisation)."""
    name = model_name(control.name_or_path or "") or "the control"
    if control.upscaler is None:
        raise ValueError(f"{name} has no upscaler: a control takes {pipe.unet.config.sample_size} px frames to "
                         f"{pipe.upscaler.config.sample_size} px")
    made = (control.unet.config.sample_size, control.upscaler.config.sample_size, control.upscaler.config.out_channels)
    wanted = (pipe.unet.config.sample_size, pipe.upscaler.config.sample_size, pipe.upscaler.config.out_channels)
    if made != wanted or control.normalization.to_dict() != pipe.normalization.to_dict():
        raise ValueError(f"{name} takes {made[0]} px to {made[1]} px ({made[2]} channels, "
                         f"{control.normalization.unit!r}); this cascade {wanted[0]} px to {wanted[1]} px "
                         f"({wanted[2]} channels, {pipe.normalization.unit!r})")


def check_encoder(encoder, pipe, size: int):
    """Refuse an encoder that cannot judge this cascade's outputs (another size, unit or channels)."""
    config = encoder.config
    if config.sample_size != size or encoder.normalization.to_dict() != pipe.normalization.to_dict() \
            or config.in_channels != pipe.unet.config.out_channels:
        raise ValueError(f"the encoder reads {config.sample_size} px {config.in_channels}-channel "
                         f"{encoder.normalization.unit!r} images; this cascade makes {size} px "
                         f"{pipe.unet.config.out_channels}-channel {pipe.normalization.unit!r} ones: train one on the "
                         "output-size build (train_classifier.py --degradations)")


def class_matched(labels_of: dict, classes, seed: int = 0) -> dict:
    """For each set (name -> its images' class labels), the rows to keep so that every set holds
    the same number of each class (the smallest over the sets), drawn at random within a class.

    >>> rows = class_matched({"a": np.array(["q", "q", "C"]), "b": np.array(["C", "q", "C"])}, ["q", "C"])
    >>> {k: len(v) for k, v in rows.items()}
    {'a': 2, 'b': 2}
    """
    rng = np.random.default_rng(seed)
    counts = {c: min(int((np.asarray(v) == c).sum()) for v in labels_of.values()) for c in classes}
    return {name: np.sort(np.concatenate([rng.permutation(np.flatnonzero(np.asarray(v) == c))[:counts[c]]
                                          for c in classes]).astype(int)) for name, v in labels_of.items()}


def encoder_section(encoder, pipe, dataset, split: str, generated: torch.Tensor, generated_labels, generated_seeds,
                    real_spectrum, originals: dict, days, per_class: int = 32, seed: int = 0, batch_size: int = 16,
                    control=None, classes=DISTANCE_CLASSES, **upscaling) -> dict:
    """Fréchet distances in an encoder trained at the output size, over ``classes`` with
    the same number of each class in every set (``class_matched``; up to ``per_class``): against
    real ``split`` frames, the real train frames (the floor), the generated images, and train frames
    taken to the base size and brought back by the upscaler, bicubic, bicubic plus shaped noise
    (``real_spectrum``) and the ``control`` cascade's upscaler where given; each interval resamples
    whole days of real frames and whole seeds of generated images (``fidelity.by_groups``). The
    checks: generated at most the floor's upper end, bicubic and shaped noise above it. Then, paired
    per frame, how far each way of super-resolving ``originals`` (name -> images; the real frames
    first, as ``"real"``) lands from the real frame in the encoder (interval over ``days``), and the
    upscaler's difference to each other way. The train frames are those the encoder and the
    upscaler were trained on, so the floor and the upscaler's row are as favourable as can be."""
    from solar_diffusion.metrics import frechet_distance

    size, base_size, norm = generated.shape[-1], pipe.unet.config.sample_size, pipe.normalization
    check_encoder(encoder, pipe, size)
    center, radius = disk_center_px(pipe.config.geometry, size), rsun_px(pipe.config.geometry, size)
    unknown = sorted(set(classes) - set(CLASSES))
    if unknown or not classes:
        raise ValueError(f"distance classes {list(classes)}: the generated images are of {', '.join(CLASSES)}")
    test_raw, test_days, test_labels = class_frames(dataset, split, classes, per_class, seed)
    train_raw, train_days, train_labels = class_frames(dataset, "train", classes, per_class, seed + 1)
    rows = class_matched({"test": test_labels, "train": train_labels, "generated": np.asarray(generated_labels)},
                         classes, seed)
    if not all(len(r) for r in rows.values()):
        raise ValueError(f"{dataset}: no {', '.join(classes)} frames in one of {split} and train to compare")
    test_raw, test_days, test_labels = test_raw[rows["test"]], test_days[rows["test"]], test_labels[rows["test"]]
    train_raw, train_days = train_raw[rows["train"]], train_days[rows["train"]]
    train_base = norm.forward(downsample(train_raw, base_size).float())

    sets = {"real_train": (norm.forward(train_raw.float()), train_days),
            "generated": (generated[rows["generated"]], np.asarray(generated_seeds)[rows["generated"]]),
            "upscaler": (super_resolve_frames(pipe, train_base, seed, batch_size, **upscaling), train_days), "bicubic": (bicubic(train_base, size), train_days),
            "bicubic_plus_shaped_noise": (bicubic_plus_shaped_noise(train_base, size, real_spectrum, center, radius,
                                                                    seed), train_days)}
    if control is not None:
        sets[CONTROL_UPSCALER] = (super_resolve_frames(control, train_base, seed, batch_size), train_days)
    real = encoder.embed_images(norm.forward(test_raw.float()))
    frechet = {}
    for name, (images, groups) in sets.items():
        features = encoder.embed_images(images)
        frechet[name] = by_groups(lambda a, b, f=features: frechet_distance(f[a], real[b]), groups, test_days,
                                  seed=seed, bounds=(0, np.inf), unit="days or seeds/days")
    section = {"classes": list(classes), "n": len(test_raw), "real_split": split,
               "per_class": {c: int((test_labels == c).sum()) for c in classes},
               "frechet_distance": frechet,
               "checks": {"generated_within_floor": bool(frechet["generated"]["value"] <= frechet["real_train"]["high"]),
                          "controls_outside_floor": bool(all(frechet[c]["value"] > frechet["real_train"]["high"]
                                                             for c in ("bicubic", "bicubic_plus_shaped_noise")))}}
    features = {name: encoder.embed_images(images) for name, images in originals.items()}
    reference = features.pop("real")
    distance = {name: np.linalg.norm(f - reference, axis=1) for name, f in features.items()}
    section["distance_to_original"] = {name: by_group(lambda rows, d=d: float(d[rows].mean()), days, bounds=(0, np.inf))
                                       for name, d in distance.items()}
    section["upscaler_minus_control"] = {
        name: by_group(lambda rows, d=distance["upscaler"] - d: float(d[rows].mean()), days)
        for name, d in distance.items() if name != "upscaler"}
    return section


#: The flare signature at the output size: the brightest ``SIGNATURE_BOX_PX`` square within
#: ``SIGNATURE_RADIUS_PX`` of the position, at 256 px (scaled with the size): the base model's 3x3
#: within 1.5 px at 64 px, four times finer.
SIGNATURE_BOX_PX, SIGNATURE_RADIUS_PX = 5, 6.0


def signature_positions(flares: list, num_images: int, base_size: int, size: int) -> np.ndarray:
    """(N, 2) pixel positions at ``size`` of each generated image's flare (the largest); a quiet
    image takes the position of the flaring image with its seed (image k of every class shares
    its seed and so its drawn position)."""
    where = [None if not f else rescale_px(np.asarray(max(f, key=lambda x: x["log10_peak_flux_goes_r"])["position_px"],
                                                      dtype=np.float64), base_size, size) for f in flares]
    for i, p in enumerate(where):
        if p is None:
            twins = [where[j] for j in range(i % num_images, len(where), num_images) if where[j] is not None]
            where[i] = twins[0] if twins else np.full(2, np.nan)
    return np.stack(where)


def flare_signature_section(pipe, high: torch.Tensor, flares: list, num_images: int, dataset, seed: int,
                            splits=("train", "validation", "test")) -> dict:
    """The flare's signature at the output size per class and channel (``flare_signature`` with
    ``SIGNATURE_BOX_PX`` / ``SIGNATURE_RADIUS_PX``), generated (interval over seeds) against real
    frames of ``splits`` of ``dataset`` at their HEK positions (interval over days), and the checks:
    M within the real M interval, quiet < C < M (generated means), per channel."""
    size, base_size = high.shape[-1], pipe.unet.config.sample_size
    radius, box = SIGNATURE_RADIUS_PX * size / 256, max(1, round(SIGNATURE_BOX_PX * size / 256)) | 1
    positions = signature_positions(flares, num_images, base_size, size)
    generated = flare_signature(high.numpy(), positions, radius, box)
    labels = np.repeat(CLASSES, num_images)
    seeds = np.tile(np.arange(num_images), len(CLASSES)).astype(str)
    names = [f"{w:g}" for w in pipe.config.geometry.get("wavelengths_angstrom") or range(high.shape[1])]
    real = {}
    for split in splits:
        try:
            frames = real_flare_frames(dataset, split, pipe, [c for c in CLASSES if c != "quiet"], size)
        except ValueError as error:  # a build without that split
            if "no split" not in str(error):
                raise
            continue
        for c, (images, where, days) in frames.items():
            sig = flare_signature(images.numpy(), where, radius, box)
            real[c] = (np.concatenate([real[c][0], sig]), np.concatenate([real[c][1], days])) if c in real else (sig, days)
    section = {"radius_px": radius, "box_px": box, "channels": names, "real_splits": list(splits), "classes": {}}
    for c in CLASSES:
        keep = labels == c
        row = {"generated": {w: by_group(lambda rows, k=k: float(generated[keep][rows, k].mean()), seeds[keep], "seeds",
                                         seed=seed) for k, w in enumerate(names)}}
        if c in real:
            values, days = real[c]
            row["real_at_hek_positions"] = {w: by_group(lambda rows, k=k: float(values[rows, k].mean()), days,
                                                        seed=seed) for k, w in enumerate(names)}
        section["classes"][c] = row
    checks = {}
    for w in names:
        means = [section["classes"][c]["generated"][w]["value"] for c in ("quiet", "C", "M")]
        real_m = section["classes"]["M"].get("real_at_hek_positions", {}).get(w)
        m = section["classes"]["M"]["generated"][w]["value"]
        checks[w] = {"ordered": bool(means[0] < means[1] < means[2]),
                     "m_within_real": None if real_m is None else bool(real_m["low"] <= m <= real_m["high"])}
    section["checks"] = checks
    return section


def seed_spread(pipe, real_base: torch.Tensor, real: torch.Tensor, center, radius: float, seeds: int = 8,
                frames: int = 4, **upscaling) -> dict:
    """What detail the upscaler invents: for each of ``frames`` real base frames super-resolved with
    ``seeds`` seeds, the per-pixel standard deviation over the seeds inside 0.9 R_sun, per channel,
    as a fraction of the real frames' own fine structure there (the RMS of the real frame less its
    bicubic upsampling). 0: every seed draws the same detail; 1: the seeds differ by as much detail
    as the real frames hold."""
    size = real.shape[-1]
    yy, xx = np.mgrid[:size, :size]
    inside = torch.from_numpy(np.hypot(xx - center[0], yy - center[1]) <= 0.9 * radius)
    spread, detail = [], []
    for k in range(min(frames, len(real_base))):
        low = real_base[k:k + 1].expand(seeds, -1, -1, -1)
        outputs = pipe.super_resolve(low, None, [torch.Generator().manual_seed(s) for s in range(seeds)], **upscaling)
        spread.append(outputs.float().std(dim=0)[:, inside].mean(dim=-1))
        detail.append((real[k] - bicubic(real_base[k:k + 1], size)[0])[:, inside].square().mean(dim=-1).sqrt())
    spread, detail = torch.stack(spread).mean(0), torch.stack(detail).mean(0)
    return {"seeds": seeds, "frames": min(frames, len(real_base)),
            "spread": [float(v) for v in spread], "real_detail_rms": [float(v) for v in detail],
            "spread_over_real_detail": [float(v) for v in spread / detail]}


def noise_level_sweep(pipe, real_base: torch.Tensor, real: torch.Tensor, real_bands: np.ndarray, center,
                      radius: float, levels=(0.0, 0.05, 0.1, 0.2), batch_size: int = 16, seed: int = 0,
                      num_inference_steps: int | None = None, generated_base: torch.Tensor | None = None,
                      generated_flares: list | None = None) -> list:
    """Real base frames super-resolved at each noise-augmentation level of sampling: RMS to the
    originals, consistency RMS, and per channel the power ratio of the two finest bands and the
    band-passed kurtosis (point estimates over the frames). With ``generated_base`` (generated base
    images, ``generated_flares`` their flares) the same figures but the RMS for them, under
    ``"generated"``: the base model's images are what the default serves, and its grain is not
    the real frames' (image k super-resolved with seed ``seed + k``).

    A level that is right for real frames can be wrong for generated ones: at 0.05 the bundled
    upscaler gave real test frames a band-passed 171 Å kurtosis closer to real than bicubic
    upsampling's, and generated images one below bicubic's."""
    norm, base_size = pipe.normalization, real_base.shape[-1]

    def figures(images, base):
        bands = band_powers(disk_power_spectrum(images.numpy(), center, radius), BANDS, images.shape[-1]).mean(0)
        return {"consistency_rms": float(rms(to_base(images, norm, base_size), base).mean()),
                "power_ratio": {f"{low}-{high}": [float(v) for v in bands[:, b] / real_bands[:, b]]
                                for b, (low, high) in enumerate(BANDS) if b >= len(BANDS) - 2},
                "kurtosis": [float(v) for v in band_passed_kurtosis(images.numpy(), center, radius).mean(0)]}

    rows = []
    for level in levels:
        settings = {"noise_level": level, "num_inference_steps": num_inference_steps}
        images = super_resolve_frames(pipe, real_base, seed, batch_size, **settings)
        row = {"noise_level": float(level), "rms_to_original": float(rms(images, real).mean())} | figures(images, real_base)
        if generated_base is not None:
            generated = super_resolve_frames(pipe, generated_base, seed, batch_size, generated_flares, **settings)
            row["generated"] = figures(generated, generated_base)
        rows.append(row)
    return rows


def sweep_subset(num_images: int, frames: int) -> np.ndarray:
    """Which generated images (``num_images`` per class of ``CLASSES``, in class order) the noise-level
    sweep takes for ``frames`` images: the first of every class in turn.

    >>> sweep_subset(32, 6).tolist()
    [0, 32, 64, 96, 1, 33]
    """
    order = np.arange(num_images * len(CLASSES)).reshape(len(CLASSES), num_images).T.ravel()
    return order[:min(frames, len(order))]


class TiledUpscaler(torch.nn.Module):
    """An upscaler applied to each ``tile_px`` square of its input on its own (as it was trained, on
    crops) and stitched back: ``tile_comparison`` measures what its normalisation layers' statistics
    over a whole frame (dark sky and limb included) change. Measurement only; the pipeline runs
    whole frames."""

    def __init__(self, unet, tile_px: int):
        super().__init__()
        self.unet, self.tile_px, self.config = unet, tile_px, unet.config

    @property
    def dtype(self):
        return self.unet.dtype

    def forward(self, x, t, class_labels=None):
        n, channels, size, _ = x.shape
        k, tile = size // self.tile_px, self.tile_px
        tiles = x.reshape(n, channels, k, tile, k, tile).permute(0, 2, 4, 1, 3, 5).reshape(n * k * k, channels, tile, tile)
        out = self.unet(tiles, t, class_labels=None if class_labels is None else class_labels.repeat_interleave(k * k))
        sample = out.sample
        sample = sample.reshape(n, k, k, -1, tile, tile).permute(0, 3, 1, 4, 2, 5).reshape(n, -1, size, size)
        return type(out)(sample=sample)


def tile_comparison(pipe, real_base: torch.Tensor, real: torch.Tensor, real_bands: np.ndarray, center, radius: float,
                    tile_px: int = 64, batch_size: int = 16, seed: int = 0, **upscaling) -> dict:
    """Real base frames super-resolved whole and with the upscaler run per ``tile_px`` tile
    (``TiledUpscaler``), same seeds: per channel the band-passed kurtosis and the power ratio of the
    two finest bands, and the RMS to the originals (point estimates over the frames)."""
    if pipe.upscaler.config.sample_size % tile_px:
        raise ValueError(f"tiles of {tile_px} px do not divide the {pipe.upscaler.config.sample_size} px output")
    rows = {}
    whole = pipe.upscaler
    for name, upscaler in {"whole_frame": whole, f"tiles_{tile_px}px": TiledUpscaler(whole, tile_px)}.items():
        object.__setattr__(pipe, "upscaler", upscaler)  # not a new component: the pipeline's config stays
        try:
            images = super_resolve_frames(pipe, real_base, seed, batch_size, **upscaling)
        finally:
            object.__setattr__(pipe, "upscaler", whole)
        bands = band_powers(disk_power_spectrum(images.numpy(), center, radius), BANDS, images.shape[-1]).mean(0)
        rows[name] = {"rms_to_original": float(rms(images, real).mean()),
                      "power_ratio": {f"{low}-{high}": [float(v) for v in bands[:, b] / real_bands[:, b]]
                                      for b, (low, high) in enumerate(BANDS) if b >= len(BANDS) - 2},
                      "kurtosis": [float(v) for v in band_passed_kurtosis(images.numpy(), center, radius).mean(0)]}
    return {"tile_px": tile_px, "frames": len(real_base), "rows": rows}


def _cell(figure: dict) -> str:
    return f"{figure['value']:.3g} [{figure['low']:.3g}, {figure['high']:.3g}]"


def report_lines(report: dict) -> list[str]:
    """The report's tables in markdown: power ratio per band and channel, structure, consistency,
    for generated images, super-resolved real frames and the two controls."""
    settings = report["settings"]
    names = [f"{int(w)} Å" for w in settings["wavelengths_angstrom"]] or \
        [c.removeprefix("channel_") for c in report["real"]["kurtosis"]]
    bands = [f"{a}-{b}" for a, b in settings["bands_cycles_per_image"]]
    rows = {"generated": report["generated"], **{f"real {settings['base_size']} px super-resolved by "
                                                 + name.replace("_", " "): r
                                                 for name, r in report["super_resolved"].items()}}
    lines = [f"# The cascade at {settings['size']} px", "",
             f"{settings['model']}; {settings['num_images_per_class']} generated images per class "
             f"({', '.join(settings['classes'])}; intervals over seeds) and {settings['real_frames']} real "
             f"{settings['split']} frames of {settings['real_days']} days (intervals over days), 95% bootstrap "
             f"intervals; upscaler settings {settings['upscaling']}.", "",
             "## Power ratio to the real frames, inside 0.9 R_sun (cycles per image)", "",
             "| images | channel | " + " | ".join(bands) + " | band-passed kurtosis (real: "
             + ", ".join(f"{n} {_cell(k)}" for n, k in zip(names, report["real"]["kurtosis"].values())) + ") |",
             "|---|---|" + "---|" * (len(bands) + 1)]
    for label, figures in rows.items():
        for name, channel in zip(names, [k for k in figures if k.startswith("channel_")]):
            cells = [_cell(figures[channel]["power_ratio"][b]) for b in bands]
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + f" | {_cell(figures[channel]['kurtosis'])} |")
    lines += ["", "## Consistency and distance", "", "| images | consistency RMS (down to the base size) "
              "| RMS to the real originals |", "|---|---|---|"]
    for label, figures in rows.items():
        to_original = _cell(figures["rms_to_original"]) if "rms_to_original" in figures else "-"
        lines.append(f"| {label} | {_cell(figures['consistency_rms'])} | {to_original} |")
    real_peak = report["real"].get("block_peak")
    if real_peak:
        shows = [n for n, v in zip(names, real_peak.values()) if v["low"] > 1]
        lines += ["", f"## The browse JPEG blocks: power within 2 of {settings['block_cycles']:g} cycles per image over "
                  "its flanks (1: no peak)", "",
                  "| images | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
                  "| real | " + " | ".join(_cell(v) for v in real_peak.values()) + " |"]
        lines += [f"| {label} | " + " | ".join(_cell(figures[c]["block_peak"]) for c in real_peak) + " |"
                  for label, figures in rows.items() if all("block_peak" in figures[c] for c in real_peak)]
        lines += ["", f"The peak shows in the real frames (interval above 1) in: {', '.join(shows) or 'no channel'}."]
    lines += encoder_lines(report.get("encoder"), settings)
    signature = report.get("flare_signature")
    if signature:
        lines += ["", f"## The flare at {settings['size']} px: brightest {signature['box_px']}x{signature['box_px']} "
                  f"pixels within {signature['radius_px']:g} px of the position (0-1 of the range)", "",
                  "| class | images | " + " | ".join(f"{w} Å" for w in signature["channels"]) + " |",
                  "|---|---|" + "---|" * len(signature["channels"])]
        for c, row in signature["classes"].items():
            for kind, figures in row.items():
                lines.append(f"| {c} | {kind.replace('_', ' ')} | "
                             + " | ".join(_cell(figures[w]) for w in signature["channels"]) + " |")
        lines += ["", "Checks: " + "; ".join(f"{w} Å ordered quiet < C < M {c['ordered']}, M within real "
                                             f"{c['m_within_real']}" for w, c in signature["checks"].items()) + "."]
    spread = report.get("seed_spread")
    if spread:
        lines += ["", f"## Invented detail: {spread['seeds']} seeds of one base frame ({spread['frames']} real frames)",
                  "", "| channel | per-pixel spread over the seeds | real fine structure (RMS less bicubic) | ratio |",
                  "|---|---|---|---|"]
        lines += [f"| {n} | {a:.3g} | {b:.3g} | {r:.2f} |" for n, a, b, r in
                  zip(names, spread["spread"], spread["real_detail_rms"], spread["spread_over_real_detail"])]
    memo = report.get("memorisation")
    if memo:
        lines += ["", f"## Copies? Distance to the nearest training frame at {settings['size']} px", "",
                  f"Median RMS distance of each class's generated images to the nearest of the {memo['train_frames']} "
                  f"training frames, over that of {memo['held_out_frames']} real {settings['split']} frames (1: as new "
                  f"as a day never seen; intervals over seeds and days). Real {settings['split']} frames' median: "
                  f"{_cell(memo['real_median_plain'])}; with flips searched {_cell(memo['real_median_with_flips'])}.", "",
                  "| class | over real | over real, flips searched |", "|---|---|---|"]
        lines += [f"| {c} | {_cell(row['over_real_plain'])} | {_cell(row['over_real_with_flips'])} |"
                  for c, row in memo["classes"].items()]
    tiles = report.get("tiles")
    if tiles:
        fine = list(next(iter(tiles["rows"].values()))["power_ratio"])
        lines += ["", f"## Whole frames against {tiles['tile_px']} px tiles (the training crops' size; "
                  f"{tiles['frames']} real frames, point estimates)", "",
                  "| upscaler run on | RMS to the originals | "
                  + " | ".join(f"power ratio {b} ({', '.join(names)})" for b in fine) + " | kurtosis |",
                  "|---|---|" + "---|" * (len(fine) + 1)]
        for name, row in tiles["rows"].items():
            lines.append(f"| {name.replace('_', ' ')} | {row['rms_to_original']:.4f} | "
                         + " | ".join(", ".join(f"{v:.2f}" for v in row["power_ratio"][b]) for b in fine)
                         + " | " + ", ".join(f"{v:.2f}" for v in row["kurtosis"]) + " |")
    sweep = report.get("noise_level_sweep")
    if sweep:
        fine = list(sweep[0]["power_ratio"])
        lines += ["", "## Noise augmentation at sampling (real base frames super-resolved; point estimates)", "",
                  "| noise level | RMS to the originals | consistency RMS | "
                  + " | ".join(f"power ratio {b} ({', '.join(names)})" for b in fine) + " | kurtosis |",
                  "|---|---|---|" + "---|" * (len(fine) + 1)]
        for row in sweep:
            lines.append(f"| {row['noise_level']:g} | {row['rms_to_original']:.4f} | {row['consistency_rms']:.4f} | "
                         + " | ".join(", ".join(f"{v:.2f}" for v in row["power_ratio"][b]) for b in fine)
                         + " | " + ", ".join(f"{v:.2f}" for v in row["kurtosis"]) + " |")
        if "generated" in sweep[0]:
            taken = min(settings["sweep_frames"], settings["num_images_per_class"] * len(settings["classes"]))
            lines += ["", f"Generated base images (the first of each class in turn, {taken}) "
                      "super-resolved at each level:", "",
                      "| noise level | consistency RMS | "
                      + " | ".join(f"power ratio {b} ({', '.join(names)})" for b in fine) + " | kurtosis |",
                      "|---|---|" + "---|" * (len(fine) + 1)]
            for row in sweep:
                g = row["generated"]
                lines.append(f"| {row['noise_level']:g} | {g['consistency_rms']:.4f} | "
                             + " | ".join(", ".join(f"{v:.2f}" for v in g["power_ratio"][b]) for b in fine)
                             + " | " + ", ".join(f"{v:.2f}" for v in g["kurtosis"]) + " |")
    lines += ["", f"Seconds per generated {settings['size']} px image (base stage included, batches of the run): "
              f"{report['seconds_per_generated_image']:.2f}."]
    return lines


def encoder_lines(section: dict | None, settings: dict) -> list[str]:
    """The output-size encoder's tables (``encoder_section``), or a line saying none was given."""
    if section is None:
        return ["", f"No {settings['size']} px encoder was given (``--encoder``, or the model's "
                f"evaluation_encoder_{settings['size']}px): no Fréchet distance at this size."]
    base, n = settings["base_size"], section["n"]
    names = {"real_train": "real train frames (the floor)", "generated": "generated",
             **{k: f"real train frames at {base} px super-resolved by {k.replace('_', ' ')}"
                for k in ("upscaler", "bicubic", "bicubic_plus_shaped_noise", CONTROL_UPSCALER)}}
    per_class = ", ".join(f"{k} {c}" for c, k in section["per_class"].items())
    lines = ["", f"## Fréchet distance in a {settings['size']} px encoder ({per_class} of each set; "
             f"n = {n} against {n} real {section['real_split']} frames; intervals resample days and seeds)", "",
             "| images | Fréchet distance |", "|---|---|"]
    lines += [f"| {names[k]} | {_cell(v)} |" for k, v in section["frechet_distance"].items()]
    checks = section["checks"]
    lines += ["", f"Checks: generated within the floor's interval {checks['generated_within_floor']}; both controls "
              f"outside it {checks['controls_outside_floor']}.", "",
              f"| real {base} px frames super-resolved by | encoder distance to the originals | upscaler minus this |",
              "|---|---|---|"]
    for k, v in section["distance_to_original"].items():
        diff = section["upscaler_minus_control"].get(k)
        lines.append(f"| {k.replace('_', ' ')} | {_cell(v)} | {_cell(diff) if diff else '-'} |")
    return lines


def write_report(report: dict, out) -> Path:
    """``out/metrics.json`` and ``out/report.md``; returns the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text("\n".join(report_lines(report)) + "\n"))
    return out / "report.md"
