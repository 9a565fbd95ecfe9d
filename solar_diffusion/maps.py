"""Geometry of full-disk images (a model's geometry record; the disk found in an image), and
FITS / sunpy Map output of generated images.

A generated image has no observation time. Its header carries a documented nominal
``DATE-OBS`` (the geometry's ``date_obs``, by default the middle of the training data) that
fixes the observer (Earth), the plate scale (the disk's radius in pixels is the model's, the
Sun's angular radius that of the date) and hence the WCS; sunpy reads the files as AIA Maps
(``INSTRUME``, ``DETECTOR = 'AIA'``: its AIA colour maps, ``plot``, ``draw_limb``, ``rotate``,
``reproject_to`` work), and keywords mark them synthetic: ``OBJECT = 'synthetic full-disk Sun'``,
``ORIGIN``, ``CREATOR`` (software and version), ``DATE`` (when written), ``SYNTHETC = T``, ``FLARECLS``,
``GENSEED``, ``GENMODEL`` (a Hub id or the model folder's name); files carry ``CHECKSUM`` and
``DATASUM``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.coordinates import SkyCoord
from sunpy.coordinates import Helioprojective, get_earth, sun

from solar_diffusion import __version__
from solar_diffusion.files import atomic_write
from solar_diffusion.hub import model_name
from solar_diffusion.pipelines import (
    ClipLogNormalization,
    disk_center_px,
    image_center_px,
    rsun_px,
)
from solar_diffusion.units import BROWSE, data_unit

#: Nominal observation date used when a geometry gives none.
NOMINAL_DATE_OBS = "2012-07-01T00:00:00"
ORIGIN = "solar-diffusion"
#: OBJECT of a generated file.
SYNTHETIC_OBJECT = "synthetic full-disk Sun"


def disk_geometry(
    image_size: int,
    rsun_px: float,
    disk_center_px: tuple[float, float] | None = None,
    date_obs: str = NOMINAL_DATE_OBS,
    wavelengths_angstrom=(171,),
) -> dict:
    """Geometry of a full-disk image, as stored in a model's config.

    ``disk_center_px`` is 0-based (x, y), the image centre by default. The plate scale follows
    from the solar radius seen from Earth at ``date_obs``.

    >>> g = disk_geometry(64, rsun_px=27.1)
    >>> round(g["fov_rsun"], 3), g["disk_center_px"], round(g["plate_scale_arcsec"], 2)
    (2.362, [31.5, 31.5], 34.82)
    """
    if image_size <= 0 or not rsun_px > 0:
        raise ValueError(f"image_size and rsun_px must be positive, got {image_size}, {rsun_px}")
    c = image_center_px(image_size)
    center = disk_center_px if disk_center_px is not None else (c, c)
    rsun_arcsec = sun.angular_radius(date_obs).to_value(u.arcsec)
    return {
        "image_size": int(image_size),
        "fov_rsun": float(image_size / rsun_px),
        "disk_center_px": [float(center[0]), float(center[1])],
        "plate_scale_arcsec": float(rsun_arcsec / rsun_px),
        "date_obs": str(date_obs),
        "wavelengths_angstrom": [float(w) for w in wavelengths_angstrom],
    }


class NoSolarDisk(ValueError):
    """No consistent solar limb in an image; the message names the image."""


def fit_disk(image: np.ndarray, name="image", n_rays: int = 48) -> tuple[float, float, float]:
    """Centre (x, y) and radius in pixels of the solar disk in an EUV image.

    The limb is where the azimuthal ray profile peaks (EUV limb brightening, about 1.0 R_sun);
    a circle is fitted by least squares to the limb points of ``n_rays`` rays, dropping outliers
    (active regions at the limb). Raises ``NoSolarDisk`` if no consistent limb is found.
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

    ny, nx = image.shape
    smooth = gaussian_filter(image.astype(np.float32), 1.5)
    bright = smooth[smooth > np.percentile(smooth, 50)]
    if not bright.size:  # a uniform image: no limb anywhere
        raise NoSolarDisk(f"{name}: no solar disk found (image uniform)")
    mask = smooth > 0.5 * np.median(bright)
    if mask.sum() < 0.01 * image.size:
        raise NoSolarDisk(f"{name}: no solar disk found (image nearly empty)")
    yy, xx = np.nonzero(mask)
    cx, cy = xx.mean(), yy.mean()
    r0 = np.sqrt(mask.sum() / np.pi)
    radii = np.linspace(0.5 * r0, 1.5 * r0, 400)
    for _ in range(2):
        angles = np.linspace(0, 2 * np.pi, n_rays, endpoint=False)
        xs = cx + np.outer(np.cos(angles), radii)
        ys = cy + np.outer(np.sin(angles), radii)
        profiles = map_coordinates(smooth, [ys, xs], order=1, mode="constant", cval=0.0)
        limb_r = radii[np.argmax(profiles, axis=1)]
        px, py = cx + np.cos(angles) * limb_r, cy + np.sin(angles) * limb_r
        keep = np.abs(limb_r - np.median(limb_r)) < 3 * np.median(np.abs(limb_r - np.median(limb_r))) + 1.0
        if keep.sum() < n_rays // 2:
            raise NoSolarDisk(f"{name}: no consistent solar limb found")
        # algebraic circle fit: x^2 + y^2 + D x + E y + F = 0
        a = np.column_stack([px[keep], py[keep], np.ones(keep.sum())])
        b = -(px[keep] ** 2 + py[keep] ** 2)
        d, e, f = np.linalg.lstsq(a, b, rcond=None)[0]
        cx, cy = -d / 2, -e / 2
        r0 = np.sqrt(cx**2 + cy**2 - f)
        radii = np.linspace(0.8 * r0, 1.2 * r0, 400)
    return float(cx), float(cy), float(r0)


