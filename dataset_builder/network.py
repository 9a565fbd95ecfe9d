"""Retries with exponential backoff, shared by the online sources (HEK, GOES XRS, JSOC)."""

from __future__ import annotations

import time


def with_retries(call, *args, retries: int = 3, backoff: float = 2.0, sleep=time.sleep,
                 what: str = "request", error_type=ConnectionError):
    """``call(*args)``, tried up to ``retries`` more times; try k+1 waits ``backoff * 2**k`` s.

    The last failure is raised as ``error_type`` naming ``what`` and the number of tries.

    >>> waits = []
    >>> attempts = iter([OSError("down"), "ok"])
    >>> def flaky():
    ...     result = next(attempts)
    ...     if isinstance(result, Exception):
    ...         raise result
    ...     return result
    >>> with_retries(flaky, sleep=waits.append), waits
    ('ok', [2.0])
    """
    for attempt in range(retries + 1):
        try:
            return call(*args)
        except Exception as error:  # network failures come in many types (URLError, timeouts, OSError)
            if attempt == retries:
                raise error_type(f"{what} failed after {attempt + 1} tries: {type(error).__name__}: {error}") from error
            sleep(backoff * 2**attempt)
