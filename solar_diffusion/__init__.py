"""solar-diffusion: class-conditional diffusion models of SDO/AIA images of chosen GOES flare classes.

The generation layer (``SolarFlarePipeline``, the GOES flare scale, labels and normalisation)
lives in ``solar_diffusion.pipelines`` and is re-exported here; this package adds units, model
presets, FITS / sunpy Map output, Hub publishing and the command line.
"""

from solar_diffusion.pipelines import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    FLARE_LETTERS,
    GOES_R_SCALE,
    NULL_FLUX_CONDITION,
    QUIET_LABEL,
    SWPC_SCALE,
    ClipLogNormalization,
    SolarFlarePipeline,
    SolarFlarePipelineOutput,
    convert_flux_scale,
    flare_letter,
    flux_condition,
    format_flare_class,
    label_vocabulary,
    null_condition,
    parse_flare_class,
)
from solar_diffusion.presets import UNET_PRESETS, build_unet

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_GUIDANCE",
    "DEFAULT_STEPS",
    "FLARE_LETTERS",
    "GOES_R_SCALE",
    "NULL_FLUX_CONDITION",
    "QUIET_LABEL",
    "SWPC_SCALE",
    "UNET_PRESETS",
    "ClipLogNormalization",
    "SolarFlarePipeline",
    "SolarFlarePipelineOutput",
    "build_unet",
    "convert_flux_scale",
    "flare_letter",
    "flux_condition",
    "format_flare_class",
    "label_vocabulary",
    "null_condition",
    "parse_flare_class",
]
