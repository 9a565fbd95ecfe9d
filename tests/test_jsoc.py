"""The JSOC image source, replayed offline with the real AIA level-1 file sunpy ships."""

import os
import shutil

import pandas as pd
import pytest

from solar_diffusion.dataset_builder.images import read_frame
from solar_diffusion.dataset_builder.jsoc import JSOCImageSource


class ReplayJSOC:
    """Serves the real level-1 file under JSOC's names for each cadence time; fails on request."""

    def __init__(self, aia_file, fail_first=()):
        self.aia_file, self.fail_first, self.calls = aia_file, set(fail_first), []

    def __call__(self, start, end, cadence, wavelength, email, out_dir):
        self.calls.append((start, end))
        if start.date() in self.fail_first:
            self.fail_first.discard(start.date())
            raise ConnectionError("JSOC export timed out")
        files = []
        for t in pd.date_range(start, end, freq=cadence):
            path = out_dir / f"aia.lev1_euv_12s.{t:%Y-%m-%dT%H%M%S}Z.{wavelength}.image_lev1.fits"
            shutil.copy(self.aia_file, path)
            files.append(path)
        return files


def test_fetch_is_chunked_by_day_retried_and_resumable(aia171_level1_file, tmp_path):
    replay = ReplayJSOC(aia171_level1_file, fail_first={pd.Timestamp("2012-03-08").date()})
    waits = []
    source = JSOCImageSource("someone@example.org", tmp_path, download=replay, sleep=waits.append)
    files = source.fetch("2012-03-07 18:00", "2012-03-08 06:00", "6h")
    assert [f.name[17:34] for f in files] == ["2012-03-07T180000", "2012-03-08T000000", "2012-03-08T060000"]
    assert len(replay.calls) == 3 and waits == [5.0]  # day 2 failed once
    # the files go through the FITS path (times from the JSOC names, DN/s from EXPTIME)
    frame = read_frame(files[0])
    assert frame.unit == "DN/s" and frame.image.shape == (1, 128, 128)
    # a second fetch (a resumed build) asks JSOC nothing
    assert source.fetch("2012-03-07 18:00", "2012-03-08 06:00", "6h") == files
    assert len(replay.calls) == 3


def test_a_day_that_keeps_failing_is_named(aia171_level1_file, tmp_path):
    class Down(ReplayJSOC):
        def __call__(self, *args):
            raise ConnectionError("no route to host")

    source = JSOCImageSource("someone@example.org", tmp_path, download=Down(aia171_level1_file), sleep=lambda s: None)
    with pytest.raises(ConnectionError, match=r"JSOC request 2012-03-07 .* failed after 4 tries"):
        source.fetch("2012-03-07", "2012-03-07 12:00", "6h")
    with pytest.raises(ValueError, match="registered e-mail"):
        JSOCImageSource("", tmp_path)


@pytest.mark.live
def test_live_jsoc_one_file(tmp_path):
    email = os.environ.get("JSOC_EMAIL")
    if not email:
        pytest.skip("set JSOC_EMAIL to an address registered with JSOC")
    files = JSOCImageSource(email, tmp_path).fetch("2012-03-07 00:00", "2012-03-07 00:00:12", "12s")
    assert files and read_frame(files[0]).unit == "DN/s"
