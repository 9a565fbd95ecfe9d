"""Generate images with a ``SolarFlarePipeline`` and write them as PNG, FITS or npy files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import try_to_load_from_cache

from solar_diffusion.colormaps import colorize
from solar_diffusion.defaults import BUNDLED_MODEL
from solar_diffusion.files import atomic_write
from solar_diffusion.hub import model_name as readable_model_name
from solar_diffusion.progress import job_bar
from solar_diffusion.startup import scipy_on_demand

with scipy_on_demand():  # diffusers' UNet and schedulers without scipy.stats at start-up (0.8 s)
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    from solar_diffusion.pipelines import (
        FLARE_LETTERS,
        QUIET_LABEL,
        SolarFlarePipeline,
        apply_guidance,
        north_up,
        null_condition,
        requested_flux,
        scheduler_step_kwargs,
        with_flare_map,
    )

SCHEDULERS = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    # DPM-Solver++ (2M) with its paper's step spacing, uniform in log-SNR (use_lu_lambdas): the last
    # steps fall near t = 0. diffusers' default (timesteps evenly spaced in t) ends with one jump
    # from t ~ 1000/N to 0, whose x0 estimate is a posterior mean: at 10 steps that blurred the
    # fine structure (Inception FD +20 against DDPM 1000 instead of +2; BENCHMARKS.md).
    # thresholding clips the x0 estimates to the data range [-1, 1], as DDPM and DDIM do with
    # clip_sample; without it early, inaccurate x0 estimates saturate pixel-space images
    "dpm": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_lu_lambdas": True,
                                          "thresholding": True, "sample_max_value": 1.0}),
    # the stochastic (SDE) variant: fresh noise at every step, like the ancestral DDPM sampler
    "dpm-sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2,
                                              "use_lu_lambdas": True, "thresholding": True, "sample_max_value": 1.0}),
}
FORMATS = ("png", "fits", "npy")


def use_scheduler(pipe: SolarFlarePipeline, name: str) -> SolarFlarePipeline:
    """Swap the pipeline's scheduler by name: "ddpm", "ddim", "dpm" (DPM-Solver++) or "dpm-sde"
    (its stochastic form).

    The trained noise schedule and prediction type carry over through ``from_config``.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}: choose one of {sorted(SCHEDULERS)}")
    cls, overrides = SCHEDULERS[name]
    if type(pipe.scheduler) is cls and all(pipe.scheduler.config.get(k) == v for k, v in overrides.items()):
        return pipe  # already that scheduler (the bundled model's is): nothing to rebuild
    with scipy_on_demand():  # from_config imports every compatible scheduler's module
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **overrides)
    return pipe


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def unet_dtype(name: str, device: str | None) -> torch.dtype:
    """The UNet's dtype for ``--dtype``: "auto" is bfloat16 on a CUDA device that supports it,
    else float32 (CPUs without native bf16 run it slower than float32).

    >>> unet_dtype("auto", "cpu"), unet_dtype("float16", "cpu")
    (torch.float32, torch.float16)
    """
    if name == "auto":
        cuda = device is not None and str(device).startswith("cuda") and torch.cuda.is_available()
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}: choose auto or one of {sorted(DTYPES)}")
    return DTYPES[name]


def unets(pipe: SolarFlarePipeline) -> list:
    """The pipeline's UNets: the base model's and a cascade's upscaler."""
    return [unet for unet in (pipe.unet, pipe.upscaler) if unet is not None]


def set_unet_dtype(pipe: SolarFlarePipeline, dtype: torch.dtype) -> SolarFlarePipeline:
    """Run the UNets in ``dtype``. One with a timestep-type class embedding (the flux, the noise
    level) keeps it in float32: diffusers feeds it the float32 sinusoidal projection without a cast."""
    for unet in unets(pipe):
        if unet.dtype != dtype:  # (a cast to the same dtype only makes diffusers warn)
            unet.to(dtype)
        if unet.config.class_embed_type == "timestep":
            unet.class_embedding.to(torch.float32)
    return pipe


