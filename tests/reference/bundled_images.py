"""The bundled model's reference images: fixed requests and seeds, kept to tell a refactor that
changes the images from one that does not (``tests/test_reference_images.py``).

The file records the digest of the weights that made it. After a retrain, regenerate it:

    HF_HUB_OFFLINE=1 python tests/reference/bundled_images.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

REFERENCE_FILE = Path(__file__).with_name("bundled_images.npz")
#: The size of the reference images: the bundled model's base stage.
REFERENCE_SIZE = 64
#: The requests: every class by the model's own guidance (its table), a given scale at a given
#: position, several flares in one image, each with novelty guidance at 2 day distances, and one
#: with the model's defaults (novelty target 1 since 2026-12-08).
REQUESTS = (
    dict(flare_class=["quiet", "B", "C", "M", "X"], novelty_target=2.0),
    dict(flare_class="M2.5", flare_position=(-475.0, 397.0), guidance_scale=2.0, novelty_target=2.0),
    dict(flare_class="X", flares=[("X2", (-300.0, 200.0)), ("C5", ("px", 20.0, 40.0))], novelty_target=2.0),
    dict(flare_class="X"),
)


def model_digest(pipe) -> str:
    """The digest of every UNet's weights: the base model's and a cascade's upscaler."""
    from solar_diffusion.augment import weights_digest

    return "+".join(weights_digest(unet) for unet in (pipe.unet, pipe.upscaler) if unet is not None)


def reference_images(pipe) -> np.ndarray:
    """The images of ``REQUESTS`` (N, H, W, C in [0, 1]), image k of the whole set seeded k, at the
    base model's 64 px (asked for explicitly: the bundled cascade's default is its upscaler's 256 px)."""
    images, k = [], 0
    for request in REQUESTS:
        n = 1 if isinstance(request["flare_class"], str) else len(request["flare_class"])
        generators = [torch.Generator().manual_seed(k + i) for i in range(n)]
        images.append(pipe(**request, generator=generators, output_type="np", image_size=REFERENCE_SIZE).images)
        k += n
    return np.concatenate(images)


def main():
    from solar_diffusion import SolarFlarePipeline
    from solar_diffusion.defaults import bundled_model

    pipe = SolarFlarePipeline.from_pretrained(bundled_model())
    pipe.set_progress_bar_config(disable=True)
    images = reference_images(pipe)
    np.savez_compressed(REFERENCE_FILE, images=np.round(images * 65535).astype(np.uint16),
                        weights_digest=model_digest(pipe))
    print(f"wrote {REFERENCE_FILE} ({len(images)} images)")


if __name__ == "__main__":
    main()
