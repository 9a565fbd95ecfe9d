"""The standalone generation layer: ``SolarFlarePipeline`` and what generation needs.

``pipeline_solar_flare.py`` imports only torch, numpy, diffusers and the standard library, so it
is uploaded unchanged as a Hub repository's ``pipeline.py``; its ``__all__`` lists its names.
"""

from pathlib import Path

from . import pipeline_solar_flare
from .pipeline_solar_flare import *  # noqa: F403  (the names of its __all__)

#: The standalone pipeline file, saved as ``pipeline.py`` with every pipeline (``save_pretrained``).
STANDALONE_PIPELINE_FILE = Path(pipeline_solar_flare.__file__)

__all__ = ["STANDALONE_PIPELINE_FILE", *pipeline_solar_flare.__all__]