def check_device(device: str):
    """Refuse, before any work, a device this machine does not have (a CUDA or MPS device without
    the GPU or a torch built for it).

    >>> check_device("cpu")
    """
    kind = torch.device(device).type
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not available.get(kind, True):
        build = "a CPU-only build" if kind == "cuda" and torch.version.cuda is None else f"torch {torch.__version__}"
        raise RuntimeError(f"--device {device}: no {kind.upper()} device is available here ({build}); "
                           "use --device cpu, or run where the GPU is")


def resolve_model(model) -> str:
    """The folder or Hub id of a ``--model`` value, refused in one line where nothing loads.

    A local folder is taken as given (it must hold ``model_index.json``); a name the project
    writes for a bundled model (``hub.model_name``: ``models/default``, ``paper-171``) is that
    model's folder; anything else is a Hub id, which offline (``HF_HUB_OFFLINE=1``) must be in
    the local Hugging Face cache.

    >>> resolve_model("models/default") == str(BUNDLED_MODEL)
    True
    """
    text = str(model)
    path = Path(text).expanduser()
    bundled = BUNDLED_MODEL.parent / text.removeprefix("models/")
    if not path.exists() and "/" not in text.removeprefix("models/") and (bundled / "model_index.json").exists():
        path = bundled
    if path.exists():
        if not (path / "model_index.json").exists():
            raise FileNotFoundError(f"{text} is not a saved SolarFlarePipeline: it has no model_index.json")
        return str(path)
    if path.is_absolute() or text.startswith((".", "~")) or text.count("/") != 1:
        raise FileNotFoundError(f"{text}: no such model folder (a Hub id is 'owner/name')")
    if hub_constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(text, "model_index.json"), str):
        raise FileNotFoundError(f"{text} is neither a local folder nor in the local Hugging Face cache, and "
                                f"HF_HUB_OFFLINE=1 forbids downloads: run `hf download {text}` where the Hub "
                                "can be reached, or pass a saved pipeline folder")
    return text


def super_resolution_stage(cascade) -> dict:
    """A saved cascade's super-resolution stage as ``SolarFlarePipeline`` takes it (``upscaler``,
    ``upscaler_scheduler``, ``upscaling``), to put on another base model of its size and channels
    (``train --upscaler-from``).

    >>> super_resolution_stage("no/such/model")
    Traceback (most recent call last):
    ...
    ValueError: --upscaler-from no/such/model: not a saved cascade (no model_index.json)
    """
    if not (Path(cascade) / "model_index.json").exists():
        raise ValueError(f"--upscaler-from {cascade}: not a saved cascade (no model_index.json)")
    pipe = load_pipeline(cascade, channels_last=False)
    if pipe.upscaler is None:
        raise ValueError(f"--upscaler-from {cascade}: it has no upscaler (it makes only "
                         f"{pipe.unet.config.sample_size} px images)")
    return {"upscaler": pipe.upscaler, "upscaler_scheduler": pipe.upscaler_scheduler,
            "upscaling": dict(pipe.config.upscaling)}


def load_pipeline(model: str | os.PathLike, device: str | None = None, channels_last: bool = True,
                  compile: bool = False, dtype: torch.dtype = torch.float32) -> SolarFlarePipeline:
    """Load a saved pipeline from a folder or a Hub id (offline: a cached one), ready to sample.

    The UNets' weights go to the channels_last memory format (its convolutions run 10-15% faster
    on CPU, BENCHMARKS.md; the outputs are the same to float rounding). ``compile=True`` compiles
    the UNet with ``torch.compile`` (inductor; a one-off cost at the first call of each batch size,
    worth it for thousands of images). ``dtype`` is the UNet's (``unet_dtype``); the latents and
    the scheduler stay float32. ``model`` is resolved by ``resolve_model``.
    """
    model = resolve_model(model)
    if device:
        check_device(device)
    with scipy_on_demand():  # loading the scheduler imports every compatible scheduler's module
        pipe = SolarFlarePipeline.from_pretrained(str(model))
    if device:
        pipe.to(device)
    set_unet_dtype(pipe, dtype)
    for unet in unets(pipe):
        if channels_last:
            unet.to(memory_format=torch.channels_last)
        if compile:
            unet.compile(dynamic=False)  # one graph per batch size (dynamic shapes break mkldnn convs)
    return pipe


