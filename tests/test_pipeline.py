import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler, UniPCMultistepScheduler
from PIL import Image

from solar_diffusion import SolarFlarePipeline, null_condition
from solar_diffusion.generate import load_pipeline, sample_batches, set_unet_dtype, use_scheduler
from solar_diffusion.hub import push_to_hub, save_pipeline
from solar_diffusion.pipelines import STANDALONE_PIPELINE_FILE

STEPS = 4


def run(pipe, flare_class="X", n=1, seed=0, **kwargs):
    kwargs.setdefault("num_inference_steps", STEPS)
    return pipe(flare_class, num_images_per_class=n, generator=torch.Generator().manual_seed(seed), **kwargs)


def test_output_types(tiny_pipeline):
    default = run(tiny_pipeline, ["C", "X"], n=2)  # as diffusers' pipelines: PIL previews by default
    assert len(default.images) == 4 and all(isinstance(image, Image.Image) for image in default.images)
    np_out = run(tiny_pipeline, ["C", "X"], n=2, output_type="np")
    np.testing.assert_array_equal(np.stack([np.asarray(image) for image in default.images])[..., None],
                                  (np.flip(np_out.images, axis=1) * 255).round().astype(np.uint8))  # north up
    assert np_out.images.shape == (4, 16, 16, 1) and np_out.images.dtype == np.float32
    assert [m["flare_class"] for m in np_out.metadata] == ["C", "C", "X", "X"]
    assert np_out.metadata[0]["seed"] == 0 and np_out.metadata[0]["geometry"]["image_size"] == 16
    model = run(tiny_pipeline, ["C", "X"], n=2, output_type="model")
    pt = model.images  # model space, what the UNet works in: [-1, 1]
    assert pt.shape == (4, 1, 16, 16) and model.metadata[0]["unit"] == "model space [-1, 1]"
    assert pt.min() < -0.05 and pt.min() >= -1  # an untrained model's images reach below 0
    # diffusers' conventions: np (NHWC) and pt (NCHW) in [0, 1], so pipe.numpy_to_pil(np images) is right
    np.testing.assert_allclose(np_out.images, pt.permute(0, 2, 3, 1).numpy() / 2 + 0.5, atol=1e-7)
    assert np_out.images.min() >= 0 and np_out.images.max() <= 1 and np_out.metadata[0]["unit"] == "preview [0, 1]"
    unit_pt = run(tiny_pipeline, ["C", "X"], n=2, output_type="pt").images
    np.testing.assert_allclose(unit_pt.numpy(), pt.numpy() / 2 + 0.5, atol=1e-7)
    data_unit = run(tiny_pipeline, ["C", "X"], n=2, output_type="data_unit")
    assert data_unit.metadata[0]["unit"] == "DN/s"
    np.testing.assert_allclose(data_unit.images, tiny_pipeline.normalization.inverse(pt.numpy()), rtol=1e-6)
    assert data_unit.images.min() >= 5.0 and data_unit.images.max() <= 3500.0
    with pytest.raises(ValueError, match="output_type must be one of"):  # one name per output type, no old names
        run(tiny_pipeline, ["C", "X"], n=2, output_type="physical")
    with pytest.raises(ValueError, match="output_type must be one of"):
        run(tiny_pipeline, "C", output_type="latent")
    pil = run(tiny_pipeline, "X", output_type="pil").images
    assert isinstance(pil[0], Image.Image) and pil[0].mode == "L"
    # north up, as the CLI's PNG: the PIL image's top row is the array's last (northernmost) row
    from solar_diffusion.generate import preview_image

    same_seed = run(tiny_pipeline, "X", output_type="model").images[0].numpy()
    np.testing.assert_array_equal(np.asarray(pil[0]), np.asarray(preview_image(same_seed)))
    assert np.asarray(pil[0])[0].tolist() == np.round((same_seed[0, -1].clip(-1, 1) + 1) * 127.5).astype(int).tolist()
    images, metadata = run(tiny_pipeline, "X", return_dict=False, output_type="np")
    assert images.shape == (1, 16, 16, 1) and metadata[0]["flare_class"] == "X"


