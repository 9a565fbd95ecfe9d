"""The shipped AIA colour tables are sunpy's colour maps, applied as matplotlib applies them."""

import numpy as np
import pytest

from solar_diffusion.colormaps import aia_colormap_names, colorize, sunpy_tables


def test_the_shipped_tables_are_sunpys_colour_maps():
    import matplotlib
    import sunpy.visualization.colormaps  # noqa: F401  (registers the sdoaia colour maps)

    current = sunpy_tables()
    assert aia_colormap_names() == list(current) and len(current) == 10
    levels = np.concatenate([np.linspace(0, 1, 1001), [0.0, 1 / 256, 255 / 256, 1.0, -0.5, 1.5]])
    for name in current:
        expected = np.round(matplotlib.colormaps[name](np.clip(levels, 0, 1))[:, :3] * 255).astype(np.uint8)
        np.testing.assert_array_equal(colorize(levels, name), expected, err_msg=name)


def test_an_unknown_colour_map_is_named():
    with pytest.raises(ValueError, match="unknown colour map 'sdoaia999'"):
        colorize(np.zeros(2), "sdoaia999")
