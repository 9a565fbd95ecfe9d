"""Distilled students against their teacher and the paper's sampler: speed, start-up and quality.

    python benchmarks/bench_student.py --teacher solar_diffusion/models/default \\
        --student runs/distill/pipeline:6,10 --student runs/distill-4/pipeline:4 \\
        --dataset data/aia-browse2012-64-3ch [--num-per-class 96] [--inception] [--json reports/bench_student.json]

``--student PATH[:STEPS]`` (repeatable): a student made by ``training/distill.py`` and the step
counts to measure it at (default: its own); a guidance-distilled student samples with the
teacher's DPM-Solver++, a progressive one on its own grid.

One run, three phases, timings first so that nothing else in the run disturbs them:

1. Seconds per image at batch 1 and at batch 16: (a) the paper's sampler on the teacher's UNet
   (1000 ancestral DDPM steps, conditional and null UNet calls separately at batch 1, UNet as
   saved), (b) the teacher with the pipeline's defaults (DPM-Solver++ 10, guidance batched into
   one call), (c) the teacher with DPM-Solver++ at the student's step counts (fewer steps without
   distillation), (d) each student (one call per step) at each of its step counts. Ratios against
   (a) and (b) in the same run.
2. Start-up: wall time of ``solar-diffusion generate`` of one image (teacher and each student,
   fresh processes, best of ``--repeats``) against ``python -c "import torch, diffusers"``, and
   against the same imports with the garbage collector paused as the command line imports.
3. Quality against the teacher's defaults (b), with the same seeds and flare positions:
   ``--num-per-class`` images of every class; Fréchet distance in the solar encoder's features
   (and Inception-V3's with ``--inception``) to the real test frames of the classes with enough
   of them, as the **paired** difference to (b) (rows of one seed resampled together, one real
   resample in both terms) with a 90% interval; and the flare signature at the requested
   position (the flare evaluation's brightest 3x3 mean within 1.5 px) of the flare classes in
   94, 131 and 171 Å, as the paired mean difference to (b). Equivalence margins, stated before
   the run: 20% of the real-vs-real floor (FD of real training frames to the same real test
   frames) for FD; 20% of the teacher's mean flare contrast (signature minus the disk's median)
   for the signature. A row is equivalent where every 90% interval lies inside its margin.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from solar_diffusion.files import atomic_write

#: The equivalence margin: this fraction of the real-vs-real floor (FD) or of the teacher's flare contrast.
MARGIN_FRACTION = 0.2
LEVEL = 0.90


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def requests(pipe, classes, n: int, seed: int) -> tuple[list, list]:
    """Labels and flare positions (arcsec; None for quiet), image k of a class at seed + k's position."""
    from solar_diffusion.flare_evaluation import requested_positions

    positions = requested_positions(pipe, n, seed) if pipe.conditioning == "flare" else [None] * n
    labels = [c for c in classes for _ in range(n)]
    where = [None if c == "quiet" else positions[k] for c in classes for k in range(n)]
    return labels, where


def generate(pipe, labels, where, steps: int | None, seed: int, batch_size: int = 16) -> torch.Tensor:
    """Model-space images, image k with its own generator (seed + k), without novelty guidance
    (the models' own samples: a student is compared with what its teacher's weights draw) and, for
    a teacher with a guidance table, at the one scale ``distill`` builds in (``guidance_setting``); at
    the base model's size (a student has no upscaler: a cascade teacher is compared without its own)."""
    from solar_diffusion.generate import sample_batches

    positions = where if pipe.conditioning == "flare" else None
    guidance = pipe.guidance_setting(by_flux=False)
    return torch.cat([out.images.cpu() for out in sample_batches(pipe, labels, seed, steps, guidance, batch_size,
                                                                 positions, novelty_target=0.0,
                                                                 image_size=pipe.unet.config.sample_size)])


#: The row letter of each distillation method's student.
LETTERS = {"guidance": "d", "progressive": "e"}


