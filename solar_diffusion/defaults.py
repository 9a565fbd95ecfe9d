"""Where the models bundled with the package live (plain paths: importing this costs nothing)."""

from pathlib import Path

_MODELS = Path(__file__).resolve().parent / "models"

#: The diffusion pipeline bundled with the package (``SolarFlarePipeline.from_pretrained`` folder):
#: the release flare model (171, 131 and 94 Å; a flare of a chosen strength where it is asked).
BUNDLED_MODEL = _MODELS / "default"
#: The paper's mode: GOES labels only, 171 Å only (Ramunno et al. 2024). Its card, configuration and
#: evaluation encoder are in the tree; its UNet weights (22 MB) come from git history with ``make
#: paper-model`` (out of the tree so that a checkout, a training pack and the wheels fit the GPU
#: machine's 64 MiB transfer budget).
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


def output_size_encoder(model_dir, size: int) -> Path | None:
    """The encoder saved with a cascade to judge its ``size`` px outputs
    (``<model>/evaluation_encoder_<size>px``), or None where it has none.

    >>> output_size_encoder("/nowhere", 256) is None
    True
    """
    own = Path(model_dir) / f"{ENCODER_FOLDER}_{size}px"
    return own if (own / "config.json").exists() else None


def paper_model() -> Path:
    """The paper-mode model's folder, with its weights; a clear error where they are not restored."""
    if not (PAPER_MODEL / "unet" / "diffusion_pytorch_model.safetensors").exists():
        raise FileNotFoundError(f"the paper-mode model's weights are not in {PAPER_MODEL}: run `make paper-model` "
                                "(restores them from git history), or pass --model")
    return PAPER_MODEL
