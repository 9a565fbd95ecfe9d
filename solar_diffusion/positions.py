"""Flare positions as solar physicists write them, for a flare model: NOAA/HEK locations such as
"S15W01" (Stonyhurst latitude and longitude), astropy ``SkyCoord`` objects, or helioprojective
arcsec, converted with sunpy to the helioprojective (x, y) arcsec the pipeline takes, as seen
from Earth at a date (the model's nominal date unless one is given)."""

from __future__ import annotations

import re

import astropy.units as u
from astropy.coordinates import SkyCoord
from sunpy.coordinates import HeliographicStonyhurst, Helioprojective, get_earth, sun
from sunpy.sun import constants

from solar_diffusion.pipelines import rsun_px

_LOCATION = re.compile(r"^\s*([NS])\s*(\d{1,2}(?:\.\d+)?)\s*([EW])\s*(\d{1,3}(?:\.\d+)?)\s*$", re.IGNORECASE)


def parse_location(text: str) -> tuple[float, float]:
    """Stonyhurst (latitude, longitude) in degrees of a NOAA/HEK location: north and west positive.

    >>> parse_location("S15W01"), parse_location("n20e45")
    ((-15.0, 1.0), (20.0, -45.0))
    """
    match = _LOCATION.match(str(text))
    if match is None:
        raise ValueError(f"{text!r} is not a NOAA location such as 'S15W01' (N/S latitude, E/W longitude, degrees)")
    ns, lat, ew, lon = match.groups()
    lat, lon = float(lat), float(lon)
    if lat > 90 or lon > 180:
        raise ValueError(f"{text!r}: latitude must be at most 90 and longitude at most 180 degrees")
    return (lat if ns.upper() == "N" else -lat), (lon if ew.upper() == "W" else -lon)


def parse_position(text: str, date) -> tuple:
    """A flare position as the command line takes it: a NOAA location ("S15W01", converted at
    ``date``), helioprojective arcsec ("-475,397") or pixels of the model's images ("px:20,9").

    >>> parse_position("-475,397", "2012-03-07"), parse_position("px:20,9", "2012-03-07")
    ((-475.0, 397.0), ('px', 20.0, 9.0))
    """
    text = str(text).strip()
    pixels = text.lower().startswith("px:")
    numbers = text[3:] if pixels else text
    if "," in numbers:
        try:
            x, y = (float(v) for v in numbers.split(","))
        except ValueError:
            raise ValueError(f"{text!r} is not a position: 'x,y' in arcsec, 'px:x,y' in pixels or 'S15W01'") from None
        return ("px", x, y) if pixels else (x, y)
    return helioprojective_arcsec(text, date)


def helioprojective_arcsec(position, date) -> tuple[float, float]:
    """Helioprojective (x, y) in arcsec, seen from Earth at ``date``, of a NOAA location string,
    a ``SkyCoord`` (any solar frame) or an (x, y) pair already in arcsec; a position behind the
    limb is refused.

    >>> x, y = helioprojective_arcsec("S15W01", "2012-07-01")
    >>> round(x), round(y)
    (16, -291)
    >>> helioprojective_arcsec("N10W95", "2012-07-01")
    Traceback (most recent call last):
    ...
    ValueError: 'N10W95' lies behind the limb seen from Earth on 2012-07-01: a flare must be on the visible disk
    """
    if isinstance(position, (tuple, list)) and len(position) == 2 and not isinstance(position[0], str):
        return float(position[0]), float(position[1])
    observer = get_earth(date)
    frame = Helioprojective(observer=observer, obstime=observer.obstime)
    if isinstance(position, SkyCoord):
        coord = position
    else:
        lat, lon = parse_location(position)
        coord = SkyCoord(lon * u.deg, lat * u.deg, frame=HeliographicStonyhurst(obstime=observer.obstime))
    if coord.frame.name in ("heliographic_stonyhurst", "heliographic_carrington"):
        # a point p of the surface (|p| = R) is seen from an observer at e when p . e > R^2 (the
        # limb, seen from a finite distance, lies a little short of 90 degrees from the disk centre)
        surface = coord.transform_to(HeliographicStonyhurst(obstime=observer.obstime))
        coord = SkyCoord(surface.lon, surface.lat, radius=constants.radius, frame=surface.frame)
        cartesian = coord.cartesian
        earth = observer.transform_to(HeliographicStonyhurst(obstime=observer.obstime)).cartesian
        if cartesian.dot(earth) <= cartesian.norm() ** 2:
            raise ValueError(f"{_described(position)} lies behind the limb seen from Earth on {str(date)[:10]}: a flare must be "
                             "on the visible disk")
    hpc = coord.transform_to(frame)
    return float(hpc.Tx.to_value(u.arcsec)), float(hpc.Ty.to_value(u.arcsec))