def test_flare_class_forms(tiny_pipeline):
    assert tiny_pipeline.label_ids("M2.5") == [2]
    assert tiny_pipeline.label_ids(["quiet", "X", 1, "c3.1"]) == [0, 3, 1, 1]
    for bad in ["B", "B2.0", "Q3", 7]:
        with pytest.raises(ValueError, match="it knows: quiet, C, M, X"):
            tiny_pipeline(bad, num_inference_steps=1)


def test_seeded_determinism_and_per_image_generators(tiny_pipeline):
    a = run(tiny_pipeline, ["C", "X"], n=2, seed=3).images
    b = run(tiny_pipeline, ["C", "X"], n=2, seed=3).images
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, run(tiny_pipeline, ["C", "X"], n=2, seed=4).images)

    seeds = [10, 11, 12]
    batch = tiny_pipeline(["quiet", "M", "X"], generator=[torch.Generator().manual_seed(s) for s in seeds],
                          num_inference_steps=STEPS)
    assert [m["seed"] for m in batch.metadata] == seeds
    alone = tiny_pipeline("X", generator=[torch.Generator().manual_seed(12)], num_inference_steps=STEPS)
    # the same image up to float32 rounding, which depends on the batch size and the thread count
    # (the CPU kernels sum in another order): 1.3e-5 seen with one thread; a wrong noise would be O(1)
    np.testing.assert_allclose(alone.images[0], batch.images[2], atol=1e-4)
    with pytest.raises(ValueError, match="one per image"):
        tiny_pipeline(["C", "X"], generator=[torch.Generator()], num_inference_steps=1)


def test_guidance_one_is_the_plain_conditional_path(tiny_pipeline):
    guided = run(tiny_pipeline, "M", n=2, guidance_scale=1.0, output_type="model").images

    # The conditional model alone, written out by hand with the same scheduler and noise.
    pipe, generator = tiny_pipeline, torch.Generator().manual_seed(0)
    x = torch.randn((2, 1, 16, 16), generator=generator)
    labels = torch.tensor([2, 2])
    pipe.scheduler.set_timesteps(STEPS)
    with torch.no_grad():
        for t in pipe.scheduler.timesteps:
            eps = pipe.unet(x, t, class_labels=labels).sample
            x = pipe.scheduler.step(eps, t, x, generator=generator).prev_sample
    np.testing.assert_allclose(guided.numpy(), x.clamp(-1, 1).numpy(), atol=1e-6)

    # With guidance the null class enters: the images differ, and it is one batched UNet call per step.
    calls = []
    handle = pipe.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        cfg = run(pipe, "M", n=2, guidance_scale=3.0, output_type="model").images
    finally:
        handle.remove()
    assert calls == [4] * STEPS
    assert not torch.allclose(cfg, guided)


@pytest.mark.parametrize("name, cls", [("ddim", DDIMScheduler), ("dpm", DPMSolverMultistepScheduler),
                                       ("dpm-sde", DPMSolverMultistepScheduler)])
def test_schedulers_swap(tiny_pipeline, name, cls):
    use_scheduler(tiny_pipeline, name)
    assert isinstance(tiny_pipeline.scheduler, cls)
    assert tiny_pipeline.scheduler.config.beta_schedule == "linear"
    out = run(tiny_pipeline, ["C", "X"], n=1, output_type="data_unit")
    assert np.isfinite(out.images).all() and out.images.shape == (2, 1, 16, 16)
    again = run(tiny_pipeline, ["C", "X"], n=1, output_type="data_unit")
    np.testing.assert_array_equal(out.images, again.images)
    with pytest.raises(ValueError, match="unknown scheduler"):
        use_scheduler(tiny_pipeline, "euler")


def test_any_diffusers_scheduler_runs_even_one_without_a_generator(tiny_pipeline):
    """UniPC's ``step`` takes no generator: the pipeline passes one only to schedulers that take it."""
    tiny_pipeline.scheduler = UniPCMultistepScheduler.from_config(tiny_pipeline.scheduler.config)
    out = run(tiny_pipeline, ["C", "X"], n=1, output_type="data_unit")
    assert np.isfinite(out.images).all() and out.images.shape == (2, 1, 16, 16)


