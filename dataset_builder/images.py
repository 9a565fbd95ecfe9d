"""AIA image sources and preprocessing: level-1 FITS, JPEG 2000 and 8-bit browse images.

Every reader returns an ``AIAFrame``: a channels-first array in the data's unit (float32 DN/s
for FITS, uint8 brightness for browse images and JPEG 2000) in FITS row order (row 0 is the
south edge), with its observation time and the disk's centre and radius in pixels. A file that
cannot be used raises ``FrameRejected`` with the file and the reason; the builder reports it
and goes on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from solar_diffusion.maps import NoSolarDisk, check_solar_disk, fit_disk
from solar_diffusion.pipelines import disk_mask

#: Channels of the red, green and blue planes of the SDO browse composites (sdo_browse_2012).
DEFAULT_COMPOSITE_CHANNELS = ("171", "131", "94")
BROWSE_SUFFIXES = (".jpg", ".jpeg", ".png")
FITS_SUFFIXES = (".fits", ".fts", ".fit", ".fits.gz", ".fz")
JP2_SUFFIXES = (".jp2", ".j2k")
#: Field of view of the packaged images in solar radii (a disk-centred square, 2.3 R_sun wide).
DEFAULT_FOV_RSUN = 2.3
#: A disk must lie inside the image to within this fraction of its radius to count as full disk.
FULL_DISK_TOLERANCE = 0.03

_TIME_IN_NAME = re.compile(r"((?:19|20)\d{2})[-_]?(\d{2})[-_]?(\d{2})[_T-]{0,2}(\d{2})[_:]?(\d{2})(?:[_:]?(\d{2}))?")


class FrameRejected(ValueError):
    """A file that cannot become a training frame; the message names the file and the reason."""


@dataclass
class AIAFrame:
    """One observation: ``image`` is (channels, H, W) in ``unit``, FITS row order."""

    image: np.ndarray
    t_obs: pd.Timestamp
    channels: list[str]
    unit: str
    disk_center_px: tuple[float, float]
    rsun_px: float
    source: str
    notes: list[str] = field(default_factory=list)


def time_from_name(path) -> pd.Timestamp:
    """Observation time encoded in a file name such as ``20120101_0000_aia_171.jpg``.

    >>> time_from_name("images/20120307_011400_aia_171.png")
    Timestamp('2012-03-07 01:14:00')
    >>> time_from_name("aia.lev1_euv_12s.2012-03-07T011400Z.171.image_lev1.fits")
    Timestamp('2012-03-07 01:14:00')
    >>> time_from_name("2013_06_24__17_31_30_84__SDO_AIA_AIA_193.jp2")
    Timestamp('2013-06-24 17:31:30')
    """
    match = _TIME_IN_NAME.search(Path(path).name)
    if match is None:
        raise FrameRejected(f"{path}: no observation time in the file name (expected YYYYMMDD_HHMM[SS])")
    year, month, day, hour, minute, second = match.groups()
    return pd.Timestamp(f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}")


def _suffix(path) -> str:
    name = Path(path).name.lower()
    for suffixes in (FITS_SUFFIXES, JP2_SUFFIXES, BROWSE_SUFFIXES):
        for s in suffixes:
            if name.endswith(s):
                return s
    return Path(path).suffix.lower()


def read_frame(path, channels=("171",), t_obs=None, composite_channels=DEFAULT_COMPOSITE_CHANNELS,
               register=False, pointing_table=None, correction_table=None) -> AIAFrame:
    """Read one image file of any supported kind; see the module docstring.

    ``t_obs`` overrides the time (e.g. from an index CSV); otherwise it comes from the header
    (FITS, JPEG 2000) or the file name (browse images).
    """
    suffix = _suffix(path)
    if suffix in FITS_SUFFIXES or suffix in JP2_SUFFIXES:
        frame = read_map_file(path, channels, register=register, pointing_table=pointing_table,
                              correction_table=correction_table)
        if t_obs is not None:
            frame.t_obs = pd.Timestamp(t_obs)
        return frame
    if suffix in BROWSE_SUFFIXES:
        return read_browse(path, channels, t_obs=t_obs, composite_channels=composite_channels)
    raise FrameRejected(f"{path}: unsupported file type {suffix!r} (FITS, JPEG 2000, JPEG or PNG)")


def read_map_file(path, channels=("171",), register=False, pointing_table=None, correction_table=None) -> AIAFrame:
    """A level-1 AIA FITS file (-> DN/s) or a JPEG 2000 file (-> its 8-bit brightness) via sunpy.

    Optional aiapy steps: pointing update (needs ``pointing_table``, a table users supply
    offline), registration to level 1.5 (``register=True``) and degradation correction (needs
    ``correction_table``). What was done to the pixels is listed in the frame's ``notes``.
    """
    import astropy.units as u
    import sunpy.map
    from astropy.coordinates import SkyCoord

    try:
        smap = sunpy.map.Map(str(path))
    except Exception as err:  # sunpy raises many types for corrupt or truncated files
        raise FrameRejected(f"{path}: cannot be read as a solar image ({type(err).__name__}: {err})") from None
    if isinstance(smap, list):
        raise FrameRejected(f"{path}: holds {len(smap)} images; expected one")
    wavelength = smap.wavelength
    if wavelength is None or str(int(round(wavelength.to_value(u.AA)))) != str(channels[0]).lstrip("0"):
        raise FrameRejected(f"{path}: wavelength is {wavelength}, not the requested {channels[0]} Angstrom")
    is_jp2 = _suffix(path) in JP2_SUFFIXES
    notes = []
    data = smap.data
    if not is_jp2:
        exptime = smap.meta.get("exptime")
        if exptime is None:
            raise FrameRejected(f"{path}: header has no EXPTIME, so DN cannot become DN/s")
        if not float(exptime) > 0:
            raise FrameRejected(f"{path}: EXPTIME is {exptime}, not a positive exposure time")
        if pointing_table is not None or register or correction_table is not None:
            smap, notes = _aiapy_steps(smap, pointing_table, register, correction_table)
        data = smap.data / float(smap.meta["exptime"])
    data = np.asarray(data, dtype=np.float32)
    bad = ~np.isfinite(data)
    if bad.mean() > 0.01:
        raise FrameRejected(f"{path}: {bad.mean():.1%} of the pixels are NaN or infinite")
    if bad.any():
        notes.append(f"{int(np.isnan(data).sum())} NaN and {int(np.isinf(data).sum())} infinite pixels set to 0")
        data = np.where(bad, 0.0, data)
    centre = smap.wcs.world_to_pixel(SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=smap.coordinate_frame))
    rsun = (smap.rsun_obs / smap.scale.axis1).to_value(u.pix)
    if abs(smap.scale.axis1 - smap.scale.axis2) > 0.01 * smap.scale.axis1:
        raise FrameRejected(f"{path}: non-square pixels ({smap.scale}); resample first")
    _check_full_disk(path, data.shape, (float(centre[0]), float(centre[1])), rsun)
    try:
        check_solar_disk(data, (float(centre[0]), float(centre[1])), rsun, path)
    except NoSolarDisk as err:
        raise FrameRejected(str(err)) from None
    frame = AIAFrame(
        image=data[None] if not is_jp2 else data[None].astype(np.uint8),
        t_obs=pd.Timestamp(smap.date.isot),
        channels=[str(channels[0])],
        unit="browse" if is_jp2 else "DN/s",
        disk_center_px=(float(centre[0]), float(centre[1])),
        rsun_px=float(rsun),
        source=str(path),
        notes=notes,
    )
    return frame


def _aiapy_steps(smap, pointing_table, register, correction_table):
    """The requested aiapy steps (``build.check_requested_steps`` has checked that they can run)."""
    import aiapy.calibrate as calibrate
    from astropy.table import QTable

    notes = []

    pointing_table, correction_table = (
        QTable.read(t) if isinstance(t, (str, Path)) else t for t in (pointing_table, correction_table)
    )
    if pointing_table is not None:
        smap = calibrate.update_pointing(smap, pointing_table=pointing_table)
        notes.append("pointing updated with aiapy")
    if register:
        smap = calibrate.register(smap)
        notes.append("registered to level 1.5 with aiapy")
    if correction_table is not None:
        smap = calibrate.correct_degradation(smap, correction_table=correction_table)
        notes.append("degradation corrected with aiapy")
    return smap, notes


def read_browse(path, channels=("171",), t_obs=None, composite_channels=DEFAULT_COMPOSITE_CHANNELS) -> AIAFrame:
    """An 8-bit browse JPEG/PNG (north up), one channel or an RGB composite.

    For RGB files ``composite_channels`` names the channel of each plane (red, green, blue);
    grayscale files are the single requested channel. The disk is found by ``fit_disk``.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            pixels = np.asarray(img)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise FrameRejected(f"{path}: cannot be decoded as an image ({err})") from None
    if pixels.dtype != np.uint8:
        raise FrameRejected(f"{path}: browse images are 8-bit, got {pixels.dtype}")
    if pixels.ndim == 2:
        if len(channels) != 1:
            raise FrameRejected(f"{path}: grayscale image cannot provide channels {list(channels)}")
        planes = pixels[None]
    else:
        names = [str(c).lstrip("0") for c in composite_channels]
        try:
            planes = np.stack([pixels[..., names.index(str(c).lstrip("0"))] for c in channels])
        except ValueError:
            raise FrameRejected(
                f"{path}: composite planes are {list(composite_channels)}; requested {list(channels)}"
            ) from None
    planes = np.ascontiguousarray(planes[:, ::-1, :])  # north up -> FITS row order
    try:
        cx, cy, r = fit_disk(planes[0].astype(np.float32), path)
        for plane, channel in zip(planes, channels):  # a composite may lack one channel
            check_solar_disk(plane, (cx, cy), r, path, str(channel))
    except NoSolarDisk as err:
        raise FrameRejected(str(err)) from None
    _check_full_disk(path, planes.shape[1:], (cx, cy), r)
    return AIAFrame(
        image=planes,
        t_obs=pd.Timestamp(t_obs) if t_obs is not None else time_from_name(path),
        channels=[str(c) for c in channels],
        unit="browse",
        disk_center_px=(cx, cy),
        rsun_px=r,
        source=str(path),
    )


