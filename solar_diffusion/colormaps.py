"""sunpy's SDO/AIA colour maps (``sdoaia94`` ... ``sdoaia4500``) as 8-bit lookup tables shipped with
the package, so that previews and contact sheets need neither sunpy nor matplotlib (importing
``sunpy.visualization.colormaps`` alone takes about 1.5 s, most of ``generate``'s start-up).
``tests/test_colormaps.py`` checks the tables against sunpy's maps; ``write_tables`` remakes them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

TABLES = Path(__file__).resolve().parent / "aia_colormaps.npz"


@lru_cache(maxsize=None)
def _tables() -> dict:
    with np.load(TABLES) as data:
        return {name: data[name] for name in data.files}


def aia_colormap_names() -> list[str]:
    """The colour maps shipped, as sunpy names them.

    >>> aia_colormap_names()[:3]
    ['sdoaia94', 'sdoaia131', 'sdoaia171']
    """
    return list(_tables())


def colorize(levels: np.ndarray, cmap: str) -> np.ndarray:
    """Levels in [0, 1] as 8-bit RGB (shape + (3,)) in an AIA colour map, as matplotlib applies
    sunpy's map (256 entries: level v takes entry floor(256 v), 1.0 the last).

    >>> colorize(np.array([0.0, 1.0]), "sdoaia171").tolist()
    [[0, 0, 0], [255, 255, 255]]
    """
    tables = _tables()
    if cmap not in tables:
        raise ValueError(f"unknown colour map {cmap!r}: choose one of {', '.join(tables)}")
    index = np.clip((np.nan_to_num(np.asarray(levels, dtype=np.float64)) * 256).astype(np.int64), 0, 255)
    return tables[cmap][index]


def sunpy_tables() -> dict:
    """The tables as sunpy and matplotlib make them now (imports both)."""
    import matplotlib
    import sunpy.visualization.colormaps as cm

    names = [name for name in cm.cmlist if name.startswith("sdoaia")]
    levels = (np.arange(256) + 0.5) / 256
    return {name: np.round(matplotlib.colormaps[name](levels)[:, :3] * 255).astype(np.uint8) for name in names}


def write_tables(path=TABLES):
    """Remake the shipped tables from sunpy (after a sunpy release changes its colour maps)."""
    np.savez_compressed(path, **sunpy_tables())
