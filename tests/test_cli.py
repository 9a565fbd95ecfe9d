import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sunpy.map
from PIL import Image

from solar_diffusion.cli import COMMANDS, main


def test_list_classes(tiny_model_dir, capsys):
    assert main(["generate", "--model", str(tiny_model_dir), "--list-classes"]) == 0
    assert capsys.readouterr().out.split() == ["0", "quiet", "1", "C", "2", "M", "3", "X"]


@pytest.mark.parametrize("file_format", ["png", "fits", "npy"])
def test_generate_writes_files_named_by_class_and_seed(tiny_model_dir, tmp_path, file_format):
    out = tmp_path / "out"
    argv = ["generate", "--model", str(tiny_model_dir), "--flare-class", "X", "--flare-class", "M2.5",
            "--num-images", "2", "--steps", "3", "--scheduler", "ddim", "--seed", "5", "--batch-size", "3",
            "--out", str(out), "--format", file_format]
    assert main(argv) == 0
    names = sorted(p.name for p in out.glob(f"*_seed*.{file_format}"))
    assert names == [f"M_seed000007.{file_format}", f"M_seed000008.{file_format}",
                     f"X_seed000005.{file_format}", f"X_seed000006.{file_format}"]
    record = json.loads((out / "generation.json").read_text())
    assert record["settings"]["scheduler"] == "DDIMScheduler"
    assert sorted(image["file"] for image in record["images"]) == names
    assert [(image["flare_class"], image["seed"]) for image in record["images"]] == [("X", 5), ("X", 6), ("M", 7),
                                                                                    ("M", 8)]
    # the contact sheet: a title line, one row per class, one column per image; the 16 px images drawn as
    # 128 px tiles, each with its caption above, 4 px apart
    assert Image.open(out / "contact_sheet.png").size == (4 + 2 * (128 + 4), 18 + 4 + 2 * (14 + 128 + 4))
    first = out / names[0]
    if file_format == "npy":
        data = np.load(first)
        assert data.shape == (1, 16, 16) and data.dtype == np.float32 and data.min() >= 5.0
    elif file_format == "fits":
        aia = sunpy.map.Map(first)
        assert aia.meta["flarecls"] == "M" and aia.meta["genseed"] == 7
    else:
        assert Image.open(first).mode == "L"


def test_image_k_is_remade_alone_from_its_seed(tiny_model_dir, tmp_path):
    common = ["generate", "--model", str(tiny_model_dir), "--steps", "3", "--format", "npy"]
    assert main(common + ["--flare-class", "X", "--num-images", "3", "--seed", "0", "--out", str(tmp_path / "a")]) == 0
    assert main(common + ["--flare-class", "X", "--num-images", "1", "--seed", "2", "--out", str(tmp_path / "b")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "a" / "X_seed000002.npy"),
                               np.load(tmp_path / "b" / "X_seed000002.npy"), rtol=1e-4)


def test_bad_requests_fail_clearly(tiny_model_dir, tmp_path, capsys):
    assert main(["generate", "--model", str(tiny_model_dir), "--flare-class", "B", "--out", str(tmp_path)]) == 2
    assert "it knows: quiet, C, M, X" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no model_index.json" in capsys.readouterr().err


