"""AIA level-1 images from JSOC through sunpy's Fido, in resumable day chunks.

JSOC exports need an e-mail address registered at http://jsoc.stanford.edu/ajax/register_email.html.
Each day is searched once: a finished day leaves a marker in the cache, so a stopped build
resumes without asking JSOC again; files already downloaded are never fetched twice, and when
some files of a day fail only those are fetched again.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from solar_diffusion.dataset_builder.network import with_retries


class FidoJSOC:
    """The network side, through sunpy's Fido: one JSOC search (export request) per day, then its
    files; a retry fetches only the files that failed (``Fido.fetch`` of parfive's Results)."""

    def __init__(self, max_conn: int = 4):
        self.max_conn = max_conn

    def search(self, start, end, cadence, wavelength, email):
        """Search ``aia.lev1_euv_12s`` (network)."""
        import astropy.units as u
        from sunpy.net import Fido
        from sunpy.net import attrs as a

        return Fido.search(a.Time(str(start), str(end)), a.jsoc.Series("aia.lev1_euv_12s"),
                           a.Wavelength(float(wavelength) * u.AA),
                           a.Sample(pd.Timedelta(cadence).total_seconds() * u.s), a.jsoc.Notify(email))

    def fetch(self, request, out_dir) -> tuple[list[Path], object | None]:
        """Download ``request`` (a search result, or the failures of an earlier fetch) into
        ``out_dir``: (the files, the failures to fetch again, None when there are none)."""
        from sunpy.net import Fido

        files = Fido.fetch(request, path=str(Path(out_dir) / "{file}"), max_conn=self.max_conn, overwrite=False)
        return [Path(f) for f in files], (files if files.errors else None)


class JSOCImageSource:
    """Download AIA level-1 FITS for a time range at a cadence, day by day, with retries.

    ``client`` has ``search(start, end, cadence, wavelength, email)`` and ``fetch(request,
    out_dir) -> (files, failures or None)`` (``FidoJSOC`` by default; tests pass one that serves
    real files). A day is searched once; when some of its files fail, only those are fetched again
    (up to ``retries`` times, waiting ``backoff * 2**k`` s), and a day still missing files is an
    error naming the day and how many.
    """

    def __init__(self, email: str, cache_dir, client=None, retries: int = 3, backoff: float = 5.0, sleep=time.sleep):
        if not email or "@" not in email:
            raise ValueError(f"JSOC needs a registered e-mail address, got {email!r}")
        self.email, self.cache_dir = email, Path(cache_dir)
        self.client = client or FidoJSOC()
        self.retries, self.backoff, self.sleep = retries, backoff, sleep

    def fetch(self, start, end, cadence="1h", wavelength="171") -> list[Path]:
        """All files of the range (cached days are not requested again)."""
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        files = []
        for day in pd.date_range(start.floor("D"), end, freq="D"):
            lo, hi = max(day, start), min(day + pd.Timedelta("1D") - pd.Timedelta("1s"), end)
            folder = self.cache_dir / f"{wavelength}" / day.strftime("%Y%m%d")
            marker = folder / ".complete"
            if not marker.exists():
                folder.mkdir(parents=True, exist_ok=True)
                self._download_day(lo, hi, cadence, wavelength, folder)
                marker.write_text(f"{lo} {hi} {cadence}\n")
            files += sorted(p for p in folder.iterdir() if p.suffix in (".fits", ".fz") or p.name.endswith(".fits"))
        return files

    def _download_day(self, lo, hi, cadence, wavelength, folder):
        what = f"JSOC request {lo}..{hi}"
        pending = with_retries(self.client.search, lo, hi, cadence, wavelength, self.email, retries=self.retries,
                               backoff=self.backoff, sleep=self.sleep, what=what)
        for attempt in range(self.retries + 1):
            _, failed = with_retries(self.client.fetch, pending, folder, retries=self.retries, backoff=self.backoff,
                                     sleep=self.sleep, what=what)
            if failed is None:
                return
            if attempt == self.retries:
                raise ConnectionError(f"{what} failed after {attempt + 1} tries: {_count(failed)} files could not be "
                                      "downloaded (the others are kept; run again to fetch the rest)")
            self.sleep(self.backoff * 2**attempt)
            pending = failed


def _count(failed) -> int:
    return len(getattr(failed, "errors", failed))