def resolve_classes(pipe: SolarFlarePipeline, flare_classes) -> list:
    """Classes to generate, as asked; ``["all"]`` (or none) means every label the model knows,
    lowest first (the GOES letters for a flux-conditioned model; "quiet" and the letters for a
    flare model).

    >>> resolve_classes(None, ["X", "M2.5"])
    ['X', 'M2.5']
    """
    flare_classes = list(flare_classes or ["all"])
    if flare_classes != ["all"]:
        if "all" in flare_classes:
            raise ValueError("'all' means every class the model knows: give it alone, or name the classes")
        return flare_classes
    if pipe.conditioning == "class":
        return list(pipe.id2label.values())
    return ([QUIET_LABEL] if pipe.conditioning == "flare" else []) + list(FLARE_LETTERS)


def pipeline_request(conditioning: str, flare_class):
    """A requested class as the pipeline takes it: for a flux or flare model a number is a
    GOES-R peak flux in W m^-2 (what ``--list-classes`` offers), so text that reads as one is
    passed as a float; anything else as given.

    >>> pipeline_request("flare", "1e-4"), pipeline_request("flare", "X"), pipeline_request("class", "1e-4")
    (0.0001, 'X', '1e-4')
    """
    if conditioning != "class" and isinstance(flare_class, str):
        try:
            return float(flare_class)
        except ValueError:
            pass
    return flare_class


def check_requests(pipe: SolarFlarePipeline, requests: list, positions=None) -> list[str]:
    """What each request (in the pipeline's form, a flare model's with its position or None)
    becomes, as the files name it: "X3.2" for "X" (a bare letter is the centre of its decade) for
    a flux or flare model, "M" for "M2.5" for a class model. Every request is checked here, so
    that a run that would fail is refused before any file or folder is made."""
    pipe.check_inputs("model", 1, positions)
    return pipe.prepare_conditions(requests, 1, flare_position=positions).names


def request_in_words(flare_class, name: str, conditioning: str) -> str:
    """What a requested class became, in words (the CLI prints it where that is not what was asked).

    >>> request_in_words("X", "X3.2", "flare")
    '--flare-class X is X3.2: a GOES-R peak flux of 4.5e-04 W m^-2 (a bare letter is the centre of its decade)'
    >>> request_in_words("1e-4", "M7.0", "flux")
    '--flare-class 1e-4 is M7.0: a GOES-R peak flux of 1.0e-04 W m^-2 (classes are on the SWPC scale, 0.7 times GOES-R)'
    >>> request_in_words("M2.5", "M", "class")
    '--flare-class M2.5 is M: this model is conditioned on the GOES letter only'
    """
    text = f"--flare-class {flare_class} is {name}"
    if conditioning == "class":
        return f"{text}: this model is conditioned on the GOES letter only"
    request = pipeline_request(conditioning, flare_class)
    why = "(classes are on the SWPC scale, 0.7 times GOES-R)" if isinstance(request, float) else \
        "(a bare letter is the centre of its decade)"
    return f"{text}: a GOES-R peak flux of {requested_flux(request):.1e} W m^-2 {why}"