#: The least disk-to-corona contrast (``disk_contrast``) of a solar image. In the 2012 browse
#: composites whole frames have 1.1 or more in every channel (the faint 94 Å disk of August 2012
#: is the lowest, 1.11 to 1.17); noise (0.98), test patterns (0.89) and frames with a channel or a
#: part of the image missing, or the Moon in front, 1.00 or less.
MIN_DISK_CONTRAST = 1.05


def disk_contrast(image: np.ndarray, centre, rsun: float, sectors: int = 8) -> float:
    """The smallest, over ``sectors`` azimuthal sectors, of the disk's median brightness (0.3 to
    0.9 R_sun) over the corona's (1.15 to 1.4 R_sun), each plus 1 (in the image's unit): a solar
    EUV image is brighter inside its limb than beyond it in every direction; noise, a blank frame
    or a test pattern is not.

    >>> yy, xx = np.mgrid[:64, :64]
    >>> sun = np.where(np.hypot(xx - 31.5, yy - 31.5) < 20, 200.0, 5.0)
    >>> round(disk_contrast(sun, (31.5, 31.5), 20.0), 1), round(disk_contrast(np.full((64, 64), 9.0), (31.5, 31.5), 20.0), 1)
    (33.5, 1.0)
    """
    step = max(1, max(image.shape[-2:]) // 512)  # a 4096 px frame is judged at 512 px
    plane = np.asarray(image, dtype=np.float64)[::step, ::step]
    ny, nx = plane.shape
    yy, xx = np.mgrid[:ny, :nx]
    cx, cy, r = centre[0] / step, centre[1] / step, rsun / step
    rho = np.hypot(xx - cx, yy - cy) / r
    sector = ((np.arctan2(yy - cy, xx - cx) + np.pi) / (2 * np.pi) * sectors).astype(int) % sectors
    ratios = []
    for k in range(sectors):
        inside = plane[(sector == k) & (rho > 0.3) & (rho < 0.9)]
        outside = plane[(sector == k) & (rho > 1.15) & (rho < 1.4)]
        if inside.size and outside.size:  # a sector cut by the image edge is skipped
            ratios.append((max(np.median(inside), 0.0) + 1) / (max(np.median(outside), 0.0) + 1))
    return float(min(ratios)) if ratios else float("nan")


def check_solar_disk(image: np.ndarray, centre, rsun: float, name="image", channel: str = ""):
    """Raise ``NoSolarDisk`` unless ``disk_contrast`` is at least ``MIN_DISK_CONTRAST``: what
    fails is not a whole solar disk (part of the image or a channel missing, the Moon in front,
    noise, a test pattern)."""
    contrast = disk_contrast(image, centre, rsun)
    if not contrast >= MIN_DISK_CONTRAST:
        where = f" in {channel} Å" if channel else ""
        raise NoSolarDisk(f"{name}: not a whole solar disk{where}: some part of the disk is no brighter than the "
                          f"corona (contrast {contrast:.2f} < {MIN_DISK_CONTRAST}; a missing channel or part of the "
                          "image, an eclipse, noise or a test pattern?)")


def _check_geometry(geometry: dict):
    missing = {"image_size", "fov_rsun", "disk_center_px", "plate_scale_arcsec"} - set(geometry or {})
    if missing:
        raise ValueError(f"the model's geometry lacks {sorted(missing)}: cannot write a WCS header")


def synthetic_map(image: np.ndarray, metadata: dict, model: str = "") -> sunpy.map.GenericMap:
    """A sunpy Map of one generated 2-D image in the data unit, marked synthetic.

    ``metadata`` is one entry of the pipeline's output metadata (class, seed, unit, geometry).
    The WCS is scaled to the image's size if it differs from the geometry's.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2:
        raise ValueError(f"a Map holds one 2-D channel, got an image of shape {image.shape}")
    geometry = metadata.get("geometry") or {}
    _check_geometry(geometry)
    date_obs = geometry.get("date_obs", NOMINAL_DATE_OBS)
    # the disk's radius in pixels is the model's; the Sun's angular radius is the date's
    scale = sun.angular_radius(date_obs).to_value(u.arcsec) / rsun_px(geometry, image.shape[1])
    cx, cy = disk_center_px(geometry, image.shape[1])
    observer = get_earth(date_obs)
    center = SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=Helioprojective(observer=observer, obstime=date_obs))
    wavelengths = geometry.get("wavelengths_angstrom") or [171.0]
    try:
        unit = data_unit(ClipLogNormalization(unit=metadata.get("unit", "")))
    except ValueError:
        raise ValueError(
            f"a Map needs the image in its data unit (output_type='data_unit'), got unit {metadata.get('unit')!r}"
        ) from None
    header = sunpy.map.make_fitswcs_header(
        image,
        center,
        reference_pixel=[cx, cy] * u.pix,
        scale=[scale, scale] * u.arcsec / u.pix,
        telescope="SDO/AIA",
        instrument="AIA",
        wavelength=wavelengths[int(metadata.get("channel", 0))] * u.AA,
        unit=None if unit is BROWSE else unit,
    )
    header["rsun_obs"] = sun.angular_radius(date_obs).to_value(u.arcsec)
    header["detector"] = "AIA"  # sunpy's AIA Map: its colour map is sdoaia<wavelength>
    header["object"] = SYNTHETIC_OBJECT
    header["origin"] = ORIGIN
    header["creator"] = f"{ORIGIN} {__version__}"
    header["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    header["synthetc"] = True
    header["flarecls"] = str(metadata.get("flare_class", ""))
    header["genseed"] = -1 if metadata.get("seed") is None else int(metadata["seed"])
    header["genmodel"] = model_name(model)[:68]
    if unit is BROWSE:
        header["btype"] = "browse brightness (8-bit display-scaled, not DN)"
    forecast = metadata.get("forecast") or {}
    if forecast:  # a forecast model's image: the Sun before the flare asked, which peaks within FCSTHRS hours
        header["fcsthrs"] = float(forecast["horizon_hours"])
    header["comment"] = (
        f"SYNTHETIC image generated by {ORIGIN}; not an observation. DATE-OBS is nominal "
        "and sets the observer for the WCS only."
    )
    smap = sunpy.map.Map(image, header)
    if unit is BROWSE:  # display-scaled already: sunpy's AIA stretch (asinh) would wash it out
        from astropy.visualization import ImageNormalize, LinearStretch

        smap.plot_settings["norm"] = ImageNormalize(vmin=0, vmax=255, stretch=LinearStretch(), clip=False)
    return smap


def write_fits(path, image: np.ndarray, metadata: dict, model: str = "") -> Path:
    """Write one generated image as FITS with CHECKSUM and DATASUM (atomically: a temporary file,
    then a rename)."""
    from astropy.io import fits

    smap = synthetic_map(image, metadata, model=model)
    hdu = fits.PrimaryHDU(smap.data, fits.Header(smap.fits_header))
    return atomic_write(path, lambda tmp: hdu.writeto(tmp, overwrite=True, checksum=True))
