"""Named plain ``UNet2DModel`` configurations, class-conditional with the guidance null class."""

from __future__ import annotations

from diffusers import UNet2DModel

from solar_diffusion.pipelines import FLARE_MAP_CHANNELS, LABEL_ORDER

#: UNet2DModel keyword arguments of each preset (sample size and classes are set per model).
UNET_PRESETS: dict[str, dict] = {
    # For tests: a few thousand parameters, any sample size divisible by 2.
    "tiny": dict(
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=8,
    ),
    # CPU-friendly, 64-128 px, 5.5 M parameters (22 MB in float32).
    "small": dict(
        block_out_channels=(32, 64, 96, 128),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        norm_num_groups=32,
        attention_head_dim=32,
    ),
    # The paper's scale (26.6 M parameters; the paper's UNet has 23.3 M), self-attention at the
    # two lowest resolutions, for 256 px.
    "paper": dict(
        block_out_channels=(64, 128, 256, 256),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        norm_num_groups=32,
        attention_head_dim=64,
    ),
    # The super-resolution stage of a cascade (``build_upscaler_unet``): convolutions only (no
    # attention, also none in the mid block), so it trains on crops and runs on whole frames;
    # 1.07 M parameters for three channels and a flare map.
    "upscaler": dict(
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
        add_attention=False,
    ),
}


def build_unet(preset: str, sample_size: int, num_labels: int, in_channels: int = 1,
               conditioning: str = "class", augmentation_planes: int = 0, dropout: float = 0.0) -> UNet2DModel:
    """A freshly initialised conditional UNet of a named preset.

    ``conditioning="class"``: ``num_labels`` is the size of the label vocabulary; the UNet gets
    one more class embedding, the null class of classifier-free guidance (id ``num_labels``).
    ``conditioning="flux"``: the continuous log10 peak flux enters through a sinusoidal
    projection (``class_embed_type="timestep"``, see ``flux_class_input``); ``num_labels`` is unused.
    ``conditioning="flare"``: that flux embedding, plus the flare map (strength and position of
    each flare, ``flare_map``) concatenated to the input as ``FLARE_MAP_CHANNELS`` more channels.
    ``augmentation_planes``: inputs after those that tell the UNet how a training frame was
    augmented (``training.data.random_flips``; zero at sampling). ``dropout``: in the residual
    blocks while training (a regulariser for small datasets; none at sampling).

    >>> unet = build_unet("tiny", sample_size=16, num_labels=5)
    >>> unet.config.num_class_embeds, unet.config.sample_size
    (6, 16)
    """
    if preset not in UNET_PRESETS:
        raise ValueError(f"unknown UNet preset {preset!r}: choose one of {sorted(UNET_PRESETS)}")
    if conditioning not in ("class", "flux", "flare"):
        raise ValueError(f"conditioning is 'class', 'flux' or 'flare', got {conditioning!r}")
    if conditioning == "class" and num_labels < 1:
        raise ValueError(f"a class-conditional UNet needs at least one label, got {num_labels}")
    config = UNET_PRESETS[preset]
    factor = 2 ** (len(config["block_out_channels"]) - 1)
    if sample_size % factor:
        raise ValueError(f"preset {preset!r} needs a sample size divisible by {factor}, got {sample_size}")
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels + (FLARE_MAP_CHANNELS if conditioning == "flare" else 0) + augmentation_planes,
        out_channels=in_channels,
        num_class_embeds=num_labels + 1 if conditioning == "class" else None,
        class_embed_type=None if conditioning == "class" else "timestep",
        dropout=dropout,
        **config,
    )


def build_upscaler_unet(preset: str, sample_size: int, channels: int, flare_map: bool = False) -> UNet2DModel:
    """A freshly initialised super-resolution UNet of a named preset for ``sample_size`` px output.

    Its input is the noisy residual and the upsampled low-resolution image (``channels`` each), and
    with ``flare_map`` the flare map (``FLARE_MAP_CHANNELS``); its output the residual; its class
    input the noise-augmentation level (``class_embed_type="timestep"``, ``noise_level_input``).

    >>> unet = build_upscaler_unet("upscaler", 256, 3, flare_map=True)
    >>> unet.config.in_channels, unet.config.out_channels, sum(p.numel() for p in unet.parameters())
    (8, 3, 1069059)
    """
    if preset not in UNET_PRESETS:
        raise ValueError(f"unknown UNet preset {preset!r}: choose one of {sorted(UNET_PRESETS)}")
    return UNet2DModel(sample_size=sample_size, in_channels=2 * channels + (FLARE_MAP_CHANNELS if flare_map else 0),
                       out_channels=channels, class_embed_type="timestep", **UNET_PRESETS[preset])


def label_vocabulary(labels) -> dict[int, str]:
    """``id2label`` for the labels present in training data, lowest first.

    The classifier-free-guidance null id comes after these ids (``null_condition``).

    >>> label_vocabulary(["M", "quiet", "C", "M"])
    {0: 'quiet', 1: 'C', 2: 'M'}
    """
    present = set(labels)
    unknown = present - set(LABEL_ORDER)
    if unknown:
        raise ValueError(f"unknown labels {sorted(unknown)}: labels are one of {LABEL_ORDER}")
    return {i: label for i, label in enumerate(x for x in LABEL_ORDER if x in present)}
