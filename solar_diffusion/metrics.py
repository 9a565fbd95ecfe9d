"""Image statistics that a solar physicist reads: how much of the disk is bright active region."""

from __future__ import annotations

import numpy as np


def disk_mask(size: int, rsun_px: float, fraction: float = 0.95) -> np.ndarray:
    """Boolean (size, size) mask of pixels within ``fraction`` of the solar radius of the centre.

    >>> int(disk_mask(8, 3.0, 1.0).sum())
    32
    """
    c = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size]
    return np.hypot(xx - c, yy - c) <= fraction * rsun_px


def bright_fraction(images, rsun_px: float, threshold: float, channel: int = 0) -> np.ndarray:
    """Per image, the fraction of on-disk pixels brighter than ``threshold`` (active regions).

    ``images`` are (N, C, H, W) in model space (the log-scaled normalisation), disk-centred.
    Flaring images should show more bright pixels than quiet ones.

    >>> quiet = -np.ones((1, 1, 8, 8)); active = quiet.copy(); active[..., 3:5, 3:5] = 0.9
    >>> bright_fraction(np.concatenate([quiet, active]), rsun_px=3.0, threshold=0.5).round(3).tolist()
    [0.0, 0.167]
    """
    images = np.asarray(images)
    mask = disk_mask(images.shape[-1], rsun_px)
    return (images[:, channel][:, mask] > threshold).mean(axis=1)


def threshold_from_quiet(images, rsun_px: float, percentile: float = 99.0, channel: int = 0) -> float:
    """The ``percentile`` of on-disk pixel values of reference (e.g. real quiet) images."""
    images = np.asarray(images)
    return float(np.percentile(images[:, channel][:, disk_mask(images.shape[-1], rsun_px)], percentile))