def test_console_script_runs_end_to_end(tiny_model_dir, tmp_path):
    exe = [sys.executable, "-m", "solar_diffusion.cli"]
    result = subprocess.run(exe + ["generate", "--model", str(tiny_model_dir), "--num-images", "1", "--steps", "2",
                                   "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "o").glob("*.png"))) == 5  # 4 classes + the contact sheet


def test_several_channels_write_one_fits_per_channel(make_pipeline, tmp_path):
    from solar_diffusion.hub import save_pipeline

    model = save_pipeline(make_pipeline(wavelengths=(171, 131)), tmp_path / "two-channel")
    out = tmp_path / "out"
    assert main(["generate", "--model", str(model), "--flare-class", "M", "--num-images", "1", "--steps", "2",
                 "--format", "fits", "--out", str(out)]) == 0
    maps = {p.name: sunpy.map.Map(p) for p in out.glob("*.fits")}
    assert sorted(maps) == ["M_seed000000_0131.fits", "M_seed000000_0171.fits"]
    assert maps["M_seed000000_0131.fits"].wavelength.value == 131.0
    assert not np.array_equal(maps["M_seed000000_0131.fits"].data, maps["M_seed000000_0171.fits"].data)
    assert main(["generate", "--model", str(model), "--flare-class", "M", "--num-images", "1", "--steps", "2",
                 "--format", "npy", "--out", str(out), "--overwrite"]) == 0
    assert np.load(out / "M_seed000000.npy").shape == (2, 16, 16) and not list(out.glob("*.fits"))


def test_bundled_model_is_the_default_and_generates(tmp_path):
    """The README's main job: the bundled flare model, offline, with a contact sheet of every class
    (all three channels, and one per channel with the drawn flare positions circled); at its base
    stage's 64 px to stay fast (the 256 px default: the next test)."""
    from solar_diffusion.defaults import BUNDLED_MODEL

    weights = BUNDLED_MODEL / "unet" / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size <= 25 * 2**20
    out = tmp_path / "generated"
    assert main(["generate", "--num-images", "1", "--steps", "2", "--image-size", "64", "--out", str(out)]) == 0
    record = json.loads((out / "generation.json").read_text())
    assert record["settings"]["model"] == "models/default"  # the model's name, never a path of this machine
    assert str(BUNDLED_MODEL) not in (tmp_path / "generated" / "generation.json").read_text()
    labels = [image["flare_class"] for image in record["images"]]
    assert labels[0] == "quiet" and [label[0] for label in labels[1:]] == ["A", "B", "C", "M", "X"]
    assert record["images"][0]["unit"] == "browse" and not record["images"][0].get("flares")
    assert all(len(image["flares"]) == 1 for image in record["images"][1:])  # a position drawn for each flare
    for sheet in ("contact_sheet.png", "contact_sheet_0094.png", "contact_sheet_0131.png", "contact_sheet_0171.png"):
        # six classes, one image each: 64 px images as 128 px tiles with a caption, and a title line
        assert Image.open(out / sheet).size == (4 + 128 + 4, 18 + 4 + 6 * (14 + 128 + 4)), sheet


def test_help_and_version_answer_without_importing_torch_diffusers_or_sunpy():
    import subprocess
    import sys

    code = ("import sys\nfrom solar_diffusion.cli import main\n"
            "for argv in (['--help'], ['--version']):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, e.code\n"
            "heavy = sorted(m for m in ('torch', 'diffusers', 'sunpy', 'astropy', 'datasets') if m in sys.modules)\n"
            "print('heavy:', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "generate" in out and "build-dataset" in out and "solar-diffusion 0.1" in out
    assert out.strip().endswith("heavy: []"), out


def test_a_used_folder_is_refused_unless_overwrite_which_removes_only_that_run(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["generate", "--model", str(tiny_model_dir), "--flare-class", "X", "--steps", "1", "--out", str(out)]
    assert main(base + ["--num-images", "3"]) == 0
    mine = out / "notes.txt"
    mine.write_text("the user's own file")
    assert main(base + ["--num-images", "1"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert len(list(out.glob("X_seed*.png"))) == 3  # nothing removed by the refused run
    assert main(base + ["--num-images", "1", "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("X_seed*.png")) == ["X_seed000000.png"]  # the old run's extra images went
    assert mine.read_text() == "the user's own file"
    (out / "stray.npy").write_bytes(b"")  # an image file no record names is never removed: refused
    assert main(base + ["--overwrite"]) == 2
    assert "not named by its generation.json" in capsys.readouterr().err and (out / "stray.npy").exists()


def test_non_finite_guidance_or_weights_never_write_an_image(tiny_model_dir, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file, save_file

    out = tmp_path / "nan"
    assert main(["generate", "--model", str(tiny_model_dir), "--guidance", "nan", "--steps", "1", "--out", str(out)]) == 2
    assert "--guidance must be a finite number" in capsys.readouterr().err and not out.exists()
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["conv_out.bias"] = torch.full_like(state["conv_out.bias"], float("nan"))  # corrupted bytes that still load
    save_file(state, weights)
    assert main(["generate", "--model", str(broken), "--steps", "1", "--out", str(out)]) == 1
    assert "hold NaN or Inf values: the UNet's weights may be corrupt" in capsys.readouterr().err
    assert not list(out.glob("*.png")) and not (out / "generation.json").exists()


def test_several_channels_write_a_png_preview_per_channel_in_its_colour_map(make_pipeline, tmp_path):
    from solar_diffusion.hub import save_pipeline

    model = save_pipeline(make_pipeline(wavelengths=(171, 131, 94)), tmp_path / "three-channel")
    out = tmp_path / "out"
    assert main(["generate", "--model", str(model), "--flare-class", "M", "--num-images", "1", "--steps", "2",
                 "--out", str(out)]) == 0
    names = sorted(p.name for p in out.glob("M_seed*.png"))
    assert names == ["M_seed000000.png", "M_seed000000_0094.png", "M_seed000000_0131.png", "M_seed000000_0171.png"]
    record = json.loads((out / "generation.json").read_text())["images"][0]
    assert sorted(record["files"]) == names
    composite = np.asarray(Image.open(out / "M_seed000000.png"))
    c94 = np.asarray(Image.open(out / "M_seed000000_0094.png"))
    assert composite.shape == c94.shape == (16, 16, 3)
    assert not np.array_equal(c94, np.asarray(Image.open(out / "M_seed000000_0171.png")))


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, as an interactive user's is."""

    def isatty(self):
        return True


def test_generate_shows_one_bar_over_all_images_on_a_terminal(tiny_model_dir, tmp_path, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["generate", "--model", tiny_model_dir, "--flare-class", "C", "--flare-class", "M", "--num-images", "3",
                "--steps", "2", "--batch-size", "2", "--out", tmp_path / "out"]) == 0
    text = terminal.getvalue()
    assert "generating" in text and "6/6" in text and "image" in text  # one bar: total, unit, time left
    assert "denoising" not in text  # no bar per batch


def test_a_device_this_machine_lacks_is_one_line_and_exit_1(tiny_model_dir, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    assert main(["generate", "--model", tiny_model_dir, "--device", "cuda", "--out", tmp_path / "out"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --device cuda: no CUDA device is available here") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, words", [
    ("truncate weights", "diffusion_pytorch_model.safetensors"),
    ("garble model_index.json", "model_index.json"),
])
def test_damaged_model_files_are_named_in_one_line(tiny_model_dir, tmp_path, capsys, damage, words):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    if damage == "truncate weights":
        weights = model / "unet" / "diffusion_pytorch_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])  # a download cut short
    else:
        (model / "model_index.json").write_text('{"_class_name": "SolarFlarePipeline", ')
    code = main(["generate", "--model", str(model), "--steps", "1", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code in (1, 2) and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and words in err, err
    assert not (tmp_path / "out").exists()


def _lock(folder: Path) -> str:
    """Make ``folder`` unwritable for this process: read-only mode, or for root (who writes anywhere)
    the immutable attribute; the command that undoes it. Skips where neither is possible."""
    import os

    if os.geteuid() != 0:
        folder.chmod(0o555)
        return "chmod"
    try:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    except FileNotFoundError:
        pytest.skip("running as root without the chattr command: no folder is unwritable for root")
    if done.returncode:
        pytest.skip(f"running as root without chattr +i ({done.stderr.decode().strip()}): no folder is unwritable")
    return "chattr"


def test_an_output_folder_without_write_permission_is_refused_before_sampling(tiny_model_dir, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    how = _lock(locked)
    try:
        for out, words in ((locked, "cannot write to --out (nothing was generated)"), (locked / "new", "")):
            code = main(["generate", "--model", str(tiny_model_dir), "--steps", "1", "--num-images", "1",
                         "--out", str(out)])
            err = capsys.readouterr().err
            assert code == 1 and words in err and str(locked) in err, err
            assert ("Permission denied" in err or "Operation not permitted" in err) and "Traceback" not in err, err
            assert len(err.strip().splitlines()) == 1, err
        assert list(locked.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(locked)]) if how == "chattr" else locked.chmod(0o755)


def test_ctrl_c_stops_cleanly_and_records_the_whole_images(tiny_model_dir, tmp_path):
    import signal
    import time

    out = tmp_path / "out"
    command = [sys.executable, "-m", "solar_diffusion.cli", "generate", "--model", str(tiny_model_dir), "--num-images",
               "5000", "--flare-class", "M", "--batch-size", "1", "--steps", "2", "--out", str(out)]
    # a test run started in the background (nohup, `&`) ignores SIGINT, and a child inherits that: restore it
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(list(out.glob("M_seed*.png"))) < 3:
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130 and err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err, err
    record = json.loads((out / "generation.json").read_text())
    assert record["settings"]["interrupted"] is True
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([r["file"] for r in record["images"]] + ["generation.json"])  # no stray or partial file
    assert 3 <= len(record["images"]) < 5000
    for name in written[:-1]:
        Image.open(out / name).verify()  # whole PNG files
    assert main(["generate", "--model", str(tiny_model_dir), "--flare-class", "M", "--num-images", "2", "--steps", "1",
                 "--out", str(out)]) == 2  # an interrupted run is still a run: refused without --overwrite
    assert main(["generate", "--model", str(tiny_model_dir), "--flare-class", "M", "--num-images", "2", "--steps", "1",
                 "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("*.png") if not p.name.startswith("contact")) == \
        ["M_seed000000.png", "M_seed000001.png"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_are_as_readable_as_the_umask_says(tiny_model_dir, tmp_path, umask, mode):
    import os

    previous = os.umask(umask)
    try:
        assert main(["generate", "--model", str(tiny_model_dir), "--flare-class", "M", "--num-images", "1",
                     "--steps", "1", "--out", str(tmp_path / "out")]) == 0
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
    assert modes and set(modes.values()) == {mode}, modes


def test_one_flag_per_concept_and_no_old_spellings():
    """``--out`` is the run's folder and ``--size`` the image size in every training command, and
    ``--num-images`` the images per class in generate and evaluate; the old spellings are refused."""
    from solar_diffusion.cli import build_parser

    train = build_parser("train").parse_args(["train", "--dataset", ".", "--out", "runs/x", "--size", "32"])
    assert (train.output_dir, train.size) == ("runs/x", 32)
    evaluate = build_parser("evaluate").parse_args(["evaluate", "--dataset", ".", "--out", "e", "--num-images", "5"])
    assert evaluate.num_per_class == 5
    distill = build_parser("distill").parse_args(["distill", "--dataset", ".", "--out", "d", "--teacher", "t"])
    assert distill.output_dir == "d"
    for command, old in (("train", ["--output-dir", "x"]), ("train", ["--resolution", "32"]),
                         ("evaluate", ["--num-per-class", "5"]), ("distill", ["--output-dir", "d"])):
        with pytest.raises(SystemExit):
            build_parser(command).parse_args([command, "--dataset", ".", "--out", "o", "--teacher", "t", *old]
                                             if command == "distill" else [command, "--dataset", ".", "--out", "o", *old])

def _subparser(command: str):
    """The argparse parser of one sub-command, with its arguments."""
    import argparse

    from solar_diffusion.cli import build_parser

    parser = build_parser(command)
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_flag_of_every_command_has_help(command):
    missing = [a.option_strings or a.dest for a in _subparser(command)._actions if not (a.help or "").strip()]
    assert not missing, f"{command}: flags without help text: {missing}"


def test_generate_evaluate_and_augment_share_their_flags():
    """One flag per concept: the same sampling flags with the same help, classes given the same way
    (``--flare-class``, repeated), images per class as ``--num-images``; augment's ``--max-per-class``
    is a cap, not a count, and says so; no old spellings."""
    flags = {c: {o: a for a in _subparser(c)._actions for o in a.option_strings} for c in ("generate", "evaluate",
                                                                                           "augment")}
    for flag in ("--steps", "--guidance", "--novelty-target"):
        assert len({flags[c][flag].help for c in flags}) == 1, flag
    for flag in ("--scheduler", "--seed"):
        assert all(flag in flags[c] for c in flags), flag
    for command in ("generate", "augment"):
        for flag in ("--flare-class", "--flare-position", "--date", "--batch-size"):
            assert flag in flags[command], (command, flag)
        assert flags[command]["--flare-class"].dest == "flare_classes"
    assert "--num-images" in flags["generate"] and "--num-images" in flags["evaluate"]
    assert "a cap" in flags["augment"]["--max-per-class"].help and "--num-images" in flags["augment"]["--max-per-class"].help
    augment = _subparser("augment").parse_args(["--dataset", ".", "--out", "o", "--ratio", "1", "--flare-class", "M",
                                                "--flare-class", "X", "--scheduler", "ddim", "--novelty-target", "0"])
    assert augment.flare_classes == ["M", "X"] and augment.scheduler == "ddim" and augment.novelty_target == 0
    with pytest.raises(SystemExit):
        _subparser("augment").parse_args(["--dataset", ".", "--out", "o", "--ratio", "1", "--classes", "M,X"])


@pytest.fixture
def flare_model_dir(tmp_path, saved_conditioned_model) -> Path:
    return saved_conditioned_model(tmp_path / "flare-model", "flare")


def test_a_negative_arcsec_position_is_taken_as_written(flare_model_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["generate", "--model", flare_model_dir, "--flare-class", "M", "--flare-position", "-475,397",
                 "--num-images", "1", "--steps", "1", "--format", "npy", "--out", out]) == 0
    (image,) = json.loads((out / "generation.json").read_text())["images"]
    assert image["flares"][0]["position_arcsec"] == [-475.0, 397.0]


@pytest.mark.parametrize("conditioning", ["flux", "flare"])
def test_a_goes_r_flux_is_a_flare_class_and_what_it_became_is_said(conditioning, tmp_path, capsys,
                                                                   saved_conditioned_model):
    """``--list-classes`` offers a GOES-R flux in W m^-2: 1e-4 is M7.0 (classes are on the SWPC scale);
    a bare letter is its decade's centre (X3.2). Both are printed and recorded with what was asked."""
    model = saved_conditioned_model(tmp_path / "model", conditioning)
    out = tmp_path / "out"
    assert main(["generate", "--model", model, "--flare-class", "1e-4", "--flare-class", "X", "--flare-class", "M2.5",
                 "--num-images", "1", "--steps", "1", "--format", "npy", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "--flare-class 1e-4 is M7.0: a GOES-R peak flux of 1.0e-04 W m^-2" in printed
    assert "--flare-class X is X3.2: a GOES-R peak flux of 4.5e-04 W m^-2" in printed and "M2.5 is" not in printed
    images = json.loads((out / "generation.json").read_text())["images"]
    assert [(image["requested_class"], image["flare_class"]) for image in images] == [("1e-4", "M7.0"), ("X", "X3.2"),
                                                                                      ("M2.5", "M2.5")]
    assert sorted(p.name for p in out.glob("*.npy")) == ["M2.5_seed000002.npy", "M7.0_seed000000.npy",
                                                         "X3.2_seed000001.npy"]


MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def _make_generate(args: str) -> list[str]:
    """The arguments ``make generate ARGS="..."`` gives ``solar-diffusion``, from the Makefile's recipe."""
    recipe = next(line for line in MAKEFILE.read_text().splitlines() if "solar-diffusion generate" in line)
    words = recipe.split("solar-diffusion", 1)[1].split()
    return [w for word in words for w in (args.split() if word == "$(ARGS)" else [word])]


def test_the_makefile_lets_args_choose_the_classes():
    """``make generate`` asks for no class itself (generate's default is every class), so a
    ``--flare-class`` in ARGS is the only one; ARGS come last, so they override the recipe's flags."""
    argv = _make_generate("--flare-class X")
    assert argv[0] == "generate" and argv[-2:] == ["--flare-class", "X"] and argv.count("--flare-class") == 1


def test_the_readme_make_generate_example_runs(flare_model_dir, tmp_path, monkeypatch):
    """The README's ``make generate ARGS="--format fits --flare-class X --flare-position S15W01"``, run
    with the Makefile's arguments, at tiny settings."""
    from solar_diffusion.positions import helioprojective_arcsec

    monkeypatch.chdir(tmp_path)
    argv = _make_generate("--format fits --flare-class X --flare-position S15W01")
    assert main(argv + ["--num-images", "1", "--steps", "1", "--model", flare_model_dir]) == 0
    (image,) = json.loads((tmp_path / "generated" / "generation.json").read_text())["images"]
    assert image["flare_class"] == "X3.2" and image["requested_class"] == "X"
    assert image["flares"][0]["position_arcsec"] == pytest.approx(helioprojective_arcsec("S15W01", "2012-03-07T00:00"))
    assert sorted(image["files"]) == ["X3.2_seed000000_0094.fits", "X3.2_seed000000_0131.fits",
                                      "X3.2_seed000000_0171.fits"]


def test_every_name_a_run_records_for_a_model_loads_again(tmp_path, capsys):
    """The bundled model's name in generation.json, the FITS header and the contact sheet is
    ``models/default``: given back to ``--model`` it is that model."""
    from solar_diffusion.defaults import BUNDLED_MODEL, PAPER_MODEL
    from solar_diffusion.generate import resolve_model
    from solar_diffusion.hub import model_name

    first, again = tmp_path / "first", tmp_path / "again"
    assert main(["generate", "--flare-class", "M", "--num-images", "1", "--steps", "1", "--format", "fits",
                 "--image-size", "64", "--out", first]) == 0
    name = json.loads((first / "generation.json").read_text())["settings"]["model"]
    assert name == "models/default" and {sunpy.map.Map(p).meta["genmodel"] for p in first.glob("*.fits")} == {name}
    assert main(["generate", "--model", name, "--flare-class", "M", "--num-images", "1", "--steps", "1",
                 "--format", "fits", "--image-size", "64", "--out", again]) == 0
    assert json.loads((again / "generation.json").read_text())["settings"]["model"] == name
    for model in (BUNDLED_MODEL, PAPER_MODEL):
        assert resolve_model(model_name(model)) == str(model)


def test_the_bundled_cascade_writes_256_px_fits_by_default_and_its_base_stage_on_request(tmp_path):
    """The default output of the bundled model is its cascade's 256 px: a FITS file with the WCS of
    256 px (a quarter of the 64 px plate scale, the same RSUN_OBS, sunpy's limb on the image's disk)
    and contact sheets of 256 px tiles; ``--image-size 64`` writes the base stage's 64 px file."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    from solar_diffusion.maps import fit_disk

    maps = {}
    for size, extra in ((256, []), (64, ["--image-size", "64"])):
        out = tmp_path / str(size)
        assert main(["generate", "--flare-class", "M", "--num-images", "1", "--steps", "2", "--format", "fits",
                     "--out", str(out)] + extra) == 0
        assert json.loads((out / "generation.json").read_text())["settings"]["image_size"] == size
        tile = max(size, 128)  # one image: a tile with a caption, under a title line
        assert Image.open(out / "contact_sheet_0094.png").size == (4 + tile + 4, 18 + 4 + 14 + tile + 4)
        maps[size] = sunpy.map.Map(next(out.glob("*_0171.fits")))
    high, base = maps[256], maps[64]
    assert high.data.shape == (256, 256) and base.data.shape == (64, 64)
    for axis in ("cdelt1", "cdelt2"):  # arcsec per pixel
        assert abs(high.meta[axis] - base.meta[axis] / 4) < 1e-6, axis
    assert high.meta["rsun_obs"] == pytest.approx(base.meta["rsun_obs"], rel=1e-9)
    centre = high.world_to_pixel(SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=high.coordinate_frame))
    limb_px = (high.rsun_obs / high.scale.axis1).to_value(u.pix)  # sunpy's solar radius in pixels
    cx, cy, radius = fit_disk(high.data)  # the limb the image draws
    assert np.hypot(cx - centre.x.value, cy - centre.y.value) < 2 and abs(radius - limb_px) < 0.03 * limb_px


def test_the_completion_line_counts_every_file_written(make_pipeline, tmp_path, capsys):
    from solar_diffusion.hub import save_pipeline

    model = save_pipeline(make_pipeline(wavelengths=(171, 131, 94)), tmp_path / "three-channel")
    out = tmp_path / "out"
    assert main(["generate", "--model", model, "--flare-class", "M", "--flare-class", "X", "--num-images", "2",
                 "--steps", "1", "--out", out]) == 0
    files = len(list(out.iterdir()))
    assert files == 4 * 4 + 4 + 1  # an RGB and three channel previews per image, four contact sheets, the record
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"wrote 4 images as {files} files to {out}: 16 png files, 4 contact sheets and generation.json")


@pytest.mark.parametrize("existing", [False, True])
def test_a_run_that_fails_after_writing_removes_what_it_wrote(tiny_model_dir, tmp_path, monkeypatch, capsys,
                                                              existing):
    """A failure after the images (here the disk filling up at the contact sheet) leaves no file of
    the run, and no folder where the run made it; a user's own files stay."""
    from solar_diffusion import generate

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", "contact_sheet.png")

    monkeypatch.setattr(generate, "write_contact_sheets", disk_full)
    out = tmp_path / "deeper" / "out"
    if existing:
        out.mkdir(parents=True)
        (out / "notes.txt").write_text("the user's own file")
    assert main(["generate", "--model", tiny_model_dir, "--flare-class", "M", "--num-images", "2", "--steps", "1",
                 "--out", out]) == 1
    assert "No space left on device" in capsys.readouterr().err
    if existing:
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
    else:
        assert not (tmp_path / "deeper").exists()


@pytest.mark.parametrize("arrival", [5, 6, 8])
def test_an_interrupt_in_the_middle_of_an_images_files_leaves_it_neither_recorded_nor_written(
        saved_conditioned_model, tmp_path, arrival):
    """Ctrl-C at a chosen write (``files.INTERRUPT_AT_ENV``): each three-channel image is four PNG
    files (the composite, then 171, 131, 94 Å); arrival 5 is the second image's first file, 6 its
    second, 8 its last. The first image stays recorded and whole; the second has no file left."""
    import signal

    from solar_diffusion.files import INTERRUPT_AT_ENV

    model = saved_conditioned_model(tmp_path / "model")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "solar_diffusion.cli", "generate", "--model", str(model), "--num-images",
                          "3", "--flare-class", "M", "--batch-size", "1", "--steps", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                              INTERRUPT_AT_ENV: f"write:after-rename:{arrival}"},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as the Ctrl-C test
    assert run.returncode == 130 and run.stderr.strip().splitlines()[-1] == "interrupted", run.stderr
    record = json.loads((out / "generation.json").read_text())
    assert record["settings"]["interrupted"] is True and [r["seed"] for r in record["images"]] == [0]
    assert sorted(p.name for p in out.iterdir()) == sorted(record["images"][0]["files"] + ["generation.json"])
    assert len(record["images"][0]["files"]) == 4