def row_name(model: str, steps: int) -> str:
    """The row of a model (teacher, guidance or progressive student) at a step count."""
    if model == "teacher":
        return "(b) teacher 10" if steps == 10 else f"(c) teacher {steps}"
    return f"({LETTERS[model]}) {model} student {steps}"


def speed(teacher, plain, students: dict, repeats: int) -> list[dict]:
    """Phase 1: seconds per image of every row at batch 1 and 16 (best of ``repeats`` after a warm-up).
    ``students``: name -> (pipeline, step counts)."""
    from solar_diffusion.generate import sample_separate_guidance

    label, position = "M", (300.0, -250.0)
    rows = [{"row": "(a) paper: DDPM 1000, separate batch-1 calls", "model": "teacher", "steps": 1000,
             "seconds_per_image_batch1": _timed(lambda: sample_separate_guidance(
                 plain, label, 1000, 3.0, seed=0, flare_position=position if plain.conditioning == "flare" else None))}]
    print(json.dumps(rows[-1]), flush=True)
    fewer = sorted({n for _, steps in students.values() for n in steps} - {10}, reverse=True)
    setups = [("(b) teacher: DPM-Solver++ 10, guidance batched (the defaults)", teacher, 10, "teacher")] + \
        [(f"(c) teacher: DPM-Solver++ {n}, guidance batched", teacher, n, "teacher") for n in fewer]
    for name, (pipe, steps) in students.items():
        grid = "DPM-Solver++" if name == "guidance" else "its grid (first-order DPM-Solver++)"
        setups += [(f"({LETTERS[name]}) {name} student: {grid} {n}, one call per step", pipe, n, name)
                   for n in steps]
    for name, pipe, steps, model in setups:
        row = {"row": name, "model": model, "steps": steps, "set": row_name(model, steps)}
        for batch in (1, 16):
            labels, where = [label] * batch, [position] * batch
            generate(pipe, labels, where, steps, 0, batch)  # warm-up
            best = min(_timed(lambda: generate(pipe, labels, where, steps, 0, batch)) for _ in range(repeats))
            row[f"seconds_per_image_batch{batch}"] = best / batch
        rows.append(row)
        print(json.dumps(row), flush=True)
    paper = rows[0]["seconds_per_image_batch1"]
    defaults = rows[1]
    for row in rows[1:]:
        for batch in (1, 16):
            row[f"speedup_vs_paper_batch{batch}"] = paper / row[f"seconds_per_image_batch{batch}"]
            row[f"speedup_vs_defaults_batch{batch}"] = defaults[f"seconds_per_image_batch{batch}"] / \
                row[f"seconds_per_image_batch{batch}"]
    return rows


#: The bare imports as the command line makes them (``solar_diffusion.startup.collector_paused``).
PAUSED_IMPORTS = "import gc; gc.disable(); import torch, diffusers; gc.freeze(); gc.enable()"


