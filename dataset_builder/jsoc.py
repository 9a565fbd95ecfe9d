"""AIA level-1 images from JSOC through sunpy's Fido, in resumable day chunks.

JSOC exports need an e-mail address registered at http://jsoc.stanford.edu/ajax/register_email.html.
Each day is requested once: a finished day leaves a marker in the cache, so a stopped build
resumes without asking JSOC again, and files already downloaded are never fetched twice.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from solar_diffusion.dataset_builder.network import with_retries


def fido_download(start, end, cadence, wavelength, email, out_dir, max_conn=4) -> list[Path]:
    """Search JSOC's ``aia.lev1_euv_12s`` and download the files into ``out_dir`` (network)."""
    import astropy.units as u
    from sunpy.net import Fido
    from sunpy.net import attrs as a

    result = Fido.search(
        a.Time(str(start), str(end)),
        a.jsoc.Series("aia.lev1_euv_12s"),
        a.Wavelength(float(wavelength) * u.AA),
        a.Sample(pd.Timedelta(cadence).total_seconds() * u.s),
        a.jsoc.Notify(email),
    )
    files = Fido.fetch(result, path=str(Path(out_dir) / "{file}"), max_conn=max_conn, overwrite=False)
    if files.errors:
        raise ConnectionError(f"JSOC download failed for {len(files.errors)} files: {files.errors[:3]}")
    return [Path(f) for f in files]


class JSOCImageSource:
    """Download AIA level-1 FITS for a time range at a cadence, day by day, with retries.

    ``download(start, end, cadence, wavelength, email, out_dir) -> [paths]`` does the network
    work (``fido_download`` by default); tests pass one that serves real files.
    """

    def __init__(self, email: str, cache_dir, download=fido_download, retries: int = 3, backoff: float = 5.0,
                 sleep=time.sleep):
        if not email or "@" not in email:
            raise ValueError(f"JSOC needs a registered e-mail address, got {email!r}")
        self.email, self.cache_dir = email, Path(cache_dir)
        self.download, self.retries, self.backoff, self.sleep = download, retries, backoff, sleep

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
        return with_retries(self.download, lo, hi, cadence, wavelength, self.email, folder, retries=self.retries,
                            backoff=self.backoff, sleep=self.sleep, what=f"JSOC request {lo}..{hi}")
