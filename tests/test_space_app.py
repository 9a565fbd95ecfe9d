"""The Space's app without a browser: where it listens, the size it shows, and bad input refused in
one log line."""

import pytest

gr = pytest.importorskip("gradio", reason="the Space needs gradio (pip install solar-diffusion[space])")

from space.app import generate, server_name  # noqa: E402


def test_the_space_listens_on_this_machine_only_unless_on_the_hub_or_told():
    assert server_name({}) == "127.0.0.1"
    assert server_name({"SPACE_ID": "sun/flares"}) == "0.0.0.0"
    assert server_name({"GRADIO_SERVER_NAME": "10.0.0.2", "SPACE_ID": "sun/flares"}) == "10.0.0.2"


def test_bad_input_is_one_line_in_the_log_and_an_error_on_the_page(saved_conditioned_model, tmp_path, capfd):
    from solar_diffusion.generate import load_pipeline

    pipe = load_pipeline(saved_conditioned_model(tmp_path / "model", "flare"))
    capfd.readouterr()  # the loading's progress bar
    for strength, position, words in (("Z", "", "is not a GOES flare class"),
                                      ("X", "S15W95", "behind the limb")):
        with pytest.raises(gr.Error, match=words):
            generate(pipe, strength, position, 0, 1)
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("refused: ") and words in err[0], err


def test_the_space_shows_the_bundled_cascades_256_px_and_its_base_stage_when_asked():
    from astropy.io import fits
    from PIL import Image

    from space.app import load_model

    pipe = load_model()
    for size, asked in ((256, None), (64, 64)):
        previews, files, _ = generate(pipe, "M", "", 0, 1, image_size=asked)
        assert len(previews) == 3 and len(files) == 3
        # one image per channel's contact sheet: a tile of the image's size (64 px images at 128 px)
        assert Image.open(previews[0][0]).width == 4 + max(size, 128) + 4
        assert all(fits.getdata(name).shape == (size, size) for name in files)
