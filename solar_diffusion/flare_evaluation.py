"""What ``evaluate`` adds for a flare model (``conditioning == "flare"``): is the flare there?

A flare model is asked for each class at the same positions with the same seeds (image k of
every class: seed ``seed + k``, the k-th of ``num_positions`` positions drawn from the training
flares, so quiet, C, M and X differ only in the request). Measured per channel:

* ``signature`` (a): the brightest 3x3 pixels within 1.5 px of the requested position
  (``flare_signature``; a fraction of the normalised range, for browse frames the 8-bit range),
  and the same over the disk's 99th percentile, against real frames of the whole dataset with a
  flare of that class in progress at their HEK positions and against real frames without a
  flare at the requested positions (95% intervals of the mean);
* ``moved`` (b): the same seeds asked at two positions: the brightening at a position when the
  flare is asked there, minus when it is asked at the other one;
* ``memorisation`` (c): each image's RMS distance (model space) to its nearest training frame,
  against the same for real frames of months the model never saw (the evaluated split) and for
  real training frames against training frames of other days (over 3 days away);
* ``diversity`` (d): the RMS distance between images of the same request (same class and
  position, other seeds), and between real frames of the split;
* ``away`` (e): the disk's 99th percentile outside 4 px of the requested positions, against real
  frames of the split at the same positions (the pooled feature distances of ``evaluate`` stay);
* ``fidelity`` (f): the fidelity issue's figures (``solar_diffusion.fidelity``): the disk's power
  per band generated / real, the 171 Å pit beside M and X flares, very bright 171 Å pixels of M
  and X images over quiet ones', colour speckle and the limb, with intervals over seeds and days,
  and its ``checks`` (``fidelity.fidelity_check``). Memorisation (c) also searches the flipped
  training frames, under keys of their own.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from solar_diffusion import evaluation_keys as keys
from solar_diffusion import fidelity
from solar_diffusion.pipelines import (
    QUIET_LABEL,
    arcsec_to_pixels,
    disk_center_px,
    disk_mask,
    draw_flare_position,
    rsun_px,
)
from solar_diffusion.splits import dataset_info, frame_flare_inputs, load_split, resize
from solar_diffusion.times import utc_times

#: Pixels of the requested position searched for the brightest 3x3 (the issue's 1.5 px).
SIGNATURE_RADIUS_PX = 1.5
#: Pixels around a requested position left out of the "away" statistic.
AWAY_RADIUS_PX = 4.0


def flare_signature(images, positions_px, radius_px: float = SIGNATURE_RADIUS_PX, box: int = 3) -> np.ndarray:
    """(N, C): per image and channel, the largest mean of ``box`` x ``box`` pixels centred within
    ``radius_px`` of the image's position (x = column, y = row), on the [0, 1] scale of model space.

    >>> x = -np.ones((1, 2, 16, 16), np.float32); x[0, 1, 8, 5] = 1.0  # one bright pixel, channel 1
    >>> flare_signature(x, [(5.0, 8.0)]).round(3).tolist(), flare_signature(x, [(5.0, 8.0)], box=5).round(3).tolist()
    ([[0.0, 0.111]], [[0.0, 0.04]])
    """
    x = (torch.as_tensor(np.asarray(images), dtype=torch.float32) + 1) / 2
    means = torch.nn.functional.avg_pool2d(x, box, stride=1, padding=box // 2, count_include_pad=False).numpy()
    size = x.shape[-1]
    rows, cols = np.mgrid[:size, :size]
    out = np.empty(x.shape[:2])
    for k, (px, py) in enumerate(np.asarray(positions_px, dtype=np.float64)):
        near = np.hypot(cols - px, rows - py) <= radius_px
        if not near.any():  # a position between pixel centres farther than the radius: its nearest pixel
            near[int(np.clip(round(py), 0, size - 1)), int(np.clip(round(px), 0, size - 1))] = True
        out[k] = means[k][:, near].max(axis=1)
    return out


def disk_percentile(images, mask, q: float = 99.0) -> np.ndarray:
    """(N, C): the ``q`` percentile of each image's pixels inside ``mask`` (one (H, W) boolean, or
    one per image), on the [0, 1] scale of model space."""
    x = (np.asarray(images, dtype=np.float64) + 1) / 2
    masks = np.broadcast_to(np.asarray(mask, bool), (len(x),) + x.shape[-2:])
    return np.array([[np.percentile(image[c][m], q) for c in range(x.shape[1])] for image, m in zip(x, masks)])


#: The orientations of a training frame that the nearest-frame search tries with ``flips``: as
#: stored, flipped left-right, up-down, and both (turned by 180 degrees); the dims to flip.
ORIENTATIONS = {"as stored": None, "left-right": (-1,), "up-down": (-2,), "both": (-2, -1)}


def nearest_frames(images, reference, batch: int = 256, flips: bool = False, rows: slice | None = None) -> tuple:
    """Each image's nearest ``reference`` image: its index, its orientation (a key of
    ``ORIENTATIONS``; "as stored" without ``flips``) and the RMS distance (model space, all pixels
    and channels; only the image rows ``rows`` where given, the reference's taken after its flip).
    The reference is read ``batch`` frames at a time (a training set at full size need not fit
    twice).

    >>> frame = torch.arange(8.0).reshape(1, 1, 2, 4)
    >>> index, orientation, distance = nearest_frames(frame.flip(-1), torch.cat([frame, frame + 9]), flips=True)
    >>> int(index[0]), str(orientation[0]), float(distance[0])
    (0, 'left-right', 0.0)
    """
    rows = rows or slice(None)
    a = torch.as_tensor(np.asarray(images), dtype=torch.float64)[..., rows, :].flatten(1)
    best = torch.full((len(a),), math.inf, dtype=torch.float64)
    index = torch.zeros(len(a), dtype=torch.long)
    orientation = torch.zeros(len(a), dtype=torch.long)
    searched = list(ORIENTATIONS.values()) if flips else [None]
    for start in range(0, len(reference), batch):
        chunk = torch.as_tensor(np.asarray(reference[start:start + batch]), dtype=torch.float64)
        for k, dims in enumerate(searched):
            b = (chunk if dims is None else chunk.flip(dims))[..., rows, :].flatten(1)
            values, where = torch.cdist(a, b).min(dim=1)
            closer = values < best
            best, index, orientation = (torch.where(closer, values, best), torch.where(closer, where + start, index),
                                        torch.where(closer, k, orientation))
    names = np.array(list(ORIENTATIONS), dtype=object)
    return index.numpy(), names[orientation.numpy()], (best / math.sqrt(a.shape[1])).numpy()


def nearest_distances(images, reference, batch: int = 256, flips: bool = False) -> np.ndarray:
    """Each image's RMS distance (model space, all pixels and channels) to its nearest ``reference``
    image; with ``flips``, the reference images flipped left-right, up-down and both (turned by
    180 degrees) are searched too (a model trained with flips may redraw a flipped frame):
    ``nearest_frames``' distances.

    >>> frame = torch.arange(8.0).reshape(1, 1, 2, 4)
    >>> mirrored = frame.flip(-1)
    >>> nearest_distances(mirrored, frame).round(3).tolist(), nearest_distances(mirrored, frame, flips=True).tolist()
    ([2.236], [0.0])
    """
    return nearest_frames(images, reference, batch, flips)[2]


def nearest_hemisphere_distances(images, reference, batch: int = 256) -> np.ndarray:
    """Each image's RMS distance to the nearest hemisphere of the ``reference`` images and their
    flips: the northern half of the image against the northern halves, the southern against the
    southern, the nearer of the two. A model trained with hemisphere swaps (``train
    --augment-hemispheres``) could redraw one training hemisphere beside another; whole-frame
    distances would not see it.

    >>> frame = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> half_copied = frame.clone(); half_copied[..., :2, :] += 10  # its southern rows changed
    >>> float(nearest_distances(half_copied, frame)[0]), float(nearest_hemisphere_distances(half_copied, frame)[0])
    (7.0710678118654755, 0.0)
    """
    size = np.asarray(images).shape[-2]
    south, north = slice(None, size // 2), slice(size - size // 2, None)  # FITS rows: row 0 is the south edge
    return np.minimum(nearest_frames(images, reference, batch, True, rows=north)[2],
                      nearest_frames(images, reference, batch, True, rows=south)[2])


def nearest_other_days(frames, rng, n: int = 200, days: float = 3.0) -> np.ndarray:
    """For ``n`` frames drawn with ``rng``, the RMS distance to the nearest other frame of the set
    observed more than ``days`` away: what "new" looks like within the training months (hourly
    frames of one day are near-duplicates of each other, so nearer frames are left out)."""
    times = utc_times(frames.t_obs).to_numpy(dtype="datetime64[s]")
    flat = torch.as_tensor(np.asarray(frames.images), dtype=torch.float64).flatten(1)
    out = []
    for i in np.sort(rng.permutation(len(flat))[:n]):
        keep = np.abs((times - times[i]) / np.timedelta64(1, "h")) > 24 * days
        if keep.any():
            out.append(float(torch.cdist(flat[i:i + 1], flat[torch.from_numpy(keep)]).min()) / math.sqrt(flat.shape[1]))
    return np.array(out)


def requested_positions(pipe, n: int, seed: int) -> list:
    """``n`` helioprojective positions (arcsec) drawn with ``seed`` from the model's training
    flares' distribution, as the pipeline draws them (``draw_flare_position``)."""
    rng = np.random.default_rng(seed)
    return [draw_flare_position(pipe.config.flare_positions, pipe.config.geometry, rng) for _ in range(n)]


def positions_px(pipe, positions_arcsec) -> np.ndarray:
    """(N, 2) pixel positions (x, y) of helioprojective positions in the model's images."""
    geometry, size = pipe.config.geometry, pipe.unet.config.sample_size
    return np.array([arcsec_to_pixels(x, y, geometry, size) for x, y in positions_arcsec], dtype=np.float64)


def real_flare_frames(dataset, split, pipe, classes, size: int | None = None) -> dict:
    """Per class, the real frames of ``split`` whose largest flare in progress (with a position on
    the disk) is of that class: model-space images at ``size`` (default: the base model's), that
    flare's pixel position, and the day of each frame ("2012-03-07")."""
    size = size or pipe.unet.config.sample_size
    dataset_size = dataset_info(dataset)["config"]["size"]
    ds = load_split(dataset, split, columns=("image", "flare_class", "flares", "t_obs"))
    names = ds.features["flare_class"].names
    picks = {c: ([], []) for c in classes}
    for k, row in enumerate(ds):
        label = names[int(row["flare_class"])]
        if label not in picks or label == QUIET_LABEL:
            continue
        _, positions, fluxes = frame_flare_inputs(row, dataset_size, size)
        if positions:
            picks[label][0].append(k)
            picks[label][1].append(positions[int(np.argmax(fluxes))])
    result = {}
    for c, (rows, where) in picks.items():
        if rows:
            picked = ds.select(rows)
            images = pipe.normalization.forward(torch.from_numpy(np.asarray(picked["image"], np.float32)))
            result[c] = (resize(images, size), np.asarray(where, dtype=np.float64), observation_days(picked["t_obs"]))
    return result


def observation_days(t_obs) -> np.ndarray:
    """The UTC day ("2012-03-07") of each observation time: the groups of real frames in the
    intervals (frames of one day are near duplicates).

    >>> observation_days(["2012-03-07T23:59:00.000Z", "2012-03-08T00:01:00"]).tolist()
    ['2012-03-07', '2012-03-08']
    """
    return utc_times(list(t_obs)).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)


