"""The paper's sampler (separate conditional and null UNet calls) against the pipeline's batched
guidance: the same images from the same noise, for class and flux models, with any scheduler."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, UniPCMultistepScheduler

from solar_diffusion import SolarFlarePipeline, build_unet, null_condition
from solar_diffusion.generate import sample_separate_guidance


def _pipeline(conditioning, scheduler):
    from solar_diffusion.maps import disk_geometry

    torch.manual_seed(0)
    unet = build_unet("tiny", 16, num_labels=3, conditioning=conditioning).eval()
    id2label = {0: "quiet", 1: "C", 2: "X"} if conditioning == "class" else None
    pipe = SolarFlarePipeline(unet, scheduler, id2label=id2label, geometry=disk_geometry(16, rsun_px=16 / 2.36))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("conditioning", ["class", "flux", "flare"])
@pytest.mark.parametrize("scheduler", [DDIMScheduler, UniPCMultistepScheduler])
def test_separate_calls_equal_the_batched_guidance(conditioning, scheduler):
    # deterministic schedulers, so the images depend only on the noise and the null condition
    pipe = _pipeline(conditioning, scheduler())
    where = {"flare_position": ("px", 5.0, 9.0)} if conditioning == "flare" else {}
    paper = sample_separate_guidance(pipe, "X", num_inference_steps=4, guidance_scale=3.0, seed=7, **where)
    batched = pipe("X", num_inference_steps=4, guidance_scale=3.0, generator=[torch.Generator().manual_seed(7)],
                   output_type="model", **where).images
    np.testing.assert_allclose(paper.numpy(), batched.numpy(), atol=5e-4)  # batched and separate calls round differently
    # the guided calls pair each request with the null condition (and an empty flare map), and guiding
    # away from it gives other images than the plain conditional model
    seen = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args, kwargs: seen.append(
        (args[0].clone(), kwargs["class_labels"].clone())), with_kwargs=True)
    try:
        plain = pipe("X", num_inference_steps=4, guidance_scale=1.0, generator=[torch.Generator().manual_seed(7)],
                     output_type="model", **where).images
    finally:
        hook.remove()
    assert not torch.allclose(plain, batched, atol=1e-3)
    null = 3 if conditioning == "class" else -100.0
    assert null_condition(pipe.unet.config) == null and len(seen) == 4 and seen[0][1].tolist() != [null]
    seen.clear()
    hook = pipe.unet.register_forward_pre_hook(lambda module, args, kwargs: seen.append(
        (args[0].clone(), kwargs["class_labels"].clone())), with_kwargs=True)
    try:
        pipe("X", num_inference_steps=1, guidance_scale=3.0, generator=[torch.Generator().manual_seed(7)], **where)
    finally:
        hook.remove()
    (model_input, labels), = seen
    assert labels[0].item() == null and labels[1].item() != null
    if conditioning == "flare":  # the null condition's flare map is empty, the conditional one holds the flare
        assert model_input[0, -2:].abs().max() == 0 and model_input[1, -2].max() > 0.5
