"""Fine structure of full-disk images: the disk's power spectrum, a structure statistic that tells
loops from noise, and the controls a super-resolution stage is measured against.

One definition each, used by the cascade's evaluation and by the base model's (the fidelity
issue): ``disk_power_spectrum`` (radially averaged power inside ``fraction`` of the solar
radius, under a cosine-tapered disk window), ``band_powers`` over ``BANDS`` (cycles per image at
256 px; ``bands_at`` scales them to another size),
``band_passed_kurtosis`` (the excess kurtosis of the band-passed disk: loops and kernels are
sparse and bright, Gaussian noise has 0), ``block_peak`` (the browse JPEG blocks' power near
``BROWSE_BLOCK_CYCLES``, where it shows), and the two controls that must look wrong:
``bicubic`` upsampling and ``bicubic_plus_shaped_noise`` (bicubic plus noise whose spectrum makes
up the real frames' power in each band: power without structure).

Images are model-space arrays (N, C, H, W); the disk is given by its centre (x, y) and radius in
pixels of the images (``pipelines.disk_center_px``, ``pipelines.rsun_px``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: Bands of spatial frequency (cycles per image, at 256 px) in which power is compared.
BANDS = ((8, 16), (16, 32), (32, 64), (64, 128))
#: Where the 8 px JPEG blocks of the 472 px browse composites put power: 472 / 8 cycles per image,
#: at any size the frames are resampled to (other sources: their side in pixels over 8).
BROWSE_BLOCK_CYCLES = 59.0


def disk_window(size: int, center, radius: float, fraction: float = 0.9, taper: float = 0.1) -> np.ndarray:
    """A (size, size) window: 1 inside ``fraction - taper`` of the radius, falling to 0 at
    ``fraction`` as half a cosine (apodised: a hard disk edge would put its own power in every band).

    >>> w = disk_window(64, (31.5, 31.5), 28.0)
    >>> float(w[31, 31]), float(w[0, 0]), bool(0 < w[31, 31 + 24] < 1)
    (1.0, 0.0, True)
    """
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(xx - center[0], yy - center[1]) / radius
    inner = fraction - taper
    ramp = np.clip((fraction - r) / taper, 0.0, 1.0)
    return np.where(r <= inner, 1.0, 0.5 - 0.5 * np.cos(np.pi * ramp))


def disk_power_spectrum(images, center, radius: float, fraction: float = 0.9) -> np.ndarray:
    """Radially averaged power (N, C, size // 2) of each image's disk, per channel, at integer
    frequencies 0 .. size/2 - 1 cycles per image: the images less their windowed mean, times
    ``disk_window``, Fourier transformed; power normalised by the window's energy.

    >>> x = np.sin(2 * np.pi * 8 * np.arange(64) / 64)[None, None, :, None] * np.ones((1, 1, 64, 64))
    >>> p = disk_power_spectrum(x, (31.5, 31.5), 30.0)  # stripes of 8 cycles per image
    >>> p.shape, int(p[0, 0].argmax())
    ((1, 1, 32), 8)
    """
    x = torch.as_tensor(np.asarray(images, dtype=np.float64))
    size = x.shape[-1]
    window = torch.from_numpy(disk_window(size, center, radius, fraction))
    mean = (x * window).sum(dim=(-2, -1), keepdim=True) / window.sum()
    power = torch.fft.fft2((x - mean) * window).abs().square() / window.square().sum()
    freq = torch.fft.fftfreq(size, d=1.0 / size)
    k = torch.hypot(freq[None, :], freq[:, None]).round().long().flatten()
    keep = k < size // 2
    flat = power.flatten(-2)[..., keep]
    sums = torch.zeros(*flat.shape[:-1], size // 2, dtype=flat.dtype).index_add_(-1, k[keep], flat)
    counts = torch.bincount(k[keep], minlength=size // 2).clamp(min=1)
    return (sums / counts).numpy()


def block_peak(spectra: np.ndarray, cycles: float = BROWSE_BLOCK_CYCLES, half_width: int = 2, gap: int = 2,
               flank: int = 5) -> np.ndarray:
    """(N, C) the mean power within ``half_width`` of ``cycles`` (cycles per image) over the
    geometric mean of its two flanks (``flank`` frequencies each, ``gap`` away from the peak's
    edges): about 1 where no JPEG block peak shows, above 1 where it does. NaN where the flanks
    pass the spectrum's end.

    >>> s = np.ones((1, 1, 128)); s[..., 58:61] = 3.0
    >>> block_peak(s).round(2).tolist(), block_peak(np.ones((1, 1, 128))).tolist()
    ([[2.2]], [[1.0]])
    """
    k, c = spectra.shape[-1], int(round(cycles))
    low, high = c - half_width - gap - flank, c + half_width + gap + flank
    if low < 1 or high >= k:
        return np.full(spectra.shape[:-1], np.nan)
    peak = spectra[..., c - half_width:c + half_width + 1].mean(axis=-1)
    flanks = np.concatenate([spectra[..., low:low + flank], spectra[..., high - flank + 1:high + 1]], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):  # flat flanks (no power): NaN, not a peak
        return peak / np.exp(np.log(flanks).mean(axis=-1))


def bands_at(size: int, bands=BANDS) -> list[tuple[int, int]]:
    """``bands`` (cycles per image at 256 px, as ``BANDS``) scaled to images of ``size`` px.

    >>> bands_at(64)
    [(2, 4), (4, 8), (8, 16), (16, 32)]
    """
    scale = size / 256
    return [(int(round(low * scale)), int(round(high * scale))) for low, high in bands]


def band_powers(spectra: np.ndarray, bands=BANDS, size: int | None = None) -> np.ndarray:
    """Mean power (N, C, len(bands)) of spectra (N, C, K) in each band of cycles per image; a band
    is scaled to the images' size (``size``; ``BANDS`` are for 256 px; ``bands_at``) and clipped to
    the spectrum.

    >>> band_powers(np.arange(128.0)[None, None], size=256).round(1).tolist()
    [[[11.5, 23.5, 47.5, 95.5]]]
    """
    k = spectra.shape[-1]
    out = []
    for a, b in bands_at(size or 2 * k, bands):
        b = min(b, k)
        out.append(spectra[..., a:b].mean(axis=-1) if b > a else np.full(spectra.shape[:-1], np.nan))
    return np.stack(out, axis=-1)


def band_pass(images, low: float, high: float) -> np.ndarray:
    """Images (N, C, H, W) keeping only spatial frequencies in [low, high) cycles per image.

    >>> x = np.sin(2 * np.pi * 8 * np.arange(32) / 32)[None, None, :, None] * np.ones((1, 1, 32, 32))
    >>> bool(np.allclose(band_pass(x, 4, 16), x)), bool(np.allclose(band_pass(x, 16, 32), 0))
    (True, True)
    """
    x = torch.as_tensor(np.asarray(images, dtype=np.float64))
    size = x.shape[-1]
    freq = torch.fft.fftfreq(size, d=1.0 / size)
    k = torch.hypot(freq[None, :], freq[:, None])
    mask = ((k >= low) & (k < high)).to(x.dtype)
    return torch.fft.ifft2(torch.fft.fft2(x) * mask).real.numpy()


def band_passed_kurtosis(images, center, radius: float, band=(32, 128), fraction: float = 0.9) -> np.ndarray:
    """Excess kurtosis (N, C) of the band-passed images inside ``fraction`` of the disk: how
    sparse the fine structure is. Gaussian noise gives about 0; loops and bright kernels, well
    above it. ``band`` is in cycles per image at 256 px, scaled to the images' size.

    >>> rng = np.random.default_rng(0)
    >>> noise = rng.normal(size=(1, 1, 128, 128))
    >>> sparse = noise * (rng.random((1, 1, 128, 128)) < 0.05)
    >>> k = band_passed_kurtosis(np.concatenate([noise, sparse]), (63.5, 63.5), 60.0)
    >>> bool(abs(k[0, 0]) < 0.5 and k[1, 0] > 3)
    True
    """
    images = np.asarray(images, dtype=np.float64)
    size = images.shape[-1]
    scale = size / 256
    passed = band_pass(images, band[0] * scale, band[1] * scale)
    yy, xx = np.mgrid[:size, :size]
    inside = np.hypot(xx - center[0], yy - center[1]) <= fraction * radius
    values = passed[..., inside]
    centred = values - values.mean(axis=-1, keepdims=True)
    return (centred**4).mean(axis=-1) / (centred**2).mean(axis=-1) ** 2 - 3.0


def bicubic(low, size: int) -> torch.Tensor:
    """Bicubic upsampling of (N, C, h, w) model-space images to ``size`` px, clamped to [-1, 1]:
    the control that blurs.

    >>> bicubic(torch.zeros(1, 1, 4, 4), 8).shape
    torch.Size([1, 1, 8, 8])
    """
    low = torch.as_tensor(low, dtype=torch.float32)
    return F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def bicubic_plus_shaped_noise(low, size: int, real_spectrum: np.ndarray, center, radius: float,
                              seed: int = 0) -> torch.Tensor:
    """The control with power but no structure: ``bicubic`` plus Gaussian noise filtered so that,
    per channel and integer frequency, its power makes up the difference between the mean real
    spectrum (``real_spectrum``: C, size // 2, from ``disk_power_spectrum`` of real frames) and
    that of the bicubic images.

    >>> rng = np.random.default_rng(0)
    >>> real = rng.normal(size=(4, 1, 32, 32)); low = F.avg_pool2d(torch.as_tensor(real, dtype=torch.float32), 2)
    >>> spectrum = disk_power_spectrum(real, (15.5, 15.5), 14.0).mean(axis=0)
    >>> out = bicubic_plus_shaped_noise(low, 32, spectrum, (15.5, 15.5), 14.0)
    >>> ratio = disk_power_spectrum(out.numpy(), (15.5, 15.5), 14.0).mean(axis=0)[0, 8:15] / spectrum[0, 8:15]
    >>> bool(0.5 < ratio.mean() < 2)
    True
    """
    base = bicubic(low, size)
    spectrum = disk_power_spectrum(base.numpy(), center, radius).mean(axis=0)
    missing = np.clip(np.asarray(real_spectrum) - spectrum, 0.0, None)  # (C, K)
    freq = np.fft.fftfreq(size, d=1.0 / size)
    k = np.minimum(np.hypot(freq[None, :], freq[:, None]).round().astype(int), missing.shape[-1] - 1)
    amplitude = torch.from_numpy(np.sqrt(missing[:, k]))  # (C, size, size): white noise has unit power
    generator = torch.Generator().manual_seed(seed)
    white = torch.randn(base.shape, generator=generator, dtype=torch.float64)
    shaped = torch.fft.ifft2(torch.fft.fft2(white) * amplitude).real.float()
    return (base + shaped).clamp(-1, 1)