def startup(models: dict, repeats: int, out: Path, image_size: int) -> dict:
    """Phase 2: best wall time of fresh processes: the bare imports, and one image per model at
    ``image_size`` (the base model's: a student has no upscaler)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cli = [sys.executable, "-m", "solar_diffusion.cli", "generate", "--num-images", "1", "--flare-class", "M",
           "--image-size", str(image_size), "--overwrite"]

    def best(command) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            times.append(time.perf_counter() - start)
        return min(times)

    result = {"import torch, diffusers": best([sys.executable, "-c", "import torch, diffusers"]),
              "import torch, diffusers, collector paused": best([sys.executable, "-c", PAUSED_IMPORTS])}
    for name, model in models.items():
        result[f"generate one image: {name}"] = best(cli + ["--model", str(model), "--out", str(out / name)])
        result[f"above the imports: {name}"] = result[f"generate one image: {name}"] - result["import torch, diffusers"]
    print(json.dumps(result), flush=True)
    return result


def quality(args, teacher, students: dict) -> dict:
    """Phase 3: paired differences to the teacher's defaults in feature space and at the flare."""
    from solar_diffusion import metrics
    from solar_diffusion.encoder import load_encoder
    from solar_diffusion.evaluate import inception_features
    from solar_diffusion.defaults import model_encoder
    from solar_diffusion.flare_evaluation import flare_signature, positions_px
    from solar_diffusion.pipelines import disk_center_px, disk_mask, rsun_px
    from solar_diffusion.splits import model_space_split

    classes = [c for c in ("quiet", "A", "B", "C", "M", "X")
               if teacher.conditioning == "flare" or c in teacher.id2label.values()]
    labels, where = requests(teacher, classes, args.num_per_class, args.seed)
    sets = {"(b) teacher 10": generate(teacher, labels, where, 10, args.seed)}
    for n in sorted({n for _, steps in students.values() for n in steps} - {10}, reverse=True):
        sets[row_name("teacher", n)] = generate(teacher, labels, where, n, args.seed)
    for name, (pipe, steps) in students.items():
        for n in steps:
            sets[row_name(name, n)] = generate(pipe, labels, where, n, args.seed)
    labels = np.asarray(labels)

    size = teacher.unet.config.sample_size
    real = model_space_split(args.dataset, "test", teacher.normalization, size)
    train = model_space_split(args.dataset, "train", teacher.normalization, size)
    counts = {c: int((real.labels == c).sum()) for c in classes}
    judged = [c for c in classes if counts[c] >= args.min_real and (train.labels == c).sum() >= args.min_real]
    n_real = min(counts[c] for c in judged)
    rng = np.random.default_rng(args.seed)
    pick = lambda frames, c: rng.choice(np.flatnonzero(frames.labels == c), n_real, replace=False)  # noqa: E731
    real_rows = np.concatenate([pick(real, c) for c in judged])
    train_rows = np.concatenate([pick(train, c) for c in judged])
    generated_rows = np.flatnonzero(np.isin(labels, judged))

    encoder = load_encoder(model_encoder(args.teacher))
    spaces = {"solar encoder": encoder.embed_images} | ({"inception-v3": inception_features} if args.inception else {})
    result = {"classes": classes, "judged": judged, "real_per_class": n_real, "generated_per_class": args.num_per_class,
              "level": LEVEL, "margin_fraction": MARGIN_FRACTION, "feature_spaces": {}, "flare_signature": {}}
    for space, embed in spaces.items():
        real_f, train_f = embed(real.images[real_rows]), embed(train.images[train_rows])
        features = {name: embed(images[generated_rows]) for name, images in sets.items()}
        floor = metrics.frechet_distance(train_f, real_f)
        block = {"floor_fd": floor, "margin": MARGIN_FRACTION * floor,
                 "teacher_fd": metrics.frechet_distance(features["(b) teacher 10"], real_f), "rows": {}}
        base = features["(b) teacher 10"]
        width = base.shape[1]
        for name, f in features.items():
            if name == "(b) teacher 10":
                continue
            diff = metrics.bootstrap(lambda pairs, r: metrics.frechet_distance(pairs[:, :width], r)
                                     - metrics.frechet_distance(pairs[:, width:], r),
                                     np.hstack([f, base]), real_f, n_boot=args.n_boot, level=LEVEL, seed=args.seed)
            block["rows"][name] = {"fd": metrics.frechet_distance(f, real_f), "paired_difference": diff,
                                   "equivalent": bool(-block["margin"] < diff["low"] and diff["high"] < block["margin"])}
        result["feature_spaces"][space] = block
        print(json.dumps({space: block}, default=float), flush=True)

    flaring = np.flatnonzero(labels != "quiet")
    if teacher.conditioning == "flare" and len(flaring):
        pixels = positions_px(teacher, [where[i] for i in flaring])
        wavelengths = teacher.config.geometry.get("wavelengths_angstrom") or list(range(sets["(b) teacher 10"].shape[1]))
        disk = disk_mask(size, rsun_px(teacher.config.geometry, size), center=disk_center_px(teacher.config.geometry, size))
        signatures = {name: flare_signature(images[flaring], pixels) for name, images in sets.items()}
        base = signatures["(b) teacher 10"]
        disk_level = np.array([[np.median(((image[c] + 1) / 2)[disk]) for c in range(image.shape[0])]
                               for image in sets["(b) teacher 10"][flaring].numpy()])  # [0, 1], as the signature
        contrast = (base - disk_level).mean(axis=0)
        for c, wavelength in enumerate(wavelengths):
            block = {"teacher_signature": float(base[:, c].mean()), "teacher_contrast": float(contrast[c]),
                     "margin": MARGIN_FRACTION * float(contrast[c]), "rows": {}}
            for name, s in signatures.items():
                if name == "(b) teacher 10":
                    continue
                diff = metrics.bootstrap(lambda pairs: float(np.mean(pairs[:, 0] - pairs[:, 1])),
                                         np.stack([s[:, c], base[:, c]], axis=1), n_boot=args.n_boot, level=LEVEL,
                                         seed=args.seed)
                block["rows"][name] = {"signature": float(s[:, c].mean()), "paired_difference": diff,
                                       "equivalent": bool(-block["margin"] < diff["low"]
                                                          and diff["high"] < block["margin"])}
            result["flare_signature"][str(int(wavelength))] = block
        print(json.dumps({"flare_signature": result["flare_signature"]}, default=float), flush=True)
    return result


