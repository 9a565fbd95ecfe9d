"""The Hub model card of a trained SolarFlarePipeline (``huggingface_hub.ModelCard``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import ModelCard, ModelCardData

from solar_diffusion.pipelines import null_condition

if TYPE_CHECKING:
    from solar_diffusion import SolarFlarePipeline

TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ what }} (`SolarFlarePipeline`, solar-diffusion) that generates full-disk
SDO/AIA {{ channels }} Å images of a chosen GOES flare class, after Ramunno et al. 2024
(A&A 686, A285). Images are **synthetic**: FITS output is marked `SYNTHETC = T`.

## Use

```python
from solar_diffusion import SolarFlarePipeline
pipe = SolarFlarePipeline.from_pretrained("{{ repo }}")
images = pipe({{ request }}, num_images_per_class=4, output_type="data_unit").images  # {{ unit }}
```

Without the package: `DiffusionPipeline.from_pretrained(repo, custom_pipeline=repo, trust_remote_code=True)`.

## Labels

{{ labels }} (lowest first; the classifier-free-guidance null condition is {{ null_id }}).

## Training

- data: `{{ dataset }}` ({{ unit }}), train split only; label counts (train): {{ train_counts }}
- preset `{{ preset }}`, {{ image_size }} px, {{ steps }} optimiser steps, batch {{ batch }},
  lr {{ lr }}, {{ prediction_type }} prediction, {{ beta_schedule }} betas, T = {{ timesteps }},
  label dropout {{ label_dropout }}, EMA: {{ ema }}
- normalisation: clip to [{{ lo }}, {{ hi }}] {{ unit }}, {{ "log10, " if log else "" }}scaled to [-1, 1]

## Credits

Data: NASA/SDO and the AIA science team; NOAA GOES XRS; the Heliophysics Event Knowledgebase.
"""


def render_model_card(args: dict, dataset_info: dict, pipe: SolarFlarePipeline, steps: int, repo: str = "PATH") -> str:
    """Markdown of the model card for a training run that made ``pipe``."""
    from solar_diffusion.splits import hub_dataset_id

    norm, id2label = pipe.normalization, pipe.id2label
    hub_id = hub_dataset_id(args.get("dataset") or "")
    data = ModelCardData(
        library_name="diffusers",
        pipeline_tag="unconditional-image-generation",
        license="mit",
        tags=["solar-physics", "sdo-aia", "class-conditional", "diffusion", "goes-flares"],
        datasets=[hub_id] if hub_id else None,  # the Hub dataset it was trained on, where it came from the Hub
    )
    counts = dataset_info.get("counts", {}).get("train", {})
    card = ModelCard.from_template(
        data,
        template_str=TEMPLATE,
        title=f"solar-diffusion: AIA {','.join(dataset_info['config']['channels'])} Å, "
              + ("flares placed where asked" if pipe.conditioning == "flare" else "GOES classes"),
        what={"class": "A class-conditional DDPM", "flux": "A DDPM conditioned on the GOES peak flux",
              "flare": "A DDPM conditioned on each flare's GOES peak flux and position (a flare map beside the "
                       "noisy image)"}[pipe.conditioning],
        request={"class": '"X"', "flux": '"M2.5"', "flare": '"M2.5", flare_position=(-475, 397)  # arcsec'}[
            pipe.conditioning],
        channels=",".join(dataset_info["config"]["channels"]),
        repo=repo,
        unit=dataset_info["unit"],
        labels=", ".join(id2label.values()) or "continuous: the log10 GOES peak flux (ask for 'M2.5' or a flux)"
        + ("; 'quiet' for no flare; each flare at a position (helioprojective arcsec or pixels), or drawn from "
           "the training flares" if pipe.conditioning == "flare" else ""),
        null_id=null_condition(pipe.unet.config),
        dataset=hub_id or Path(str(args.get("dataset"))).name,
        train_counts=", ".join(f"{k}: {v}" for k, v in counts.items()),
        preset=args.get("preset"),
        image_size=pipe.unet.config.sample_size,
        steps=steps,
        batch=args.get("train_batch_size"),
        lr=args.get("learning_rate"),
        prediction_type=args.get("prediction_type"),
        beta_schedule=args.get("beta_schedule"),
        timesteps=args.get("num_train_timesteps"),
        label_dropout=args.get("label_dropout"),
        ema=args.get("use_ema"),
        lo=norm.lo,
        hi=norm.hi,
        log=norm.log,
    )
    return str(card)
