"""Retries with exponential backoff, shared by the online sources (HEK, GOES XRS, JSOC).

Only network failures are retried (``is_transient``): connection errors, timeouts, HTTP 5xx and
429. Anything else (a parse error, a bad request, a local file error) fails at once, named.
"""

from __future__ import annotations

import time

#: Local file errors: OSErrors that no retry can cure.
_LOCAL_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is a network failure worth another try: connection errors and timeouts
    (OSErrors other than local file errors, aiohttp's client errors), and HTTP responses 5xx or 429.

    >>> import urllib.error
    >>> is_transient(TimeoutError()), is_transient(urllib.error.URLError("connection reset"))
    (True, True)
    >>> is_transient(urllib.error.HTTPError("u", 503, "busy", None, None)), is_transient(
    ...     urllib.error.HTTPError("u", 404, "not found", None, None))
    (True, False)
    >>> is_transient(ValueError("bad JSON")), is_transient(FileNotFoundError("x.fits"))
    (False, False)
    """
    status = getattr(error, "code", None) or getattr(error, "status", None) or getattr(
        getattr(error, "response", None), "status_code", None)
    if isinstance(status, int) and 400 <= status < 600:
        return status >= 500 or status == 429
    if isinstance(error, _LOCAL_ERRORS):
        return False
    if isinstance(error, (OSError, TimeoutError)):  # ConnectionError, URLError, socket errors, requests' errors
        return True
    return type(error).__module__.split(".")[0] == "aiohttp"  # Fido's downloads: ClientConnectionError, ...


def with_retries(call, *args, retries: int = 3, backoff: float = 2.0, sleep=time.sleep,
                 what: str = "request", error_type=ConnectionError):
    """``call(*args)``, tried up to ``retries`` more times after a network failure
    (``is_transient``); try k+1 waits ``backoff * 2**k`` s. Another error is raised at once,
    with ``what`` in its message; the last network failure is raised as ``error_type`` naming
    ``what`` and the number of tries.

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
        except Exception as error:
            if not is_transient(error):
                if _rebuildable(error):
                    raise type(error)(f"{what}: {error}") from error
                raise
            if attempt == retries:
                raise error_type(f"{what} failed after {attempt + 1} tries: {type(error).__name__}: {error}") from error
            sleep(backoff * 2**attempt)


def _rebuildable(error: BaseException) -> bool:
    """Whether the error's type can be made again from one message (to add what was asked)."""
    return type(error) in (ValueError, KeyError, TypeError, RuntimeError, IndexError)