def _fine_structure(images: torch.Tensor) -> torch.Tensor:
    """Per image, the standard deviation of the discrete Laplacian: the pixel-scale contrast."""
    x = images[:, 0].double()
    lap = 4 * x[:, 1:-1, 1:-1] - x[:, 2:, 1:-1] - x[:, :-2, 1:-1] - x[:, 1:-1, 2:] - x[:, 1:-1, :-2]
    return lap.flatten(1).std(1)


@pytest.mark.slow  # 60 solver steps of the 64 px paper-mode model on 3 images (with guidance): ~1-2 min on 2 CPU cores
def test_bundled_defaults_keep_the_fine_structure_of_a_50_step_solve():
    """The defaults (10 DPM-Solver++ steps) and DDIM at 50 steps integrate the same ODE: from the
    same noise they must reach images with the same pixel-scale contrast. Steps evenly spaced in
    t (diffusers' default spacing) end with a jump from t = 111 to 0 and lose a quarter of it
    (measured: 0.74 and 0.77 of DDIM 50's on two of these three); uniform log-SNR steps keep it."""
    from solar_diffusion.defaults import paper_model

    pipe = load_pipeline(paper_model())  # make paper-model restores its weights
    pipe.set_progress_bar_config(disable=True)
    labels = ["quiet", "C", "M"]
    defaults = next(sample_batches(pipe, labels, seed=7, num_inference_steps=10)).images
    use_scheduler(pipe, "ddim")
    reference = next(sample_batches(pipe, labels, seed=7, num_inference_steps=50)).images
    ratio = _fine_structure(defaults) / _fine_structure(reference)
    assert ((ratio > 0.9) & (ratio < 1.15)).all(), ratio


def test_save_and_load_give_identical_images(tiny_pipeline, tmp_path):
    before = run(tiny_pipeline, ["quiet", "X"], n=2).images
    save_pipeline(tiny_pipeline, tmp_path / "model")
    index = json.loads((tmp_path / "model" / "model_index.json").read_text())
    assert index["_class_name"] == "SolarFlarePipeline"
    assert index["id2label"] == {"0": "quiet", "1": "C", "2": "M", "3": "X"}
    assert index["normalization"]["unit"] == "DN/s"
    loaded = SolarFlarePipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.id2label == tiny_pipeline.id2label and null_condition(loaded.unet.config) == 4
    assert loaded.config.geometry == tiny_pipeline.config.geometry
    np.testing.assert_array_equal(run(loaded, ["quiet", "X"], n=2).images, before)

    # The standalone file loads the same folder through diffusers' remote-code path.
    remote = DiffusionPipeline.from_pretrained(tmp_path / "model", custom_pipeline=str(tmp_path / "model"),
                                               trust_remote_code=True)
    assert type(remote).__name__ == "SolarFlarePipeline" and type(remote) is not SolarFlarePipeline
    remote.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(run(remote, ["quiet", "X"], n=2).images, before)


def test_load_pipeline_samples_in_channels_last_with_the_same_images(tiny_pipeline, tmp_path):
    from solar_diffusion.generate import load_pipeline

    save_pipeline(tiny_pipeline, tmp_path / "model")
    plain = load_pipeline(tmp_path / "model", channels_last=False)
    fast = load_pipeline(tmp_path / "model")
    weight = fast.unet.down_blocks[0].resnets[0].conv1.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    for pipe in (plain, fast):
        pipe.set_progress_bar_config(disable=True)
    a = run(plain, ["quiet", "X"], n=2, output_type="model").images
    b = run(fast, ["quiet", "X"], n=2, output_type="model").images
    np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-4)
    # the images leave inference mode as ordinary, contiguous tensors that training can use
    assert not b.is_inference() and b.is_contiguous()
    (torch.nn.Conv2d(1, 1, 3)(b) ** 2).mean().backward()
    # and the folder still saves and reloads with channels_last weights
    save_pipeline(fast, tmp_path / "again")
    again = load_pipeline(tmp_path / "again")
    again.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(run(again, ["quiet", "X"], n=2, output_type="model").images.numpy(), b.numpy())


