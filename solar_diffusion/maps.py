"""Geometry of full-disk images, and FITS / sunpy Map output of generated images.

A generated image has no observation time. Its header carries a documented nominal
``DATE-OBS`` (the geometry's ``date_obs``, by default the middle of the training data) that
fixes the observer (Earth) and hence the WCS, and keywords that mark it synthetic:
``ORIGIN``, ``SYNTHETC = T``, ``FLARECLS``, ``GENSEED``, ``GENMODEL``.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.coordinates import SkyCoord
from sunpy.coordinates import Helioprojective, get_earth, sun

from solar_diffusion.files import atomic_write
from solar_diffusion.units import BROWSE, data_unit
from solar_diffusion.pipelines import ClipLogNormalization

#: Nominal observation date used when a geometry gives none.
NOMINAL_DATE_OBS = "2012-07-01T00:00:00"
ORIGIN = "solar-diffusion"


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
    center = disk_center_px if disk_center_px is not None else ((image_size - 1) / 2, (image_size - 1) / 2)
    rsun_arcsec = sun.angular_radius(date_obs).to_value(u.arcsec)
    return {
        "image_size": int(image_size),
        "fov_rsun": float(image_size / rsun_px),
        "disk_center_px": [float(center[0]), float(center[1])],
        "plate_scale_arcsec": float(rsun_arcsec / rsun_px),
        "date_obs": str(date_obs),
        "wavelengths_angstrom": [float(w) for w in wavelengths_angstrom],
    }


def rsun_px(geometry: dict, image_size: int | None = None) -> float:
    """Solar radius in pixels at ``image_size`` (the geometry's own size by default)."""
    return (image_size or geometry["image_size"]) / geometry["fov_rsun"]


def disk_center_px(geometry: dict, image_size: int | None = None) -> tuple[float, float]:
    """Disk centre (x, y), 0-based pixels, at ``image_size`` (the geometry's own size by default).

    >>> disk_center_px(disk_geometry(64, rsun_px=27.1), 128)
    (63.5, 63.5)
    """
    zoom = (image_size or geometry["image_size"]) / geometry["image_size"]
    cx, cy = ((c + 0.5) * zoom - 0.5 for c in geometry["disk_center_px"])
    return float(cx), float(cy)


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
    zoom = image.shape[1] / geometry["image_size"]
    scale = geometry["plate_scale_arcsec"] / zoom
    cx, cy = disk_center_px(geometry, image.shape[1])
    date_obs = geometry.get("date_obs", NOMINAL_DATE_OBS)
    observer = get_earth(date_obs)
    center = SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=Helioprojective(observer=observer, obstime=date_obs))
    wavelengths = geometry.get("wavelengths_angstrom") or [171.0]
    try:
        unit = data_unit(ClipLogNormalization(unit=metadata.get("unit", "")))
    except ValueError:
        raise ValueError(
            f"a Map needs the image in its data unit (output_type='physical'), got unit {metadata.get('unit')!r}"
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
    header["origin"] = ORIGIN
    header["synthetc"] = True
    header["flarecls"] = str(metadata.get("flare_class", ""))
    header["genseed"] = -1 if metadata.get("seed") is None else int(metadata["seed"])
    header["genmodel"] = str(model)[:68]
    if unit is BROWSE:
        header["btype"] = "browse brightness (8-bit display-scaled, not DN)"
    header["comment"] = (
        f"SYNTHETIC image generated by {ORIGIN}; not an observation. DATE-OBS is nominal "
        "and sets the observer for the WCS only."
    )
    return sunpy.map.Map(image, header)


def write_fits(path, image: np.ndarray, metadata: dict, model: str = "") -> Path:
    """Write one generated image as FITS (atomically: a temporary file, then a rename)."""
    smap = synthetic_map(image, metadata, model=model)
    return atomic_write(path, lambda tmp: smap.save(tmp, overwrite=True))
