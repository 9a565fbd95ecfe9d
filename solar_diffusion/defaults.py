"""Where the models bundled with the package live (plain paths: importing this costs nothing)."""

from pathlib import Path

_MODELS = Path(__file__).resolve().parent / "models"

#: The diffusion pipeline bundled with the package (``SolarFlarePipeline.from_pretrained`` folder).
BUNDLED_MODEL = _MODELS / "default"
#: The solar-domain encoder of the evaluation, trained on the bundled model's data.
BUNDLED_ENCODER = _MODELS / "encoder"


def bundled_model() -> Path | None:
    """The bundled pipeline's folder, or None where none is bundled (a source checkout without it).

    >>> bundled_model() in (BUNDLED_MODEL, None)
    True
    """
    return BUNDLED_MODEL if (BUNDLED_MODEL / "model_index.json").exists() else None
