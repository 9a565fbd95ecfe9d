"""The timing helper of the benchmarks (imported by the scripts beside it)."""

import time


def seconds(fn, repeat: int) -> float:
    """Best wall time of ``repeat`` calls of ``fn`` after one untimed warm-up call.

    >>> seconds(lambda: sum(range(1000)), 3) < 1.0
    True
    """
    fn()  # warm-up: lazy initialisation, allocator and kernel caches
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