def flare_sections(ev, splits=("train", "validation", "test"), num_move: int = 8) -> dict:
    """The flare model's sections (a)-(f) for an ``evaluate.Evaluation`` whose images were
    generated at ``ev.requested_px``, measured in that order (they draw from ``ev.rng`` in turn;
    (f) draws nothing), and the fidelity section's checks."""
    real = _real_flare_frames_of(ev, splits)
    signature = signature_section(ev, splits, real)
    moved = moved_section(ev, num_move)
    memorisation = memorisation_section(ev)
    diversity = diversity_section(ev)
    away = away_section(ev)
    flare = {"signature": signature, "moved": moved, "memorisation": memorisation, "diversity": diversity,
             "away": away, "fidelity": fidelity_section(ev, real),
             "positions_arcsec": [list(p) for p in ev.position_cycle]}
    flare["fidelity"]["checks"] = fidelity.fidelity_check(flare)
    return flare


def _wavelengths(ev) -> list:
    """The channels' names ("94"), or their indices where the geometry names none."""
    return [f"{w:g}" for w in ev.pipe.config.geometry.get("wavelengths_angstrom") or range(ev.generated.shape[1])]


def _per_channel(ev, values) -> dict:
    """Per channel, the interval of the mean of (N, C) ``values`` (NaN, a blank channel of a composite, left out)."""
    return {w: ev.interval_of(np.mean, values[:, i]) for i, w in enumerate(_wavelengths(ev))}