def main(argv=None) -> dict:
    from solar_diffusion.defaults import BUNDLED_MODEL
    from solar_diffusion.generate import load_pipeline
    from solar_diffusion.training.distill import method_of

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default=str(BUNDLED_MODEL))
    parser.add_argument("--student", action="append", required=True, metavar="PATH[:STEPS]",
                        help="a student's pipeline folder (training/distill.py) and the step counts to measure "
                             "(comma-separated; default its own); repeatable, one per distillation stage")
    parser.add_argument("--dataset", required=True, help="the teacher's dataset (test split: the real reference)")
    parser.add_argument("--num-per-class", type=int, default=96)
    parser.add_argument("--min-real", type=int, default=10)
    parser.add_argument("--inception", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--skip", default="", help="phases to skip: speed, startup, quality (comma-separated)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    skip = set(filter(None, args.skip.split(",")))
    teacher = load_pipeline(args.teacher)
    plain = load_pipeline(args.teacher, channels_last=False)  # the paper's baseline: the UNet as saved
    students, paths = {}, {}
    for spec in args.student:
        path, _, steps = spec.partition(":")
        pipe = load_pipeline(path)
        if not pipe.config.get("distillation"):
            raise ValueError(f"--student {path} is not a distilled student (no distillation in its config)")
        name = method_of(pipe.config.distillation)
        if name in students:
            raise ValueError(f"--student {path}: a {name} student is given twice")
        students[name] = (pipe, [int(n) for n in steps.split(",")] if steps
                          else [pipe.config.distillation["num_inference_steps"]])
        paths[name] = path
    for pipe in [teacher, plain] + [pipe for pipe, _ in students.values()]:
        pipe.set_progress_bar_config(disable=True)
    result = {"command": " ".join(["python", "benchmarks/bench_student.py"] + (argv or sys.argv[1:])),
              "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "students": {name: dict(pipe.config.distillation) for name, (pipe, _) in students.items()}}
    save = (lambda: atomic_write(Path(args.json), lambda tmp: Path(tmp).write_text(
        json.dumps(result, indent=1, default=float)))) if args.json else (lambda: None)
    if "speed" not in skip:
        result["speed"] = speed(teacher, plain, students, args.repeats)
        save()
    if "startup" not in skip:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            result["startup"] = startup({"teacher": args.teacher} | {f"{name} student": path
                                                                     for name, path in paths.items()},
                                        args.repeats, Path(tmp), teacher.unet.config.sample_size)
        save()
    if "quality" not in skip:
        result["quality"] = quality(args, teacher, students)
        save()
    return result


if __name__ == "__main__":
    main()