def default_batch_size(pipe: SolarFlarePipeline, image_size: int | None = None) -> int:
    """Images per pipeline call at the output size ``image_size`` (default: the model's,
    ``output_size``; a cascade's 256 px): 16 at 64 px, fewer for larger images so that a batch
    holds as many pixels (4 at 128 px, 1 at 256 px). On 2 CPU cores a batch of 16 at 128 px took
    1.5 times longer per image than batches of 1 to 4, and the bundled cascade at 256 px took
    longer per image at batch 16 than at batch 1 (BENCHMARKS.md: the activations leave the caches).

    >>> from diffusers import DDPMScheduler
    >>> from solar_diffusion.presets import build_unet
    >>> [default_batch_size(SolarFlarePipeline(build_unet("tiny", size, num_labels=5), DDPMScheduler()))
    ...  for size in (64, 128, 256)]
    [16, 4, 1]
    """
    size = pipe.output_size(image_size)
    height, width = (size, size) if isinstance(size, int) else size
    return max(1, 16 * 64 * 64 // (height * width))


def sample_batches(pipe: SolarFlarePipeline, labels, seed: int = 0, num_inference_steps: int | None = None,
                   guidance_scale: float | None = None, batch_size: int | None = None, positions=None,
                   novelty_target: float | None = None, image_size: int | None = None):
    """Yield pipeline outputs (model space, ``output_type="model"``) for ``labels`` in batches of
    ``batch_size`` (default: ``default_batch_size``); image k uses its own generator seeded
    ``seed + k``, so any image can be remade on its own. ``positions`` (a flare model's; one per
    label, None to draw one) go with their labels; ``novelty_target`` None is the model's own;
    ``image_size`` None is the model's output size (a cascade's upscaler's): a caller that needs the
    base model's images asks for ``pipe.unet.config.sample_size``."""
    labels = list(labels)
    batch_size = batch_size or default_batch_size(pipe, image_size)
    for start in range(0, len(labels), batch_size):
        end = min(start + batch_size, len(labels))
        generators = [torch.Generator(device="cpu").manual_seed(seed + k) for k in range(start, end)]
        where = {} if positions is None else {"flare_position": list(positions[start:end])}
        yield pipe(flare_class=labels[start:end], num_images_per_class=1, guidance_scale=guidance_scale,
                   num_inference_steps=num_inference_steps, generator=generators, output_type="model",
                   novelty_target=novelty_target, image_size=image_size, **where)


@torch.inference_mode()
def sample_separate_guidance(pipe: SolarFlarePipeline, label: str, num_inference_steps: int = 1000,
                             guidance_scale: float | None = None, seed: int = 0,
                             flare_position=None) -> torch.Tensor:
    """One image the way the paper samples: the pipeline's scheduler, with the conditional and
    the null UNet calls made separately at batch 1 on every step (the pipeline batches them).
    With ``use_scheduler(pipe, "ddpm")`` and 1000 steps this is the paper's ancestral sampler;
    it is the baseline of the sampling benchmarks. A flare model takes ``flare_position`` (as the
    pipeline does; None draws one with ``seed``) and its flare map; ``guidance_scale`` None is the
    pipeline's own for the request. Returns (1, C, H, W) in model space."""
    unet, scheduler = pipe.unet, pipe.scheduler
    generator = torch.Generator().manual_seed(seed)
    where = {} if pipe.conditioning != "flare" else {"flare_position": flare_position}
    conditions = pipe.prepare_conditions(label, 1, generator=generator, **where)
    (scale,) = pipe.guidance_scales(guidance_scale, conditions.flares, 1)
    cond = conditions.class_inputs.to(unet.device)
    null = torch.full_like(cond, null_condition(unet.config))
    maps = conditions.flare_maps
    null_maps = None if maps is None else torch.zeros_like(maps)
    x = pipe.prepare_noise(1, generator, unet.device)
    scheduler.set_timesteps(num_inference_steps)
    step_kwargs = scheduler_step_kwargs(scheduler, generator)
    for t in scheduler.timesteps:
        c = unet(with_flare_map(x, maps), t, class_labels=cond).sample
        u = unet(with_flare_map(x, null_maps), t, class_labels=null).sample
        x = scheduler.step(apply_guidance(u, c, scale), t, x, **step_kwargs).prev_sample
    return x.clamp(-1, 1)


def describe_guidance(guidance_scale: float | None, table: dict | None = None) -> str:
    """The guidance of a run in words, for logs and reports: one scale, or None where each
    image's scale came from the model's ``guidance_by_flux`` table (``guidance_setting``).

    >>> describe_guidance(3.0), describe_guidance(None, {"log10_flux": [-5.4, -4.4], "scale": [1.5, 3.0], "quiet": 3.0})
    ('guidance 3', 'guidance by the requested flux (1.5 to 3; quiet 3)')
    """
    if guidance_scale is not None:
        return f"guidance {guidance_scale:g}"
    low, high = min(table["scale"]), max(table["scale"])
    return f"guidance by the requested flux ({low:g} to {high:g}; quiet {table['quiet']:g})"


def write_guidance_table(model_dir, points, quiet: float) -> dict:
    """Set a saved flare model's ``guidance_by_flux`` table (the default guidance per image, by its
    largest requested flux) in its ``model_index.json``; returns the table. ``points`` are
    (request, scale) pairs: a request as the pipeline reads one (a class on the SWPC scale, or a
    GOES-R flux), in any order; an empty list removes the table (one scale for all again).

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp()); _ = (folder / "model_index.json").write_text("{}")
    >>> write_guidance_table(folder, [("X1", 3.0), ("B1", 1.5), ("M9.9", 1.5)], quiet=3.0)
    {'log10_flux': [-6.8451, -3.8495, -3.8451], 'scale': [1.5, 1.5, 3.0], 'quiet': 3.0}
    """
    from solar_diffusion.hub import set_model_index
    from solar_diffusion.pipelines import check_guidance_table, requested_flux

    table = {}
    if points:
        pairs = sorted((round(float(np.log10(requested_flux(request))), 4), float(scale)) for request, scale in points)
        if len({x for x, _ in pairs}) < len(pairs):
            raise ValueError(f"guidance table points {points}: two requests have the same flux")
        table = {"log10_flux": [x for x, _ in pairs], "scale": [s for _, s in pairs], "quiet": float(quiet)}
        check_guidance_table(table)
    set_model_index(model_dir, guidance_by_flux=table)
    return table


def generate_to_folder(
    pipe: SolarFlarePipeline,
    out_dir,
    flare_classes=("all",),
    num_images: int = 4,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
    file_format: str = "png",
    batch_size: int | None = None,
    model_name: str = "",
    flare_positions=None,
    overwrite: bool = False,
    progress: bool = False,
    novelty_target: float | None = None,
    log=None,
    date_obs: str | None = None,
    image_size: int | None = None,
) -> list[dict]:
    """Generate ``num_images`` per class and write one file per image, named by class and seed.

    Image k (counting over all classes) uses its own generator seeded ``seed + k``, so any image
    can be remade on its own. A flare model takes ``flare_positions``, one per entry of
    ``flare_classes`` (see the pipeline's ``flare_position``; None draws one); its images' flares
    are in their metadata. Also writes ``generation.json`` (settings and per-image metadata,
    with the class each image was asked for as ``requested_class``) and ``contact_sheet.png``.
    Returns the per-image metadata with the file names. ``log`` (e.g. ``print``) is told what a
    request became where that is not what was asked ("X" is X3.2 for a flare model).

    A folder that holds an earlier run's files is refused unless ``overwrite``, which first
    removes the files that run's ``generation.json`` names (nothing else): one run per folder.
    Every request is checked before anything is written; a run that fails later removes what it
    wrote (the folder too where it made it), one that is interrupted records its whole images.
    ``progress`` shows one bar over all the images (on a terminal). ``date_obs`` is the date the
    images stand for (the observer of FITS headers; default: the model's nominal date), the date
    at which ``flare_positions`` were given. ``image_size`` is the images' size: the base model's
    or a cascade's upscaler's (the default: ``SolarFlarePipeline.output_size``).
    """
    if file_format == "fits":  # sunpy.map and astropy: imported only to write FITS (a second or more at start-up)
        from solar_diffusion.maps import write_fits  # noqa: F401  (here: a missing sunpy fails before any work)

    if file_format not in FORMATS:
        raise ValueError(f"unknown format {file_format!r}: choose one of {FORMATS}")
    out_dir = Path(out_dir)
    classes, labels, positions = _requests(pipe, flare_classes, flare_positions, num_images, log)
    guidance, steps = pipe.guidance_setting(guidance_scale), pipe.inference_steps(num_inference_steps)  # refused before any file goes
    novelty = pipe.novelty_setting(novelty_target)
    image_size = pipe.output_size(image_size)
    clear_earlier_run(out_dir, overwrite)
    model_name = readable_model_name(model_name)  # records and titles name no machine path
    created = outermost_missing(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {"model": model_name, "scheduler": type(pipe.scheduler).__name__, "num_inference_steps": steps,
                "guidance_scale": guidance, "novelty_target": novelty, "format": file_format,
                "date_obs": str(date_obs or pipe.config.geometry.get("date_obs")), "image_size": image_size}
    if guidance is None:  # each image's scale is in its record
        settings["guidance_by_flux"] = dict(pipe.config.guidance_by_flux)
    records, previews = [], []
    try:
        check_writable(out_dir)
        _generate_files(pipe, out_dir, labels, seed, num_inference_steps, guidance_scale, batch_size, positions,
                        file_format, model_name, records, previews, job_bar(len(labels), "generating", "image",
                                                                            show=progress), novelty_target,
                        [str(c) for c in classes for _ in range(num_images)], date_obs, image_size)
        write_record(out_dir, settings, records)
        names, captions = [r["flare_class"] for r in records], [f"seed {r['seed']}" for r in records]
        markers = [[f["position_px"] for f in r.get("flares", [])] for r in records]
        write_contact_sheets(out_dir, previews, names, captions, model_name,
                             pipe.config.geometry.get("wavelengths_angstrom") or [], markers)
    except KeyboardInterrupt:  # the images written so far are whole: record them, so --overwrite can clear them
        write_record(out_dir, settings | {"interrupted": True}, records)
        raise
    except Exception:
        remove_run(out_dir, records, created)
        raise
    return records


def _requests(pipe: SolarFlarePipeline, flare_classes, flare_positions, num_images: int, log) -> tuple:
    """The classes asked (``resolve_classes``), every image's request in the pipeline's form and
    its position (None where no position is given), all checked (``check_requests``); ``log``
    is told what a request became where that differs from what was asked."""
    classes = resolve_classes(pipe, flare_classes)
    requests = [pipeline_request(pipe.conditioning, c) for c in classes]
    padded = None
    if flare_positions:
        if len(flare_positions) > len(classes):
            raise ValueError(f"{len(flare_positions)} flare positions for {len(classes)} flare classes: give at most one "
                             "position per class")
        padded = list(flare_positions) + [None] * (len(classes) - len(flare_positions))
    for flare_class, name in zip(classes, check_requests(pipe, requests, padded)):
        if log is not None and str(flare_class).strip().lower() != name.lower():
            log(request_in_words(flare_class, name, pipe.conditioning))
    labels = [request for request in requests for _ in range(num_images)]
    positions = None if padded is None else [position for position in padded for _ in range(num_images)]
    return classes, labels, positions


def outermost_missing(folder: Path) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist (what ``mkdir(parents=True)``
    would create, and a failed run removes), or None.

    >>> outermost_missing(Path("/tmp/no-such-folder/run")), outermost_missing(Path("/tmp"))
    (PosixPath('/tmp/no-such-folder'), None)
    """
    return next((path for path in [*reversed(folder.parents), folder] if not path.exists()), None)


def remove_run(out_dir: Path, records: list, created: Path | None):
    """Remove what a failed run wrote: the outermost folder it ``created``, else the files its
    ``records`` name, its contact sheets and its record (an earlier run's were cleared before it
    began, and no other image files are allowed beside a run)."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for name in [name for record in records for name in record["files"]] + [RUN_RECORD]:
        (out_dir / name).unlink(missing_ok=True)
    for sheet in out_dir.glob("contact_sheet*.png"):
        sheet.unlink()


def check_writable(out_dir: Path):
    """Refuse, before any image is made, an output folder this process cannot write to."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-check-"):
            pass
    except OSError as err:
        raise PermissionError(err.errno, f"cannot write to --out (nothing was generated): {err.strerror}",
                              str(out_dir)) from None


def write_record(out_dir: Path, settings: dict, records: list):
    """``generation.json``: the run's settings and, per image, its metadata and files."""
    atomic_write(out_dir / RUN_RECORD, lambda tmp: Path(tmp).write_text(
        json.dumps({"settings": settings, "images": records}, indent=1)))


def _generate_files(pipe, out_dir, labels, seed, num_inference_steps, guidance_scale, batch_size, positions,
                    file_format, model_name, records, previews, bar, novelty_target, requested, date_obs=None,
                    image_size=None):
    """Sample and write the images, appending each one's record (with the class it was
    ``requested`` as) as soon as its files are whole."""
    if file_format == "fits":  # sunpy and astropy (about 2.5 s to import): only FITS output needs them
        from solar_diffusion.maps import write_fits
    for out in sample_batches(pipe, labels, seed, num_inference_steps, guidance_scale, batch_size, positions,
                              novelty_target, image_size):
        model_space = out.images.cpu().numpy()
        physical = pipe.normalization.inverse(model_space).astype(np.float32)
        for image, model_image, meta in zip(physical, model_space, out.metadata):
            meta = dict(meta, unit=pipe.normalization.unit)
            if date_obs:  # the date the images stand for: the observer of their FITS headers
                meta["geometry"] = dict(meta["geometry"], date_obs=str(date_obs))
            name = f"{meta['flare_class'].replace(', ', '+')}_seed{meta['seed']:06d}.{file_format}"
            path = out_dir / name
            wavelengths = meta["geometry"].get("wavelengths_angstrom") or list(range(len(image)))
            per_channel = [path.with_name(f"{path.stem}_{int(w):04d}{path.suffix}") for w in wavelengths] \
                if len(image) > 1 and file_format in ("fits", "png") else []
            files = [p.name for p in per_channel] if file_format == "fits" and per_channel else \
                [name] + [p.name for p in per_channel]
            try:
                if file_format == "npy":
                    atomic_write(path, lambda tmp: np.save(tmp, image))
                elif file_format == "fits" and per_channel:  # one FITS file per channel
                    for channel, channel_path in enumerate(per_channel):
                        write_fits(channel_path, image[channel], dict(meta, channel=channel), model=model_name)
                elif file_format == "fits":
                    write_fits(path, image, meta, model=model_name)
                else:  # the RGB (or single-channel) preview, and one per channel in its AIA colour map
                    preview = preview_image(model_image)
                    atomic_write(path, lambda tmp: preview.save(tmp, format="PNG"))
                    for channel, (wavelength, channel_path) in enumerate(zip(wavelengths, per_channel)):
                        channel_preview = preview_image(model_image, channel, f"sdoaia{int(wavelength)}")
                        atomic_write(channel_path, lambda tmp: channel_preview.save(tmp, format="PNG"))
                records.append(dict(meta, requested_class=requested[len(records)], file=name, files=files))
            except KeyboardInterrupt:  # an image is recorded whole or not at all: no file the record misses
                if not records or records[-1]["file"] != name:
                    for written in files:
                        (out_dir / written).unlink(missing_ok=True)
                raise
            previews.append(model_image)
            bar.update(1)
    bar.close()


#: The record of a generate run in its folder: settings and, per image, its metadata and files.
RUN_RECORD = "generation.json"
#: Image files a generate run writes (what makes a folder "used").
_RUN_SUFFIXES = (".png", ".npy", ".fits")


def clear_earlier_run(out_dir: Path, overwrite: bool):
    """Refuse a folder holding an earlier run's files, or with ``overwrite`` remove exactly the
    files its record names (images, contact sheets, the record); files no record names are never
    removed, and a folder that still holds images after that is refused."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a folder")
    record = out_dir / RUN_RECORD
    if overwrite and record.exists():
        try:
            images = json.loads(record.read_text())["images"]
        except (ValueError, KeyError) as error:
            raise ValueError(f"{record} is not a generate run record ({error}): remove the folder yourself") from None
        for entry in images:
            for name in entry.get("files") or [entry["file"]]:
                (out_dir / Path(name).name).unlink(missing_ok=True)
        for sheet in out_dir.glob("contact_sheet*.png"):
            sheet.unlink()
        record.unlink()
    left = sorted(p.name for p in out_dir.iterdir() if p.suffix in _RUN_SUFFIXES or p.name == RUN_RECORD)
    if left:
        raise ValueError(f"--out {out_dir} already holds {len(left)} image files or a run record ({left[0]}, ...): "
                         + ("they are not named by its generation.json; move them or choose another --out" if overwrite
                            else "pass --overwrite to replace that run, or choose another --out"))


def write_contact_sheets(out_dir, model_images, labels, captions, title: str, wavelengths, markers=None,
                         stem: str = "contact_sheet"):
    """``<stem>.png`` (RGB for three channels), and for several channels ``<stem>_<wavelength>.png``
    per channel in its sunpy AIA colour map; ``markers`` (per image, pixel positions) circled."""
    out_dir = Path(out_dir)
    write_contact_sheet(out_dir / f"{stem}.png", model_images, labels, captions, title=title, markers=markers)
    if len(wavelengths) > 1:  # one sheet per channel, each in its own AIA colour map
        for channel, wavelength in enumerate(wavelengths):
            write_contact_sheet(out_dir / f"{stem}_{int(wavelength):04d}.png", model_images, labels, captions,
                                title=f"{title}  AIA {int(wavelength)}", cmap=f"sdoaia{int(wavelength)}",
                                channel=channel, markers=markers)


def preview_image(model_image: np.ndarray, channel: int | None = None, cmap: str | None = None):
    """8-bit PIL preview of a model-space CHW image: RGB for three channels, else the first one;
    ``channel`` alone, in the AIA colour map ``cmap`` where given (sunpy's ``sdoaia94``...,
    shipped as tables in ``solar_diffusion.colormaps``).

    Arrays follow the FITS convention (row 0 is the south edge); the preview is flipped so
    that north is up.

    >>> x = np.zeros((3, 4, 4), np.float32); x[2, 0, 0] = 1.0  # 94 Å bright in the south-east corner
    >>> preview_image(x).size, preview_image(x, 2, "sdoaia94").mode, preview_image(x, 2).getpixel((0, 3))
    ((4, 4), 'RGB', 255)
    """
    from PIL import Image

    levels = (np.clip(model_image, -1, 1) + 1) / 2
    if channel is not None and cmap:
        return Image.fromarray(colorize(north_up(levels[channel]), cmap))
    pixels = north_up(np.round(levels * 255).astype(np.uint8))
    if channel is not None:
        return Image.fromarray(pixels[channel])
    return Image.fromarray(np.moveaxis(pixels, 0, -1) if pixels.shape[0] == 3 else pixels[0])


def write_contact_sheet(path, model_images, labels, captions, title: str = "", cmap: str = "sdoaia171",
                        channel: int | None = None, markers=None):
    """A grid of model-space images, north up, one row per label, each captioned, as a PNG.

    ``channel`` shows that channel alone in the AIA colour map ``cmap``; by default three-channel
    images are shown as RGB and others by their first channel in ``cmap``. ``markers`` (per
    image, a list of (x, y) pixel positions, row 0 south) are circled: the requested flare
    positions. Drawn with PIL alone (no matplotlib: a contact sheet costs milliseconds).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "sheet.png"
    >>> write_contact_sheet(path, [np.zeros((3, 8, 8))] * 3, ["M", "M", "X"], ["seed 0", "seed 1", "seed 2"])
    >>> from PIL import Image; Image.open(path).size
    (268, 296)
    """
    from PIL import Image, ImageDraw

    rows = list(dict.fromkeys(labels))
    per_row = [[i for i, label in enumerate(labels) if label == row] for row in rows]
    ncols = max(len(r) for r in per_row)
    size = model_images[0].shape[-1]
    scale = max(1, -(-128 // size))  # tiles of at least 128 px
    tile, pad, text_h = size * scale, 4, 14
    font = _font(11)
    top = text_h + pad if title else 0
    sheet = Image.new("RGB", (pad + ncols * (tile + pad), top + pad + len(rows) * (tile + text_h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        _text(draw, (pad, pad // 2), title, font)
    for r, (row, members) in enumerate(zip(rows, per_row)):
        for c, i in enumerate(members):
            image = np.asarray(model_images[i])
            if channel is None and image.shape[0] == 3:
                picture = preview_image(image)
            else:
                picture = preview_image(image, 0 if channel is None else channel, cmap)
            x0, y0 = pad + c * (tile + pad), top + pad + r * (tile + text_h + pad)
            _text(draw, (x0, y0), f"{row}  {captions[i]}", font)
            sheet.paste(picture.resize((tile, tile), Image.Resampling.NEAREST), (x0, y0 + text_h))
            radius = max(2.0, size / 16) * scale
            for x, y in (markers[i] if markers else []):
                cx, cy = x0 + (x + 0.5) * scale, y0 + text_h + (size - 0.5 - y) * scale  # north up
                draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=(0, 255, 255))
    atomic_write(Path(path), lambda tmp: sheet.save(tmp, format="PNG", optimize=True))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text(draw, xy, text: str, font):
    """Text that the font can draw (the bitmap fallback font has no "Å")."""
    try:
        draw.text(xy, text, fill="black", font=font)
    except UnicodeEncodeError:
        draw.text(xy, text.encode("ascii", "replace").decode(), fill="black", font=font)