def _on_disk(ev) -> np.ndarray:
    """The (H, W) mask of the model's solar disk."""
    size, geometry = ev.pipe.unet.config.sample_size, ev.pipe.config.geometry
    return disk_mask(size, rsun_px(geometry, size), center=disk_center_px(geometry, size))


def signature_section(ev, splits, real: dict | None = None) -> dict:
    """(a) The signature at the requested position per class, generated and real (real frames of
    ``splits`` at their HEK positions; ``real``: those frames where already read), each also over
    the disk's 99th percentile; the paired steps up the classes; and real frames without a flare at
    the requested positions."""
    on_disk = _on_disk(ev)
    generated_sig = flare_signature(ev.generated, ev.requested_px)
    generated_p99 = disk_percentile(ev.generated, on_disk)
    real = _real_flare_frames_of(ev, splits) if real is None else real
    signature = {"channels": _wavelengths(ev), "radius_px": SIGNATURE_RADIUS_PX, "classes": {}}
    for c in ev.classes:
        keep = ev.labels == c
        row = {keys.GENERATED: _per_channel(ev, generated_sig[keep]),
               keys.GENERATED_OVER_DISK_P99: _per_channel(ev, generated_sig[keep] / generated_p99[keep])}
        if c in real:
            images, where, _ = real[c]
            sig, p99 = flare_signature(images, where), disk_percentile(images, on_disk)
            blank = p99 <= 0  # a composite whose channel is missing (all dark): not a measurement there
            sig[blank] = np.nan
            row[keys.REAL_AT_HEK_POSITIONS] = _per_channel(ev, sig)
            row[keys.REAL_AT_HEK_POSITIONS_OVER_DISK_P99] = _per_channel(ev, sig / np.where(blank, np.nan, p99))
        signature["classes"][c] = row
    # image k of every class has the same seed and position
    signature[keys.PAIRED_STEPS] = {
        keys.paired_step(a, b): _per_channel(ev, generated_sig[ev.labels == b] - generated_sig[ev.labels == a])
        for a, b in zip(ev.classes, ev.classes[1:])}
    quiet_real = ev.real_all.where(ev.real_all.labels == QUIET_LABEL)
    if len(quiet_real):
        quiet_at = ev.requested_px[np.arange(len(quiet_real)) % len(ev.requested_px)]
        sig, p99 = flare_signature(quiet_real.images, quiet_at), disk_percentile(quiet_real.images, on_disk)
        sig[p99 <= 0] = np.nan
        signature[keys.REAL_WITHOUT_FLARE] = _per_channel(ev, sig)
        signature[keys.REAL_WITHOUT_FLARE_OVER_DISK_P99] = _per_channel(ev, sig / np.where(p99 > 0, p99, np.nan))
    return signature


