"""Files: atomic writes (a temporary file in the target folder, then a rename), the files
named by a list of files and folders, a file's SHA-256, and the fault-injection points that the
kill tests stop a process at."""

from __future__ import annotations

import hashlib
import os
import signal
import tempfile
from collections import Counter
from pathlib import Path

#: ``fault_point`` kills the process at the k-th arrival at a point: ``"point:k"``.
KILL_AT_ENV = "SOLAR_DIFFUSION_KILL_AT"
#: ``fault_point`` interrupts the process (SIGINT, as Ctrl-C) at the k-th arrival at a point: ``"point:k"``.
INTERRUPT_AT_ENV = "SOLAR_DIFFUSION_INTERRUPT_AT"
#: ``fault_point`` appends every arrival's point name to this file (to enumerate the points of a run).
FAULT_LOG_ENV = "SOLAR_DIFFUSION_FAULT_LOG"
_arrivals: Counter = Counter()


def fault_point(name: str):
    """A moment a crash must not lose work at (a file half-renamed, a checkpoint half-saved). With
    ``$SOLAR_DIFFUSION_KILL_AT`` = ``"name:k"`` the k-th arrival at ``name`` kills this process
    (SIGKILL: no clean-up runs, as in a power cut); ``$SOLAR_DIFFUSION_INTERRUPT_AT`` sends it
    SIGINT instead (Ctrl-C: a ``KeyboardInterrupt`` there); with ``$SOLAR_DIFFUSION_FAULT_LOG``
    every arrival is logged. None set (always, outside the fault tests): nothing happens.

    >>> fault_point("write:before-rename")  # no fault asked for: returns
    """
    log, kill, interrupt = (os.environ.get(k) for k in (FAULT_LOG_ENV, KILL_AT_ENV, INTERRUPT_AT_ENV))
    if not (log or kill or interrupt):
        return
    _arrivals[name] += 1
    if log:
        with open(log, "a") as handle:
            handle.write(f"{name}\n")
    if kill and kill == f"{name}:{_arrivals[name]}":
        os.kill(os.getpid(), signal.SIGKILL)
    if interrupt and interrupt == f"{name}:{_arrivals[name]}":
        signal.raise_signal(signal.SIGINT)


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` and rename the result to ``path``; a failure leaves no file.

    The temporary name ends in ``.tmp`` plus the target's suffix, so writers that look at the
    suffix (FITS, PNG) still work. The file gets the permissions the user's umask gives a new
    file (``mkstemp`` alone would leave it 0600).

    >>> import tempfile, pathlib, stat
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
    >>> atomic_write(target, lambda tmp: pathlib.Path(tmp).write_text("hi")).read_text()
    'hi'
    >>> stat.S_IMODE(target.stat().st_mode) == 0o666 & ~current_umask()
    True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        fault_point("write:before-rename")
        os.replace(tmp, path)
        fault_point("write:after-rename")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def current_umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def expand_paths(paths) -> list[Path]:
    """The files named by ``paths`` (a path or a list): files as given, folders by their files
    (recursively, sorted, hidden ones left out); a path that does not exist is an error.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp()); (folder / "a.nc").write_text("")
    0
    >>> [p.name for p in expand_paths(folder)]
    ['a.nc']
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for path in map(lambda p: Path(p).expanduser(), paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            files.append(path)
    return files


def sha256_file(path) -> str:
    """The SHA-256 of a file's bytes, as hex digits (read in blocks: any size).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "empty"; path.write_bytes(b"")
    0
    >>> sha256_file(path)[:16]
    'e3b0c44298fc1c14'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

