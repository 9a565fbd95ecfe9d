"""Where the models bundled with the package live (plain paths: importing this costs nothing)."""

from pathlib import Path

_MODELS = Path(__file__).resolve().parent / "models"

#: The diffusion pipeline bundled with the package (``SolarFlarePipeline.from_pretrained`` folder):
#: the release flare model (171, 131 and 94 Å; a flare of a chosen strength where it is asked).
BUNDLED_MODEL = _MODELS / "default"
#: The paper's mode: GOES labels only, 171 Å only (Ramunno et al. 2024).
PAPER_MODEL = _MODELS / "paper-171"
#: The folder, inside a model's folder, of the solar-domain encoder that evaluates it (trained on
#: that model's data: its channels, size and unit). One encoder per model.
ENCODER_FOLDER = "evaluation_encoder"
#: The evaluation encoder of the bundled model.
BUNDLED_ENCODER = BUNDLED_MODEL / ENCODER_FOLDER


def bundled_model() -> Path | None:
    """The bundled pipeline's folder, or None where none is bundled (a source checkout without it).

    >>> bundled_model() in (BUNDLED_MODEL, None)
    True
    """
    return BUNDLED_MODEL if (BUNDLED_MODEL / "model_index.json").exists() else None


def model_encoder(model_dir) -> Path:
    """The evaluation encoder saved with a model (``<model>/evaluation_encoder``), else the bundled one.

    >>> model_encoder(PAPER_MODEL).name, model_encoder("/nowhere") == BUNDLED_ENCODER
    ('evaluation_encoder', True)
    """
    own = Path(model_dir) / ENCODER_FOLDER
    return own if (own / "config.json").exists() else BUNDLED_ENCODER