def _real_flare_frames_of(ev, splits) -> dict:
    """``real_flare_frames`` of each of ``splits`` that the dataset has, joined per class."""
    parts = {}
    for split in splits:
        try:
            for c, frames in real_flare_frames(ev.config.dataset, split, ev.pipe, ev.classes).items():
                parts.setdefault(c, []).append(frames)
        except ValueError as error:  # a dataset without this split
            if "no split" not in str(error):
                raise
    return {c: (torch.cat([f[0] for f in p]), np.concatenate([f[1] for f in p]), np.concatenate([f[2] for f in p]))
            for c, p in parts.items()}


def moved_section(ev, num_move: int) -> dict:
    """(b) The strongest class's same seeds asked at A and at its mirror image B across the
    meridian: the signature at each position when asked there minus when asked at the other."""
    strongest = [c for c in ev.classes if c != QUIET_LABEL][-1:]
    if not strongest:
        return {}
    far = [p for p in ev.position_cycle if abs(p[0]) > 150]  # A and its mirror B at least 300" apart
    a = far[0] if far else (300.0, -250.0)
    b = (-a[0], a[1])
    asked_a, asked_b = (ev.sample([strongest[0]] * num_move, ev.config.seed + 20_000, positions=[where] * num_move)[0]
                        for where in (a, b))
    pa, pb = positions_px(ev.pipe, [a, b])

    def signature_at(where, asked, other):  # asked there minus asked at the other position
        return _per_channel(ev, flare_signature(asked, [where] * num_move) - flare_signature(other, [where] * num_move))

    return {"class": strongest[0], "a_arcsec": list(a), "b_arcsec": list(b), "a_px": pa.tolist(), "b_px": pb.tolist(),
            keys.AT_A: signature_at(pa, asked_a, asked_b), keys.AT_B: signature_at(pb, asked_b, asked_a)}


