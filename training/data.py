"""What every training script needs of a built split: the UNet's class input of a frame, a
class-balanced sampler, physically safe augmentation, and the collate function that makes
model-space batches. Used by ``train_ddpm.py``, ``train_classifier.py`` and the experiments."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from solar_diffusion.pipelines import (AUGMENTATION_PLANES, NO_FLARE_CLASS_INPUT, NULL_FLUX_CLASS_INPUT, flare_map,
                                      flux_class_input)
from solar_diffusion.splits import frame_flare_inputs, resize


def frame_class_input(row, id_map) -> float | int:
    """A frame's UNet class input: its remapped label id (``id_map``), or, for flux
    conditioning (``id_map is None``), ``flux_class_input`` of its flare's log10 peak flux, else of
    the XRS flux at its time, else the null value."""
    if id_map is not None:
        return id_map[int(row["flare_class"])]
    if np.isfinite(row["flare_log10_peak_flux_goes_r"]):
        return float(flux_class_input(row["flare_log10_peak_flux_goes_r"]))
    if np.isfinite(row["goes_flux_at_obs"]) and row["goes_flux_at_obs"] > 0:
        return float(flux_class_input(np.log10(row["goes_flux_at_obs"])))
    return NULL_FLUX_CLASS_INPUT


class BalancedSampler(torch.utils.data.Sampler):
    """Draws frames with replacement, weight ``count(label) ** -power``; reproducible per epoch.

    >>> sampler = BalancedSampler([0, 0, 0, 1], power=1.0, seed=0)
    >>> sampler.set_epoch(3); first = list(sampler); sampler.set_epoch(3)
    >>> first == list(sampler), len(first)
    (True, 4)
    """

    def __init__(self, labels, power: float, seed: int = 0, num_samples: int | None = None):
        labels = np.asarray(labels)
        counts = np.bincount(labels)
        self.weights = torch.as_tensor(counts[labels] ** -float(power), dtype=torch.double)
        self.seed, self.epoch = seed, 0
        self.num_samples = int(num_samples or len(self.weights))

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self):
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator).tolist())


class Collate:
    """Batch -> (normalised images at the training size, remapped class ids).

    With ``raw=True`` the images stay as stored (``dtype``: uint8 for browse data, a quarter of
    the bytes of float32 to pin and copy to a GPU) and ``to_model_space`` runs where the batch
    lands, on the accelerator.

    >>> from solar_diffusion.pipelines import ClipLogNormalization
    >>> collate = Collate(ClipLogNormalization.for_browse(), 8, {0: 0}, raw=True, dtype=np.uint8)
    >>> rows = [{"image": np.full((1, 16, 16), 255, np.uint8), "flare_class": 0}]
    >>> images, labels = collate(rows)
    >>> images.dtype, collate.to_model_space(images).shape, float(collate.to_model_space(images).max())
    (torch.uint8, torch.Size([1, 1, 8, 8]), 1.0)
    """

    def __init__(self, normalization, image_size, id_map, rotation=0.0, brightness=0.0, raw=False, dtype=np.float32,
                 flare_sigma_px: float | None = None, dataset_size: int | None = None):
        self.normalization, self.image_size, self.id_map = normalization, image_size, id_map
        self.rotation, self.brightness = rotation, brightness
        self.raw, self.dtype = raw, dtype
        self.flare_sigma_px, self.dataset_size = flare_sigma_px, dataset_size
        if flare_sigma_px is not None and rotation:
            raise ValueError("rotating the images would move their flares off the flare map: a flare model trains "
                             "without --augment-rotation")

    def __call__(self, rows):
        """``(images, class inputs)``, and the flare maps for a flare model (``flare_sigma_px`` set)."""
        images = torch.from_numpy(np.stack([np.asarray(r["image"], dtype=self.dtype) for r in rows]))
        images = images if self.raw else self.to_model_space(images)
        if self.flare_sigma_px is not None:
            flares = [frame_flare_inputs(r, self.dataset_size, self.image_size) for r in rows]
            maps = np.stack([flare_map(positions, fluxes, self.image_size, self.flare_sigma_px)
                             for _, positions, fluxes in flares])
            return images, torch.tensor([label for label, _, _ in flares], dtype=torch.float32), torch.from_numpy(maps)
        labels = torch.tensor([frame_class_input(r, self.id_map) for r in rows],
                              dtype=torch.float32 if self.id_map is None else torch.long)
        return images, labels

    def to_model_space(self, images: torch.Tensor, augment: bool = True) -> torch.Tensor:
        """Stored images (any dtype, any device) -> float32 model space at the training size,
        with the brightness and rotation augmentations where ``augment``."""
        images = images.float()
        if augment and self.brightness:
            images = images * (1 + self.brightness * (2 * torch.rand(len(images), 1, 1, 1, device=images.device) - 1))
        x = resize(self.normalization.forward(images), self.image_size)
        if augment and self.rotation:
            x = random_rotation(x, self.rotation)
        return x


#: What ``random_degradation`` does to a frame, in the order of the encoder's degradation head.
DEGRADATIONS = ("none", "blur", "noise")


def random_degradation(x: torch.Tensor, blur_px=(0.5, 2.0), noise=(0.01, 0.08)) -> tuple[torch.Tensor, torch.Tensor]:
    """Each model-space image left as it is, blurred (a Gaussian of std drawn from ``blur_px``, in
    the images' pixels) or given white noise (std drawn from ``noise``,
    model space), one of ``DEGRADATIONS`` each with probability 1/3; returns (images, the index of
    each one's degradation). The encoder's second head learns to tell them apart, so that its
    features see fine structure (``FlareClassifier``). Uses the global torch RNG of ``x``'s device.

    >>> x = torch.zeros(6, 1, 32, 32); x[:, :, 16, 16] = 1.0
    >>> y, kind = random_degradation(x)
    >>> y.shape == x.shape, bool(((kind == 0) == (y == x).flatten(1).all(1)).all())
    (True, True)
    """
    n, c, size = len(x), x.shape[1], x.shape[-1]
    kind = torch.randint(0, len(DEGRADATIONS), (n,), device=x.device)
    u = torch.rand(n, device=x.device)
    sigma = blur_px[0] + (blur_px[1] - blur_px[0]) * u
    half = int(np.ceil(3 * blur_px[1]))
    taps = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps[None] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, taps)
    flat = F.pad(x.reshape(1, n * c, size, size), (half, half, half, half), mode="replicate")
    blurred = F.conv2d(F.conv2d(flat, kernel[:, None, :, None], groups=n * c), kernel[:, None, None, :], groups=n * c)
    blurred = blurred.reshape(x.shape)
    std = noise[0] + (noise[1] - noise[0]) * u
    noisy = (x + std.view(-1, 1, 1, 1) * torch.randn_like(x)).clamp(-1.0, 1.0)
    pick = kind.view(-1, 1, 1, 1)
    return torch.where(pick == 1, blurred, torch.where(pick == 2, noisy, x)), kind


def random_rotation(x: torch.Tensor, max_degrees: float) -> torch.Tensor:
    """Rotate each model-space image about the disk centre by a uniform angle in +-``max_degrees``
    (off-image pixels become -1, the dark background). Uses the global torch RNG of ``x``'s device."""
    angle = torch.deg2rad(max_degrees * (2 * torch.rand(len(x), device=x.device) - 1))
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def random_flips(images: torch.Tensor, flare_maps: torch.Tensor | None, probability: float):
    """Flip each image (and its flare map) east-west and north-south, each with ``probability``,
    and say so: ``(images, flare_maps, planes)``, ``planes`` (N, 2, H, W) 1 where flipped (east-west,
    north-south), the UNet's augmentation input. A flipped Sun rotates the wrong way and swaps its
    poles, so the flip is given to the UNet as a condition and sampling asks for none (zero planes):
    the data grow without the flips leaking into the images (EDM's non-leaking augmentation,
    Karras et al. 2022). Uses the global torch RNG of ``images``' device.

    >>> x = torch.arange(4.0).view(1, 1, 2, 2)
    >>> flipped, _, planes = random_flips(x, None, 1.0)
    >>> flipped.flatten().tolist(), planes[0, :, 0, 0].tolist()
    ([3.0, 2.0, 1.0, 0.0], [1.0, 1.0])
    """
    flips = torch.rand(len(images), AUGMENTATION_PLANES, device=images.device) < probability

    def flip(x):
        x = torch.where(flips[:, 0, None, None, None], x.flip(-1), x)
        return torch.where(flips[:, 1, None, None, None], x.flip(-2), x)

    planes = flips.to(images.dtype)[:, :, None, None].expand(-1, -1, *images.shape[-2:])
    return flip(images), None if flare_maps is None else flip(flare_maps), planes


def noise_level(images: torch.Tensor) -> float:
    """The pixel-to-pixel noise of model-space images: a robust standard deviation (1.4826 x the
    median absolute difference of horizontal neighbours, over sqrt 2), the noise a safe
    augmentation may add without making frames the data could not contain.

    >>> g = torch.Generator().manual_seed(0)
    >>> round(noise_level(0.1 * torch.randn(4, 1, 64, 64, generator=g)), 2)
    0.1
    """
    differences = (images[..., 1:] - images[..., :-1]).abs().flatten().double()
    return float(1.4826 * differences.median() / np.sqrt(2))


class SafeAugmentation:
    """Changes a solar image may have without changing what it shows: every image's brightness
    scaled by up to ``brightness`` (exposure and degradation differences, applied in physical units
    through ``normalization``), shifted by up to ``shift_px`` pixels (pointing jitter), and
    Gaussian noise of standard deviation ``noise`` (model space) added. Solar north and the
    east-west order stay: no flips, no rotations. Uses the global torch RNG.

    >>> from solar_diffusion.pipelines import ClipLogNormalization
    >>> augment = SafeAugmentation(ClipLogNormalization.for_browse(), brightness=0.0, shift_px=0, noise=0.0)
    >>> x = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4)
    >>> bool(torch.allclose(augment(x), x, atol=1e-6))
    True
    """

    #: Bytes of images augmented at a time: tensors below glibc's mmap threshold are reused, not mapped
    #: afresh for every operation (a batch of 64 frames of 256 px at once took 2.2 times as long; at
    #: 64 px a batch of 64 is one chunk).
    CHUNK_BYTES = 4 * 2**20

    def __init__(self, normalization, brightness: float = 0.03, shift_px: int = 1, noise: float = 0.0):
        self.normalization, self.brightness, self.shift_px, self.noise = normalization, brightness, int(shift_px), noise

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        chunk = max(1, self.CHUNK_BYTES // max(1, x[0].numel() * x.element_size())) if len(x) else 1
        if len(x) > chunk:
            return torch.cat([self(part) for part in x.split(chunk)])
        if self.brightness:
            scale = 1 + self.brightness * (2 * torch.rand(len(x), 1, 1, 1, device=x.device) - 1)
            x = self.normalization.forward(self.normalization.inverse(x) * scale)
        if self.shift_px:
            s = self.shift_px
            padded = F.pad(x, (s, s, s, s), mode="replicate")
            offsets = torch.randint(0, 2 * s + 1, (len(x), 2)).tolist()
            size = x.shape[-1]
            x = torch.stack([padded[i, :, dy:dy + size, dx:dx + size] for i, (dy, dx) in enumerate(offsets)])
        if self.noise:
            x = x + self.noise * torch.randn_like(x)
        return x.clamp(-1, 1)


def flare_free_partners(labels: torch.Tensor, device) -> torch.Tensor:
    """(N, N): whether frame j (a flare-free frame, ``NO_FLARE_CLASS_INPUT``) may lend its pixels to
    frame i of the batch (any other frame): the donors of ``random_hemisphere_swap`` and ``random_solar_rotation``.

    >>> flare_free_partners(torch.tensor([600.0, NO_FLARE_CLASS_INPUT, NO_FLARE_CLASS_INPUT]), "cpu").int().tolist()
    [[0, 1, 1], [0, 0, 1], [0, 1, 0]]
    """
    quiet = labels.to(device) == NO_FLARE_CLASS_INPUT
    return quiet[None, :] & ~torch.eye(len(labels), dtype=torch.bool, device=device)


#: Half-width of the blend between the two hemispheres of ``random_hemisphere_swap``, in solar radii
#: (2.7 px at 64 px): wide enough to leave no seam, narrow enough to keep active-region belts whole.
HEMISPHERE_BLEND_RSUN = 0.1


def random_hemisphere_swap(images: torch.Tensor, labels: torch.Tensor, flare_maps: torch.Tensor,
                           probability: float, rsun_px: float, equator_row: float | None = None,
                           keep_fraction: float = 0.99):
    """New Suns from the batch: each image, with ``probability``, keeps the hemisphere that holds
    its flares (either one, at random, for a flare-free image) and takes the other hemisphere from a
    flare-free image of the same batch, blended across the equator over +-``HEMISPHERE_BLEND_RSUN``;
    its flare map is blended alike, so the flares, the class input and the map still agree.
    Returns ``(images, flare_maps)``; the class inputs stay as they are.

    The northern and southern hemispheres' activity is close to independent, so a northern
    hemisphere of one day beside the southern one of another is a Sun that could have been seen:
    181 training days become 181 x 181 layouts, and the model has fewer whole days to redraw (the
    memorisation the fidelity issue measures). Images whose flares straddle the equator (less than
    ``keep_fraction`` of the map's flare mass in the kept half), whose flares are all off the disk
    (a class input without a mark on the map), or with no flare-free partner stay as they are. The
    frames are solar north up (the builder turns them so) and the equator is the row
    ``equator_row`` (0-based, FITS order: the disk centre's; the middle row by default; the B0
    angle, at most 7.25 degrees, is ignored). Model-space images; uses the global torch RNG of
    ``images``' device.

    >>> x = torch.stack([torch.zeros(1, 16, 16), torch.ones(1, 16, 16)])
    >>> maps = torch.zeros(2, 2, 16, 16); maps[:, 1] = 1; maps[0, 0, 13, 8] = 1.0  # a northern flare
    >>> labels = torch.tensor([600.0, NO_FLARE_CLASS_INPUT])
    >>> mixed, mixed_maps = random_hemisphere_swap(x, labels, maps, 1.0, rsun_px=6.0)
    >>> mixed[0, 0, -1, 0].item(), mixed[0, 0, 0, 0].item(), mixed_maps[0, 0, 13, 8].item()  # north kept
    (0.0, 1.0, 1.0)
    >>> low = random_hemisphere_swap(x, labels, maps, 1.0, rsun_px=6.0, equator_row=4.0)[0]  # a disk off centre
    >>> low[0, 0, 6, 0].item(), mixed[0, 0, 6, 0].item(), low[0, 0, 2, 0].item()  # row 6 is north of it
    (0.0, 1.0, 1.0)
    """
    n, size = len(images), images.shape[-2]
    device = images.device
    equator = (size - 1) / 2 if equator_row is None else equator_row
    rows = torch.arange(size, device=device, dtype=images.dtype) - equator  # FITS order: north is up
    half = HEMISPHERE_BLEND_RSUN * rsun_px
    north = (0.5 + 0.5 * torch.sin(0.5 * torch.pi * (rows / half).clamp(-1.0, 1.0)))[:, None]  # (size, 1)
    quiet = labels.to(device) == NO_FLARE_CLASS_INPUT
    mass = flare_maps[:, 0].flatten(1).sum(1)
    north_mass = (flare_maps[:, 0] * north).flatten(1).sum(1)
    flaring = mass > 0
    keep_north = torch.where(flaring, north_mass >= 0.5 * mass, torch.rand(n, device=device) < 0.5)
    kept_mass = torch.where(keep_north, north_mass, mass - north_mass)
    partners = flare_free_partners(labels, device)
    swap = ((torch.rand(n, device=device) < probability) & partners.any(1)
            & (quiet | (flaring & (kept_mass >= keep_fraction * mass))))
    if not swap.any():
        return images, flare_maps
    partner = torch.multinomial(partners[swap].to(images.dtype), 1).squeeze(1)
    weight = torch.where(keep_north[swap, None, None, None], north, 1 - north)  # (k, 1, size, 1)
    images, flare_maps = images.clone(), flare_maps.clone()
    images[swap] = weight * images[swap] + (1 - weight) * images[partner]
    flare_maps[swap, :1] = weight * flare_maps[swap, :1] + (1 - weight) * flare_maps[partner, :1]
    return images, flare_maps


#: Howard et al. (1990) sidereal differential rotation, microradians per second: A + B sin^2 + C sin^4
#: of the latitude (sunpy's ``differential_rotation(model="howard")``).
HOWARD_ROTATION_URAD_S = (2.894, -0.428, -0.370)
#: Earth's mean orbital motion, degrees a day: the synodic rate (as seen from Earth) is the sidereal less this.
EARTH_ORBIT_DEG_PER_DAY = 0.9856
#: The most days ``random_solar_rotation`` turns a frame (a uniform draw in +-this): 27 degrees at the
#: equator, 12 pixels at the disk centre at 64 px; much beyond, most of the turned disk would need the far side.
SOLAR_ROTATION_DAYS = 2.0
#: Projected radii (solar radii) over which ``random_solar_rotation`` fades from the turned view to
#: a flare-free frame: the turned view needs its output and its source inside the first (beyond it
#: the limb's brightening and foreshortening would be carried inward and smeared), none beyond the second.
SOLAR_ROTATION_FADE_RSUN = (0.85, 0.95)


def synodic_rotation_deg(latitude_rad: torch.Tensor, days) -> torch.Tensor:
    """How far (degrees of longitude) the solar surface at ``latitude_rad`` turns in ``days`` as
    seen from Earth (Howard et al. 1990; sunpy's ``differential_rotation(..., frame_time="synodic")``).

    >>> [round(float(d), 2) for d in synodic_rotation_deg(torch.tensor([0.0, 0.5236]), 1.0)]
    [13.34, 12.7]
    """
    a, b, c = HOWARD_ROTATION_URAD_S
    s2 = torch.sin(latitude_rad) ** 2
    sidereal = torch.rad2deg((a + b * s2 + c * s2 ** 2) * 1e-6 * 86400.0)
    return (sidereal - EARTH_ORBIT_DEG_PER_DAY) * days


def random_solar_rotation(images: torch.Tensor, labels: torch.Tensor, flare_maps: torch.Tensor, probability: float,
                          rsun_px: float, center_px: tuple, keep_fraction: float = 0.9,
                          days: torch.Tensor | None = None):
    """Each image, with ``probability``, seen up to ``SOLAR_ROTATION_DAYS`` earlier or later (a
    uniform draw): its disk turned by the Sun's differential rotation (``synodic_rotation_deg``),
    each latitude by its own longitude, and its flare map turned with it, so a flare stays on its
    active region. Returns ``(images, flare_maps)``.

    A region of a training day then shows up at other positions and beside other longitudes, as it
    did on the days around it, and a flare's position stops naming its training day (the copies of
    the flaring hemisphere the fidelity issue finds). The turned view is used where it and its
    source lie inside the limb's ring (``SOLAR_ROTATION_FADE_RSUN``: the limb's brightening is a
    line-of-sight effect that must not turn with the surface, and a source near the limb would be
    smeared when brought inward); the ring fades to a flare-free frame of the batch at the same
    place (as ``random_hemisphere_swap`` takes the other hemisphere), never to the frame itself,
    whose regions would show twice; the corona off the disk stays the frame's. A frame whose flare
    map would keep less (or more) than ``keep_fraction`` of its flare mass inside the ring (a flare
    in or carried into it), or with no flare-free partner, stays as it is; otherwise the map's peak is kept
    exactly (it says the flux). Frames solar north up, ``center_px`` (x, y: column,
    row, 0-based, FITS order) and ``rsun_px`` the disk's; the B0 angle is ignored. Model-space
    images; ``days`` (one per image) where given, else drawn with the global torch RNG of
    ``images``' device, as the partners are.

    >>> x = torch.linspace(-1, 1, 33).repeat(2, 1, 33, 1)  # brighter to the west
    >>> labels, maps = torch.tensor([NO_FLARE_CLASS_INPUT] * 2), torch.zeros(2, 2, 33, 33)
    >>> turned, _ = random_solar_rotation(x, labels, maps, 1.0, rsun_px=12.0, center_px=(16.0, 16.0))
    >>> bool(torch.equal(turned[..., 0, :], x[..., 0, :]))  # off the disk: as it was
    True
    >>> still, _ = random_solar_rotation(x, labels, maps, 1.0, 12.0, (16.0, 16.0), days=torch.zeros(2))
    >>> bool(torch.allclose(still, x, atol=1e-6))
    True
    """
    n, _, height, width = images.shape
    device, dtype = images.device, images.dtype
    chosen = torch.rand(n, device=device) < probability
    days = SOLAR_ROTATION_DAYS * (2 * torch.rand(n, device=device) - 1) if days is None else days.to(device, dtype)
    cx, cy = float(center_px[0]), float(center_px[1])
    u = ((torch.arange(width, device=device, dtype=dtype) - cx) / rsun_px)[None, :].expand(height, width)
    rows = torch.arange(height, device=device, dtype=dtype)[:, None].expand(height, width)
    v = (rows - cy) / rsun_px
    latitude = torch.asin(v.clamp(-1, 1))
    ring = torch.cos(latitude).clamp_min(1e-6)  # the latitude circle's half-width, solar radii
    longitude = torch.asin((u / ring).clamp(-1, 1))
    source = longitude[None] - torch.deg2rad(synodic_rotation_deg(latitude, 1.0))[None] * days[:, None, None]
    x_source = cx + rsun_px * ring * torch.sin(source)  # (n, H, W); rows keep their latitude
    grid = torch.stack([2 * x_source / (width - 1) - 1, (2 * rows / (height - 1) - 1).expand_as(x_source)], -1)
    radius = torch.sqrt(u ** 2 + v ** 2)
    disk = ((1 - radius) * rsun_px).clamp(0, 1)  # 1 on the disk, to 0 over the limb's pixel
    inner, outer = SOLAR_ROTATION_FADE_RSUN
    source_radius = torch.sqrt((ring * torch.sin(source)) ** 2 + v ** 2)
    weight = ((outer - torch.maximum(radius, source_radius)) / (outer - inner)).clamp(0, 1)
    weight = (weight * (source.abs() < torch.pi / 2))[:, None]  # (n, 1, H, W): the turned view

    def turn(z, frames=slice(None)):
        return F.grid_sample(z, grid[frames], mode="bilinear", padding_mode="border", align_corners=True)

    flares = flare_maps[:, :1]
    moved = turn(flares) * (weight >= 1)  # a flare is kept whole where the view is wholly turned
    mass, moved_mass = flares.flatten(1).sum(1), moved.flatten(1).sum(1)
    peak, moved_peak = flares.flatten(1).amax(1), moved.flatten(1).amax(1)
    partners = flare_free_partners(labels, device)
    rotate = chosen & partners.any(1) & ((mass <= 0) | ((moved_mass >= keep_fraction * mass)
                                               & (keep_fraction * moved_mass <= mass) & (moved_peak > 0)))
    if not rotate.any():
        return images, flare_maps
    partner = torch.multinomial(partners[rotate].to(dtype), 1).squeeze(1)
    images, flare_maps = images.clone(), flare_maps.clone()
    w = weight[rotate]
    images[rotate] = w * turn(images[rotate], rotate) + (disk - w) * images[partner] + (1 - disk) * images[rotate]
    scale = torch.where(mass > 0, peak / moved_peak.clamp_min(1e-12), torch.ones_like(mass))
    flare_maps[rotate, :1] = (moved * scale[:, None, None, None])[rotate]
    return images, flare_maps
