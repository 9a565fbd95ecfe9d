"""Start-up time: what keeps ``solar-diffusion generate`` from importing what it does not use."""

from __future__ import annotations

import gc
import importlib
import sys
from contextlib import contextmanager


#: What diffusers' scheduler modules import under ``if is_scipy_available():`` (the name each
#: binds, and its module), as of the diffusers versions in pyproject.toml (tests/test_startup.py).
SCIPY_NAMES = {"scipy": "scipy", "integrate": "scipy.integrate"}


class OnDemand:
    """A module imported on first use: ``OnDemand("scipy").stats`` imports scipy.stats then.

    >>> float(OnDemand("scipy").stats.norm.ppf(0.5)), OnDemand("scipy.integrate").quad(lambda x: x, 0, 1)[0]
    (0.0, 0.5)
    """

    def __init__(self, module: str):
        self.module = module

    def __getattr__(self, name):
        if name.startswith("_"):  # introspection (copy, pickle, inspect) imports nothing
            raise AttributeError(name)
        module = importlib.import_module(self.module)
        try:
            return getattr(module, name)
        except AttributeError:  # a submodule its package does not load by itself
            return importlib.import_module(f"{self.module}.{name}")


@contextmanager
def scipy_on_demand():
    """Import diffusers' modules inside this block without scipy.stats.

    diffusers' DPM-Solver, Euler, Heun and LMS scheduler modules import scipy.stats as they load
    (importing ``UNet2DModel`` loads several of them), for beta sigmas that these models never
    use: about 0.8 s of ``generate``'s 2-core start-up. Inside the block diffusers is told that
    scipy is absent (``import_utils._scipy_available``, a private flag); the scheduler modules
    loaded in it then get what they import from scipy (``SCIPY_NAMES``) on demand, so beta sigmas
    and LMS steps still work. ``tests/test_startup.py`` fails when a diffusers release changes
    the flag or what those modules import. Where diffusers has no such flag, nothing changes.
    """
    import diffusers.models  # noqa: F401  (their lazy import tables are built with scipy present
    import diffusers.schedulers  # noqa: F401  so that no scheduler becomes a scipy-less dummy)
    from diffusers.utils import import_utils

    flag = getattr(import_utils, "_scipy_available", None)
    if not flag or "scipy.stats" in sys.modules:
        yield
        return
    before = set(sys.modules)
    import_utils._scipy_available = False
    try:
        yield
    finally:
        import_utils._scipy_available = flag
        for name in set(sys.modules) - before:
            module = sys.modules[name]
            if name.startswith("diffusers.schedulers.scheduling_") and not hasattr(module, "scipy"):
                for attribute, target in SCIPY_NAMES.items():
                    setattr(module, attribute, OnDemand(target))


@contextmanager
def collector_paused():
    """Import inside this block without Python's cyclic garbage collector; keep what it made.

    Importing torch and diffusers creates millions of objects, and the collector walks all of them
    again at each full collection it triggers on the way: about 0.9 s of the bare imports' 2.4 s
    on 2 cores (BENCHMARKS.md). Inside the block the collector is off; at its end the objects that
    exist (modules, classes, functions: alive for the whole process anyway) are frozen, so later
    collections skip them, and the collector is switched back on as it was. ``gc.unfreeze()``
    hands them back to the collector (the command line does so when a command ends).

    >>> import gc
    >>> with collector_paused():
    ...     gc.isenabled()
    False
    >>> gc.isenabled(), gc.get_freeze_count() > 0
    (True, True)
    >>> gc.unfreeze()
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
