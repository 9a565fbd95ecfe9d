"""The JSOC image source, replayed offline with the real AIA level-1 file sunpy ships."""

import os
import shutil

import pandas as pd
import pytest

from solar_diffusion.dataset_builder.images import read_frame
from solar_diffusion.dataset_builder.jsoc import JSOCImageSource


class ReplayJSOC:
    """Serves the real level-1 file under JSOC's names, one per cadence time; a search or some
    files fail on request, as a busy JSOC does."""

    def __init__(self, aia_file, fail_search=(), fail_files=()):
        self.aia_file, self.fail_search, self.fail_files = aia_file, set(fail_search), set(fail_files)
        self.searches, self.fetches = [], []

    def search(self, start, end, cadence, wavelength, email):
        self.searches.append((start, end))
        if start.date() in self.fail_search:
            self.fail_search.discard(start.date())
            raise ConnectionError("JSOC export timed out")
        return [(t, wavelength) for t in pd.date_range(start, end, freq=cadence)]

    def fetch(self, request, out_dir):
        self.fetches.append([t for t, _ in request])
        files, failed = [], []
        for t, wavelength in request:
            if t in self.fail_files:  # fails once, then downloads
                self.fail_files.discard(t)
                failed.append((t, wavelength))
                continue
            path = out_dir / f"aia.lev1_euv_12s.{t:%Y-%m-%dT%H%M%S}Z.{wavelength}.image_lev1.fits"
            shutil.copy(self.aia_file, path)
            files.append(path)
        return files, failed or None


def test_fetch_is_chunked_by_day_retried_and_resumable(aia171_level1_file, tmp_path):
    replay = ReplayJSOC(aia171_level1_file, fail_search={pd.Timestamp("2012-03-08").date()})
    waits = []
    source = JSOCImageSource("someone@example.org", tmp_path, client=replay, sleep=waits.append)
    files = source.fetch("2012-03-07 18:00", "2012-03-08 06:00", "6h")
    assert [f.name[17:34] for f in files] == ["2012-03-07T180000", "2012-03-08T000000", "2012-03-08T060000"]
    assert len(replay.searches) == 3 and waits == [5.0]  # day 2's search failed once
    # the files go through the FITS path (times from the JSOC names, DN/s from EXPTIME)
    frame = read_frame(files[0])
    assert frame.unit == "DN/s" and frame.image.shape == (1, 128, 128)
    # a second fetch (a resumed build) asks JSOC nothing
    assert source.fetch("2012-03-07 18:00", "2012-03-08 06:00", "6h") == files
    assert len(replay.searches) == 3


def test_only_the_files_that_failed_are_fetched_again(aia171_level1_file, tmp_path):
    failing = {pd.Timestamp("2012-03-07 06:00"), pd.Timestamp("2012-03-07 18:00")}
    replay = ReplayJSOC(aia171_level1_file, fail_files=failing)
    source = JSOCImageSource("someone@example.org", tmp_path, client=replay, sleep=lambda s: None)
    files = source.fetch("2012-03-07 00:00", "2012-03-07 18:00", "6h")
    assert len(files) == 4 and len(replay.searches) == 1  # the day is searched once
    assert replay.fetches == [list(pd.date_range("2012-03-07 00:00", "2012-03-07 18:00", freq="6h")), sorted(failing)]


def test_a_day_that_keeps_failing_is_named(aia171_level1_file, tmp_path):
    class Down(ReplayJSOC):
        def search(self, *args):
            raise ConnectionError("no route to host")

    source = JSOCImageSource("someone@example.org", tmp_path, client=Down(aia171_level1_file), sleep=lambda s: None)
    with pytest.raises(ConnectionError, match=r"JSOC request 2012-03-07 .* failed after 4 tries"):
        source.fetch("2012-03-07", "2012-03-07 12:00", "6h")

    class Stubborn(ReplayJSOC):
        def fetch(self, request, out_dir):
            return [], list(request)

    source = JSOCImageSource("someone@example.org", tmp_path / "b", client=Stubborn(aia171_level1_file),
                             sleep=lambda s: None)
    with pytest.raises(ConnectionError, match="3 files could not be downloaded"):
        source.fetch("2012-03-07", "2012-03-07 12:00", "6h")
    assert not (tmp_path / "b" / "171" / "20120307" / ".complete").exists()  # the day is not marked done
    with pytest.raises(ValueError, match="registered e-mail"):
        JSOCImageSource("", tmp_path)


@pytest.mark.live
def test_live_jsoc_one_file(tmp_path):
    email = os.environ.get("JSOC_EMAIL")
    if not email:
        pytest.skip("set JSOC_EMAIL to an address registered with JSOC")
    files = JSOCImageSource(email, tmp_path).fetch("2012-03-07 00:00", "2012-03-07 00:00:12", "12s")
    assert files and read_frame(files[0]).unit == "DN/s"