def test_pipeline_file_stands_alone():
    """The Hub's pipeline.py imports only the standard library, numpy, torch and diffusers."""
    import sys

    imports = [line.split()[1].split(".")[0] for line in STANDALONE_PIPELINE_FILE.read_text().splitlines()
               if line.startswith(("import ", "from "))]
    assert "numpy" in imports and set(imports) - set(sys.stdlib_module_names) <= {"numpy", "torch", "diffusers"}


def test_push_round_trip_through_a_folder_hub(tiny_pipeline, folder_hub):
    before = run(tiny_pipeline, ["C", "M"]).images
    repo_id = push_to_hub(tiny_pipeline, "solar/tiny", model_card="# tiny\n", api=folder_hub)
    assert repo_id == "solar/tiny"
    assert [c[0] for c in folder_hub.calls] == ["create_repo", "upload_folder"]
    repo = folder_hub.repo_path("solar/tiny")


    assert (repo / "pipeline.py").read_text() == STANDALONE_PIPELINE_FILE.read_text()
    assert (repo / "README.md").read_text() == "# tiny\n"
    loaded = SolarFlarePipeline.from_pretrained(repo)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(run(loaded, ["C", "M"]).images, before)


def test_unet_and_labels_must_agree():
    from diffusers import DDPMScheduler

    from solar_diffusion import build_unet

    with pytest.raises(ValueError, match="num_class_embeds=4"):
        SolarFlarePipeline(build_unet("tiny", 16, 3), DDPMScheduler(), id2label={0: "C", 1: "X"})


def flux_pipeline():
    from diffusers import DDPMScheduler

    from solar_diffusion import build_unet

    torch.manual_seed(0)
    unet = build_unet("tiny", 16, num_labels=0, conditioning="flux").eval()
    pipe = SolarFlarePipeline(unet, DDPMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_flux_conditioned_pipeline(tmp_path):
    from solar_diffusion import NULL_FLUX_CLASS_INPUT, flux_class_input

    pipe = flux_pipeline()
    assert pipe.conditioning == "flux" and pipe.id2label == {}
    values, names = pipe.class_inputs(["M2.5", "X", 1e-6])
    expected = [flux_class_input(np.log10(2.5e-5 / 0.7)), flux_class_input(np.log10(1e-4 * 10**0.5 / 0.7)),
                flux_class_input(-6.0)]
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-6)
    assert names == ["M2.5", "X3.2", "B7.0"]  # the 1e-6 W m^-2 GOES-R flux is B7.0 on the SWPC scale
    for bad in ["quiet", "Q3", -1.0]:
        with pytest.raises(ValueError, match="conditioned on the GOES peak flux"):
            pipe.class_inputs(bad)

    # guidance 1 is the conditional path; guidance != 1 batches the null value in one call
    out = run(pipe, "M2.5", n=2, guidance_scale=1.0, output_type="model")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((2, 1, 16, 16), generator=generator)
    pipe.scheduler.set_timesteps(STEPS)
    with torch.no_grad():
        for t in pipe.scheduler.timesteps:
            eps = pipe.unet(x, t, class_labels=values[:1].repeat(2)).sample
            x = pipe.scheduler.step(eps, t, x, generator=generator).prev_sample
    np.testing.assert_allclose(out.images.numpy(), x.clamp(-1, 1).numpy(), atol=1e-6)
    assert out.metadata[0]["flare_class"] == "M2.5" and out.metadata[0]["conditioning"] == "flux"
    seen = []
    hook = pipe.unet.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["class_labels"].tolist()),
                                               with_kwargs=True)
    try:
        run(pipe, "M2.5", n=1, guidance_scale=3.0, num_inference_steps=1)
    finally:
        hook.remove()
    assert seen == [[NULL_FLUX_CLASS_INPUT, pytest.approx(expected[0])]]

    save_pipeline(pipe, tmp_path / "flux")
    loaded = SolarFlarePipeline.from_pretrained(tmp_path / "flux")
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(run(loaded, "M2.5", n=2, guidance_scale=1.0, output_type="model").images.numpy(),
                                  out.images.numpy())