def memorisation_section(ev) -> dict:
    """(c) Each class's median distance to the nearest training frame, over that of real frames of
    months never seen and of generated quiet images; with novelty guidance, the same requests and
    seeds without it (the model's own memorisation). The ``*_with_flips`` keys: the same ratios to
    real held-out frames with the search through the training frames and their flips
    (``nearest_distances(..., flips=True)``, both sides alike); the ``*_hemisphere`` keys: the nearest
    training hemisphere instead of frame (``nearest_hemisphere_distances``); the other keys keep
    the plain search."""
    train, config = ev.train_all.images, ev.config
    generated_nn = nearest_distances(ev.generated, train)
    generated_flips = nearest_distances(ev.generated, train, flips=True)
    held_out = ev.real_all.images[torch.from_numpy(ev.rng.permutation(len(ev.real_all))[:200])]
    real_nn = nearest_distances(held_out, train)
    real_flips = nearest_distances(held_out, train, flips=True)
    generated_halves = nearest_hemisphere_distances(ev.generated, train)
    real_halves = nearest_hemisphere_distances(held_out, train)
    memorisation = {keys.REAL_HELD_OUT: ev.interval(np.median, real_nn),
                    keys.REAL_TRAIN_OTHER_DAYS: ev.interval_of(np.median, nearest_other_days(ev.train_all, ev.rng)),
                    keys.REAL_HELD_OUT_WITH_FLIPS: ev.interval(np.median, real_flips),
                    keys.REAL_HELD_OUT_HEMISPHERE: ev.interval(np.median, real_halves),
                    "classes": {}}
    quiet_nn = generated_nn[ev.labels == QUIET_LABEL]
    own_nn = None
    if config.novelty_target:
        n = config.num_per_class
        own = [ev.sample(list(ev.labels[k * n:(k + 1) * n]), config.seed, novelty_target=0.0,
                         positions=None if ev.requested_arcsec is None else ev.requested_arcsec[k * n:(k + 1) * n])[0]
               for k in range(len(ev.classes))]
        own_nn = nearest_distances(torch.cat(own), train)
        own_flips = nearest_distances(torch.cat(own), train, flips=True)
        memorisation["novelty_target"] = config.novelty_target

    def over(a, b):
        return ev.interval(lambda g, r: np.median(g) / np.median(r), a, b)

    for c in ev.classes:
        values = generated_nn[ev.labels == c]
        row = {"median": ev.interval(np.median, values), keys.OVER_REAL_HELD_OUT: over(values, real_nn)}
        if len(quiet_nn) and c != QUIET_LABEL:
            row[keys.OVER_GENERATED_QUIET] = over(values, quiet_nn)
        if own_nn is not None:
            row[keys.OVER_REAL_HELD_OUT_WITHOUT_NOVELTY] = over(own_nn[ev.labels == c], real_nn)
        row[keys.OVER_REAL_HELD_OUT_WITH_FLIPS] = over(generated_flips[ev.labels == c], real_flips)
        if own_nn is not None:
            row[keys.OVER_REAL_HELD_OUT_WITH_FLIPS_WITHOUT_NOVELTY] = over(own_flips[ev.labels == c], real_flips)
        row[keys.OVER_REAL_HELD_OUT_HEMISPHERE] = over(generated_halves[ev.labels == c], real_halves)
        memorisation["classes"][c] = row
    return memorisation


