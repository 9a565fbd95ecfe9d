"""One progress bar per job: its total, its unit, the time left (tqdm, to stderr).

A bar shows only on a terminal (``tqdm(disable=None)``), so logs and pipes stay clean; pass
``show=False`` to silence it anywhere.

>>> bar = job_bar(3, "generating", "image", show=False)
>>> bar.total, bar.disable
(3, True)
"""

from __future__ import annotations

import sys


def job_bar(total: int, desc: str, unit: str, show: bool = True):
    """A tqdm bar of ``total`` ``unit``s (images, phases, training runs) for one job."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None if show else True, dynamic_ncols=True,
                file=sys.stderr)
