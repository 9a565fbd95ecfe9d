"""The standalone generation layer: ``SolarFlarePipeline`` and what generation needs.

``pipeline_solar_flare.py`` imports only torch, numpy, diffusers and the standard library, so it
is uploaded unchanged as a Hub repository's ``pipeline.py``.
"""

from .pipeline_solar_flare import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    FLARE_LETTERS,
    FLUX_CONDITION_SCALE,
    FLUX_SCALES,
    GOES_R_SCALE,
    LABEL_ORDER,
    LETTER_FLUX,
    NULL_FLUX_CONDITION,
    QUIET_LABEL,
    SWPC_SCALE,
    SWPC_SCALING_FACTOR,
    ClipLogNormalization,
    SolarFlarePipeline,
    SolarFlarePipelineOutput,
    convert_flux_scale,
    flare_letter,
    flux_condition,
    format_flare_class,
    label_vocabulary,
    parse_flare_class,
    requested_flux,
)

__all__ = [
    "DEFAULT_GUIDANCE",
    "DEFAULT_STEPS",
    "FLARE_LETTERS",
    "FLUX_CONDITION_SCALE",
    "FLUX_SCALES",
    "GOES_R_SCALE",
    "LABEL_ORDER",
    "LETTER_FLUX",
    "NULL_FLUX_CONDITION",
    "QUIET_LABEL",
    "SWPC_SCALE",
    "SWPC_SCALING_FACTOR",
    "ClipLogNormalization",
    "SolarFlarePipeline",
    "SolarFlarePipelineOutput",
    "convert_flux_scale",
    "flare_letter",
    "flux_condition",
    "format_flare_class",
    "label_vocabulary",
    "parse_flare_class",
    "requested_flux",
]