def _check_full_disk(path, shape, centre, rsun):
    ny, nx = shape[-2:]
    cx, cy = centre
    margin = -FULL_DISK_TOLERANCE * rsun
    inside = min(cx - rsun, nx - 1 - cx - rsun, cy - rsun, ny - 1 - cy - rsun)
    if not np.isfinite(rsun) or rsun <= 0 or inside < margin:
        raise FrameRejected(
            f"{path}: not a full-disk image: the disk (centre {cx:.1f}, {cy:.1f} px, radius {rsun:.1f} px) "
            f"does not fit in the {nx} x {ny} px field of view"
        )


def crop_and_resize(frame: AIAFrame, size: int, fov_rsun: float = DEFAULT_FOV_RSUN, limb_mask: float | None = None):
    """Disk-centred square crop ``fov_rsun`` solar radii wide, resized to ``size`` x ``size``.

    Pixels outside the original image are 0. ``limb_mask`` (in solar radii, e.g. 1.05) sets
    pixels beyond it to 0. Returns ``(image, rsun_px)`` in the frame's dtype; resizing averages
    with an antialiasing filter (no Python loops over pixels).
    """
    half = fov_rsun * frame.rsun_px / 2
    cx, cy = frame.disk_center_px
    # sample the crop on a size x size grid in the original pixel coordinates
    scale = 2 * half / size
    coords = (np.arange(size) + 0.5) * scale - half
    data = torch.from_numpy(np.ascontiguousarray(frame.image, dtype=np.float32))[None]
    n_y, n_x = frame.image.shape[-2:]
    # normalised grid coordinates for grid_sample (align_corners=False convention)
    gx = (cx + coords + 0.5) / n_x * 2 - 1
    gy = (cy + coords + 0.5) / n_y * 2 - 1
    if scale > 1:  # antialias: blur with the footprint of one output pixel before sampling
        k = int(np.ceil(scale))
        data = F.avg_pool2d(F.pad(data, (k // 2, (k - 1) // 2, k // 2, (k - 1) // 2), mode="replicate"), k, stride=1)
    grid = torch.stack(torch.meshgrid(torch.from_numpy(gy).float(), torch.from_numpy(gx).float(), indexing="ij")[::-1], -1)
    out = F.grid_sample(data, grid[None], mode="bilinear", padding_mode="zeros", align_corners=False)[0].numpy()
    rsun_out = frame.rsun_px / scale
    if limb_mask is not None:
        out[:, ~disk_mask(size, rsun_out, limb_mask)] = 0
    if frame.unit == "browse":
        out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return out.astype(np.float32) if frame.unit != "browse" else out, float(rsun_out)