def flare_positions(positions, pipe, date=None) -> list:
    """``--flare-position`` values as a flare model's pipeline takes them (``model_position``),
    NOAA locations seen at ``date`` (default: the model's nominal date).

    >>> class FlareModel:
    ...     conditioning, config = "flare", type("Config", (), {"geometry": {"date_obs": "2012-07-01"}})
    >>> [tuple(round(v) for v in p[-2:]) for p in flare_positions(["S15W01", "-475,397", "px:20,9"], FlareModel())]
    [(16, -291), (-475, 397), (20, 9)]
    """
    if pipe.conditioning != "flare":
        raise ValueError(f"--flare-position needs a flare model; this model is {pipe.conditioning}-conditioned")
    return [model_position(position, pipe.config.geometry, date) for position in positions]


def model_position(position, geometry: dict, date=None) -> tuple:
    """A flare position in any form the project takes, as a flare model's pipeline places it:
    text as ``--flare-position`` writes it (``parse_position``), a ``SkyCoord``, an (x, y) pair
    in arcsec or ``("px", x, y)``, seen at ``date`` (default: the model's nominal date,
    ``geometry["date_obs"]``) and brought to the model's scale (``at_model_scale``). The one
    conversion of the command line and of ``SolarFlarePipeline`` (which calls it for text and
    SkyCoords).

    >>> geometry = {"date_obs": "2012-07-01"}
    >>> [round(v) for v in model_position("S15W01", geometry)], model_position(("px", 20, 9), geometry)
    ([16, -291], ('px', 20, 9))
    """
    date = date or geometry.get("date_obs")
    if isinstance(position, str):
        position = parse_position(position, date if "," in position else _needed(date, position))
    elif not isinstance(position, (tuple, list)):
        coord = position if isinstance(position, SkyCoord) else SkyCoord(position)
        if not coord.isscalar:
            raise ValueError(f"a SkyCoord of {coord.size} positions was given as one flare position: give one each")
        position = helioprojective_arcsec(coord, _needed(date, position))
    return at_model_scale(tuple(position), geometry, date) if date else tuple(position)


def _needed(date, position):
    """``date``, or a one-line error where a position needs one and the model has none."""
    if not date:
        raise ValueError(f"{_described(position)} needs a date to be seen from Earth, and this model has no nominal date "
                         "(geometry date_obs): give a date, or the position in arcsec (x, y) or ('px', x, y)")
    return date


def _described(position) -> str:
    """``position``'s repr on one line (a SkyCoord's spans several), for an error message."""
    return " ".join(repr(position).split())


def at_model_scale(position, geometry: dict, date) -> tuple:
    """A position in arcsec seen at ``date`` as the model's images hold it: the disk's radius in
    pixels is the model's whatever the date, so arcsec scale by the model's solar radius over the
    date's (``maps.synthetic_map`` writes the date's plate scale: the two cancel through the WCS).
    Pixel positions and geometries without a plate scale are left as they are.

    >>> geometry = {"image_size": 64, "fov_rsun": 2.0, "plate_scale_arcsec": 30.0}  # R = 960 arcsec
    >>> [round(v) for v in at_model_scale((-475.0, 397.0), geometry, "2012-01-04")]  # R = 975.6 arcsec
    [-467, 391]
    """
    if isinstance(position[0], str) or not {"plate_scale_arcsec", "fov_rsun", "image_size"} <= set(geometry):
        return position
    ratio = rsun_px(geometry) * geometry["plate_scale_arcsec"] / sun.angular_radius(date).to_value(u.arcsec)
    return tuple(float(v * ratio) for v in position)