def diversity_section(ev) -> dict:
    """(d) The mean RMS distance between images of one request (same class and position, other
    seeds), and between random pairs of real frames of the split."""
    n_positions = len(ev.position_cycle)
    diversity = {"classes": {}}
    for c in ev.classes:
        idx = np.flatnonzero(ev.labels == c)  # image n of a class was asked at position n % n_positions
        pairs = [(idx[n], idx[m]) for n in range(len(idx)) for m in range(n + 1, len(idx))
                 if (m - n) % n_positions == 0]
        if pairs:
            diversity["classes"][c] = ev.interval(np.mean, np.array([_rms(ev.generated[i], ev.generated[j])
                                                                     for i, j in pairs]))
    real_idx = ev.rng.permutation(len(ev.real_all))[:2 * min(64, len(ev.real_all) // 2)]
    d = np.array([_rms(ev.real_all.images[i], ev.real_all.images[j]) for i, j in zip(real_idx[::2], real_idx[1::2])])
    if len(d) > 1:
        diversity[keys.REAL_SPLIT] = ev.interval(np.mean, d)
    return diversity


def away_section(ev) -> dict:
    """(e) The disk's 99th percentile beyond ``AWAY_RADIUS_PX`` of the requested positions, per
    class, against real frames of the split at the same positions (mean, and central 95%)."""
    on_disk, size = _on_disk(ev), ev.pipe.unet.config.sample_size
    rows, cols = np.mgrid[:size, :size]

    def away_masks(where):
        return np.stack([on_disk & (np.hypot(cols - x, rows - y) > AWAY_RADIUS_PX) for x, y in where])

    away = {"radius_px": AWAY_RADIUS_PX, "classes": {}}
    gen_away = disk_percentile(ev.generated, away_masks(ev.requested_px))
    for c in ev.classes:
        away["classes"][c] = _per_channel(ev, gen_away[ev.labels == c])
    real_at = ev.requested_px[np.arange(len(ev.real_all)) % len(ev.requested_px)]
    real_away = disk_percentile(ev.real_all.images, away_masks(real_at))
    real_away[real_away <= 0] = np.nan  # blank channels of some composites
    away[keys.REAL_SPLIT] = _per_channel(ev, real_away)
    away[keys.REAL_SPLIT_CENTRAL_95] = {w: [float(v) for v in np.nanpercentile(real_away[:, i], [2.5, 97.5])]
                                        for i, w in enumerate(_wavelengths(ev))}
    return away


def fidelity_section(ev, real: dict) -> dict:
    """(f) The fidelity issue's figures (``solar_diffusion.fidelity``), the generated images
    against the real split (intervals over seeds and days): the disk's power per band, colour
    speckle and the limb; in 171 Å (else the first channel) the pit beside M and X flares at the
    requested positions against real M and X frames at their HEK positions (``real``: from
    ``_real_flare_frames_of``), and the very bright pixels (above the real quiet frames'
    ``fidelity.VERY_BRIGHT_PERCENTILE``) of M and X images over quiet ones' at the same seeds,
    beside real M and X frames over real quiet frames of the same days (evaluated and train splits)."""
    size, geometry = ev.pipe.unet.config.sample_size, ev.pipe.config.geometry
    center, radius = disk_center_px(geometry, size), rsun_px(geometry, size)
    channels, n = _wavelengths(ev), ev.config.num_per_class
    boot = {"n_boot": ev.config.n_boot, "seed": ev.config.seed}
    generated = ev.generated.numpy()
    seeds = ev.config.seed + np.arange(len(generated)) % n  # image k of every class: seed + k
    real_split, days = ev.real_all.images.numpy(), observation_days(ev.real_all.t_obs)
    section = {"size": size, "num_per_class": n, "channels": channels,
               "power_ratio": fidelity.power_ratio(generated, real_split, center, radius, seeds, days, channels, **boot),
               "colour_speckle": fidelity.colour_speckle(generated, real_split, center, radius, seeds, days, channels,
                                                         **boot),
               "limb": fidelity.limb_figures(generated, real_split, center, radius, seeds, days,
                                             [f"{c} seed {s}" for c, s in zip(ev.labels, seeds)], **boot)}
    channel = channels.index("171") if "171" in channels else 0
    flaring = [c for c in ("M", "X") if c in ev.classes]
    section["pit"] = {"channel": channels[channel], "classes": flaring}
    keep = np.isin(ev.labels, flaring)
    real_flaring = [real[c] for c in flaring if c in real]
    if keep.any() and real_flaring:
        radius_px = fidelity.PIT_RADIUS_PX * size / 64
        section["pit"] |= fidelity.flare_pit(
            generated[keep], ev.requested_px[keep], seeds[keep], torch.cat([f[0] for f in real_flaring]).numpy(),
            np.concatenate([f[1] for f in real_flaring]), np.concatenate([f[2] for f in real_flaring]), channel,
            radius_px, **boot)
    section["very_bright"] = _very_bright(ev, real, flaring, channel, seeds, boot)
    return section


def _very_bright(ev, real: dict, flaring: list, channel: int, seeds, boot: dict) -> dict:
    """``fidelity_section``'s very bright pixels: per flaring class, generated over generated quiet
    at the same seeds, and real flare frames over real quiet frames of the same days."""
    on_disk = _on_disk(ev)
    quiet_split = ev.real_all.images[torch.from_numpy(ev.real_all.labels == QUIET_LABEL)].numpy()
    out = {"channel": _wavelengths(ev)[channel], "percentile": fidelity.VERY_BRIGHT_PERCENTILE,
           keys.GENERATED: {}, keys.REAL_SAME_DAYS: {}}
    if not len(quiet_split):
        return out
    threshold = fidelity.very_bright_threshold(quiet_split, on_disk, channel)
    out["threshold"] = threshold
    generated, quiet = ev.generated.numpy(), ev.labels == QUIET_LABEL
    for c in flaring:
        if quiet.any():
            out[keys.GENERATED][c] = fidelity.very_bright_ratio(
                generated[ev.labels == c], generated[quiet], on_disk, threshold, seeds[ev.labels == c], seeds[quiet],
                channel, **boot)
    sets = (ev.real_all, ev.train_all)
    quiet_days = [observation_days(frames.t_obs).astype(str) for frames in sets]
    for c in flaring:
        if c not in real:
            continue
        images, _, days = real[c]
        same = [(frames.labels == QUIET_LABEL) & np.isin(d, days.astype(str)) for frames, d in zip(sets, quiet_days)]
        keep = np.isin(days.astype(str), np.concatenate([d[m] for d, m in zip(quiet_days, same)]))
        if keep.any():
            quiet_frames = torch.cat([frames.images[torch.from_numpy(m)] for frames, m in zip(sets, same)]).numpy()
            out[keys.REAL_SAME_DAYS][c] = fidelity.very_bright_ratio(
                images.numpy()[keep], quiet_frames, on_disk, threshold, days[keep].astype(str),
                np.concatenate([d[m] for d, m in zip(quiet_days, same)]), channel, unit="days", **boot)
    return out


def _rms(a, b) -> float:
    return float(torch.sqrt(torch.mean((torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)) ** 2)))


def check_done(flare: dict, classes=("quiet", "C", "M"), channels=("94", "131")) -> dict:
    """The issue's acceptance tests on a flare report, each True or False (None: not measurable).

    ``m_within_real``: the generated M mean at the position is within or above the real M frames'
    interval; ``x_at_least_m``: X >= M - 0.02; ``ordered``: quiet < C < M; ``separated``: every paired
    step from quiet up to M (same seeds and positions) has its 95% interval above 0; per channel. Then
    ``away_within_real_range``: every class's mean disk p99 away from the position lies within the
    central 95% of real frames; ``no_copies``: M and X median nearest-training-frame distances at
    least 0.9 of generated quiet images' and 0.8 of real held-out frames'.
    """
    sig = flare["signature"]["classes"]
    result = {}
    for w in channels:
        def mean(c, key=keys.GENERATED):
            row = sig.get(c, {}).get(key, {}).get(w)
            return None if not row or row.get("value") is None else row
        m, x, real_m = mean("M"), mean("X"), mean("M", keys.REAL_AT_HEK_POSITIONS)
        result[w] = {
            "m_within_real": None if m is None or real_m is None or "low" not in real_m
            else bool(m["value"] >= real_m["low"]),
            "x_at_least_m": None if m is None or x is None else bool(x["value"] >= m["value"] - 0.02),
            "ordered": None if any(mean(c) is None for c in classes)
            else bool(all(mean(a)["value"] < mean(b)["value"] for a, b in zip(classes, classes[1:]))),
        }
        steps = flare["signature"].get(keys.PAIRED_STEPS)
        if steps:
            result[w]["separated"] = _separated(steps, list(sig), classes, w)
    away = flare.get("away", {})
    ranges = away.get(keys.REAL_SPLIT_CENTRAL_95)
    if ranges:
        result["away_within_real_range"] = all(ranges[w][0] <= row[w]["value"] <= ranges[w][1]
                                               for row in away["classes"].values() for w in ranges)
    memorisation = flare.get("memorisation", {}).get("classes", {})
    if memorisation:
        result["no_copies"] = all(memorisation[c][keys.OVER_GENERATED_QUIET]["value"] >= 0.9
                                  and memorisation[c][keys.OVER_REAL_HELD_OUT]["value"] >= 0.8
                                  for c in ("M", "X") if c in memorisation)
    return result


def _separated(steps: dict, ladder: list, classes, w: str) -> bool | None:
    """Whether every paired step of ``ladder`` (the report's classes, in order) from ``classes[0]``
    up to ``classes[-1]`` has its interval above 0 in channel ``w``; None if those steps are not all there."""
    pairs = [(a, b) for a, b in zip(ladder, ladder[1:]) if keys.paired_step(a, b) in steps]
    top = next((k for k, (_, b) in enumerate(pairs) if b == classes[-1]), None)
    if top is None or pairs[0][0] != classes[0]:
        return None
    return bool(all("low" in steps[keys.paired_step(a, b)][w] and steps[keys.paired_step(a, b)][w]["low"] > 0
                    for a, b in pairs[:top + 1]))