@pytest.mark.parametrize("make", ["class", "flux"])
def test_a_bfloat16_unet_samples_float32_images_close_to_float32_ones(tiny_pipeline, make):
    """``--dtype bfloat16``: the UNet runs in bf16, the latents and the scheduler stay float32."""
    import copy

    pipe = tiny_pipeline if make == "class" else flux_pipeline()
    label = "X" if make == "class" else "M2.5"
    full = run(pipe, label, n=2, output_type="model").images
    half = set_unet_dtype(copy.deepcopy(pipe), torch.bfloat16)
    images = run(half, label, n=2, output_type="model").images
    assert images.dtype == torch.float32 and torch.isfinite(images).all()
    assert torch.corrcoef(torch.stack([images.flatten(), full.flatten()]))[0, 1] > 0.99
    assert not torch.equal(images, full)  # the UNet really ran in bf16


def test_a_saved_pipeline_loads_with_plain_diffusers_where_solar_diffusion_is_not_importable(tiny_pipeline, tmp_path):
    """``save_pretrained`` writes ``pipeline.py``; the Hub snippet's call loads the folder in a process
    where ``import solar_diffusion`` fails, and makes the same images."""
    import subprocess
    import sys

    folder = tmp_path / "saved"
    tiny_pipeline.save_pretrained(folder)
    assert (folder / "pipeline.py").read_bytes() == STANDALONE_PIPELINE_FILE.read_bytes()
    expected = run(tiny_pipeline, ["C", "M"]).images
    np.save(tmp_path / "expected.npy", expected)
    code = (
        "import sys; sys.modules['solar_diffusion'] = None  # import solar_diffusion now raises ImportError\n"
        "import numpy as np, torch\nfrom diffusers import DiffusionPipeline\n"
        f"folder = {str(folder)!r}\n"
        "pipe = DiffusionPipeline.from_pretrained(folder, custom_pipeline=folder, trust_remote_code=True)\n"
        "pipe.set_progress_bar_config(disable=True)\n"
        "assert type(pipe).__name__ == 'SolarFlarePipeline' and 'solar_diffusion' not in type(pipe).__module__\n"
        f"out = pipe(['C', 'M'], num_inference_steps={STEPS}, generator=torch.Generator().manual_seed(0))\n"
        f"np.testing.assert_allclose(out.images, np.load({str(tmp_path / 'expected.npy')!r}), atol=1e-4)\n"
        "print('loaded', type(pipe).__module__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("loaded")


def test_the_bundled_model_carries_the_current_standalone_pipeline_file():
    """The bundled folder's ``pipeline.py`` (what ``custom_pipeline=`` loads) is this release's file."""
    from solar_diffusion.defaults import BUNDLED_MODEL

    assert (BUNDLED_MODEL / "pipeline.py").read_bytes() == STANDALONE_PIPELINE_FILE.read_bytes()


def test_a_saved_folder_carries_its_model_card_and_evaluation_encoder(tiny_pipeline, tmp_path):
    """``save_pretrained`` of a loaded model keeps its card and evaluation encoder, so that a folder
    pushed with diffusers' ``push_to_hub`` reaches the Hub with them; a new model gets a card."""
    from solar_diffusion.defaults import BUNDLED_MODEL

    pipe = SolarFlarePipeline.from_pretrained(BUNDLED_MODEL)
    pipe.save_pretrained(tmp_path / "copy")
    assert (tmp_path / "copy" / "README.md").read_bytes() == (BUNDLED_MODEL / "README.md").read_bytes()
    kept = sorted(p.relative_to(BUNDLED_MODEL).as_posix() for p in (BUNDLED_MODEL / "evaluation_encoder").rglob("*"))
    assert kept and kept == sorted(p.relative_to(tmp_path / "copy").as_posix()
                                   for p in (tmp_path / "copy" / "evaluation_encoder").rglob("*"))
    tiny_pipeline.save_pretrained(tmp_path / "new")
    card = (tmp_path / "new" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: diffusers") and "class-conditional" not in card and "class-conditioned" in card
