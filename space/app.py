"""The demo Space: the bundled flare model on a CPU, in Gradio.

    python space/app.py                                    # http://127.0.0.1:7860, this machine only
    SOLAR_DIFFUSION_MODEL=path/or/hub-id python space/app.py

Choose the flare (a class such as "M" or a strength such as "M2.5"; "quiet" for none), where it
is (a NOAA location such as "S15W01", helioprojective arcsec "-475,397", pixels "px:20,9", or
empty to draw one from the active-region belts), the seed and the denoising steps (of the base
model; a cascade's upscaler keeps its own). The Space shows each channel at the model's output size
(256 px for the bundled cascade: its 64 px base image super-resolved) in its sunpy AIA colour map
with the requested position circled, and offers the FITS files (one per channel, marked synthetic)
for download. This folder is a Hub Space (``README.md`` carries the Space header,
``requirements.txt`` what it installs).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import gradio as gr

#: Where generated files go (a run per folder); Gradio serves files from here.
OUTPUT_ROOT = Path(tempfile.gettempdir()) / "solar-diffusion-space"


def model_source(model=None):
    """The model the Space runs: ``model``, else ``$SOLAR_DIFFUSION_MODEL``, else None (the bundled one)."""
    return model or os.environ.get("SOLAR_DIFFUSION_MODEL")


def load_model(model=None):
    """The pipeline of ``model_source(model)``, ready to sample."""
    from solar_diffusion.defaults import BUNDLED_MODEL
    from solar_diffusion.generate import load_pipeline

    pipe = load_pipeline(model_source(model) or BUNDLED_MODEL)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, strength: str, position: str, seed: float, steps: float, model_name: str = "",
             image_size: int | None = None):
    """One image at ``image_size`` (default: the model's own, 256 px for the bundled cascade):
    (per-channel previews with captions, FITS paths, the request as text).

    Bad input (an unknown class, a position behind the limb) raises ``gr.Error`` with the
    pipeline's one-line message."""
    from solar_diffusion.generate import generate_to_folder
    from solar_diffusion.positions import flare_positions

    out = Path(tempfile.mkdtemp(prefix="run-", dir=_output_root()))
    try:
        where = None
        if position and position.strip():
            if pipe.conditioning != "flare":
                raise ValueError("this model takes no flare position (it is conditioned on the GOES class only)")
            where = flare_positions([position], pipe)
        records = generate_to_folder(pipe, out, [strength.strip()], num_images=1, num_inference_steps=int(steps),
                                     seed=int(seed), file_format="fits", model_name=model_name,
                                     flare_positions=where, image_size=image_size)
    except (ValueError, KeyError) as error:
        message = error.args[0] if error.args else str(error)
        print(f"refused: {message}", file=sys.stderr)  # one line in the server's log, not a traceback
        raise gr.Error(message, print_exception=False) from None
    wavelengths = pipe.config.geometry.get("wavelengths_angstrom") or []
    if len(wavelengths) > 1:
        previews = [(str(out / f"contact_sheet_{int(w):04d}.png"), f"{int(w)} Å") for w in wavelengths]
    else:
        previews = [(str(out / "contact_sheet.png"), f"{int(wavelengths[0])} Å" if wavelengths else "")]
    record = records[0]
    files = [str(out / name) for name in record["files"]]
    request = {k: record[k] for k in ("flare_class", "seed") if k in record}
    if record.get("flares"):
        request["flares"] = [{k: f[k] for k in ("flare_class", "position_arcsec", "position_px") if k in f}
                             for f in record["flares"]]
    return previews, files, json.dumps(request, indent=1)


def _output_root() -> Path:
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    return OUTPUT_ROOT


def build_demo(model=None) -> gr.Blocks:
    """The Space's page around the pipeline of ``load_model(model)``."""
    from solar_diffusion.hub import model_name

    pipe = load_model(model)
    name = model_name(model_source(model) or "solar-diffusion")
    flare_model = pipe.conditioning == "flare"
    classes = ["quiet", "C", "M", "X"] if flare_model else list(pipe.id2label.values())
    with gr.Blocks(title="solar-diffusion") as demo:
        gr.Markdown("# solar-diffusion: synthetic SDO/AIA images with a flare of a chosen strength\n"
                    f"Every image is **synthetic** (its FITS header says so), {pipe.output_size()} px. "
                    + ("Channels: " + ", ".join(f"{int(w)} Å" for w in pipe.config.geometry["wavelengths_angstrom"])
                       + "." if pipe.config.geometry.get("wavelengths_angstrom") else ""))
        with gr.Row():
            strength = gr.Dropdown(classes, value=classes[-1], allow_custom_value=flare_model, label="flare",
                                   info="a class, or a strength such as M2.5" if flare_model else "GOES class",
                                   elem_id="strength")
            position = gr.Textbox(label="position", placeholder="S15W01, -475,397 (arcsec) or px:20,9; empty: drawn",
                                  visible=flare_model, elem_id="position")
            seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed")
            steps = gr.Slider(1, 50, value=10, step=1, label="steps", elem_id="steps")
        button = gr.Button("Generate", variant="primary", elem_id="generate")
        gallery = gr.Gallery(label="channels (requested position circled)", columns=3, elem_id="images")
        files = gr.File(label="FITS", file_count="multiple", elem_id="fits")
        request = gr.Textbox(label="request (as generation.json records it)", lines=8, interactive=False,
                             elem_id="request")
        button.click(lambda *a: generate(pipe, *a, model_name=name), [strength, position, seed, steps],
                     [gallery, files, request], api_name="generate")
    return demo


def server_name(environ=os.environ) -> str:
    """The address the Space serves on: ``$GRADIO_SERVER_NAME`` if set, every interface on the Hub
    (which sets ``$SPACE_ID``), else this machine only.

    >>> server_name({}), server_name({"SPACE_ID": "sun/flares"}), server_name({"GRADIO_SERVER_NAME": "10.0.0.2"})
    ('127.0.0.1', '0.0.0.0', '10.0.0.2')
    """
    return environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if environ.get("SPACE_ID") else "127.0.0.1")


if __name__ == "__main__":
    build_demo().queue().launch(server_name=server_name(), server_port=int(os.environ.get("PORT", 7860)),
                                allowed_paths=[str(_output_root())])
