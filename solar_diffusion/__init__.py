"""solar-diffusion: class-conditional diffusion models of SDO/AIA images of chosen GOES flare classes.

The generation layer (``SolarFlarePipeline``, the GOES flare scale, labels, the null condition,
the normalisation and the disk geometry) lives in ``solar_diffusion.pipelines`` and is
re-exported here; this package adds units, model presets, FITS / sunpy Map output, metrics,
Hub publishing and the command line. The names load on first use, so that importing the
package (and ``solar-diffusion --help``) does not import torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_PIPELINE_NAMES = (
    "DEFAULT_GUIDANCE",
    "DEFAULT_STEPS",
    "FLARE_LETTERS",
    "GOES_R_SCALE",
    "NULL_FLUX_CLASS_INPUT",
    "QUIET_LABEL",
    "SWPC_SCALE",
    "ClipLogNormalization",
    "SolarFlarePipeline",
    "SolarFlarePipelineOutput",
    "convert_flux_scale",
    "flare_letter",
    "flux_class_input",
    "format_flare_class",
    "null_condition",
    "parse_flare_class",
)
_LOCATIONS = {name: "solar_diffusion.pipelines" for name in _PIPELINE_NAMES} | {
    "UNET_PRESETS": "solar_diffusion.presets",
    "build_unet": "solar_diffusion.presets",
    "label_vocabulary": "solar_diffusion.presets",
}

__all__ = sorted(_LOCATIONS)


def __getattr__(name):
    if name in _LOCATIONS:
        value = getattr(import_module(_LOCATIONS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'solar_diffusion' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LOCATIONS))
