"""Row-parallel passes over a design: the rows are cut into one contiguous slice per core
and each slice is handled by a thread of a shared pool.

numpy and BLAS release the GIL, so the threads run truly in parallel.  BLAS is held to
one thread inside the pool and for the whole of a GLM fit (``single_threaded_blas``): a
Gram of a tall, narrow block (p x p from b x p) gains nothing from BLAS's own threads,
an OpenBLAS built with pthreads serializes calls that arrive from several threads at
once, and BLAS's idle threads spin for a while after each call, taking the cores from the
next pass.  The limit is process-wide while it holds (threadpoolctl), so another
thread's BLAS call meanwhile also runs on one thread.  A function run by the pool must
not start another pass (the pool does not nest).

``GLMX_NUM_THREADS`` sets the number of threads (default: the cores this process may use).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ContextDecorator
from typing import Any, TypeVar

T = TypeVar("T")

# below this many array elements (rows x columns) a pass is not worth splitting
MIN_PARALLEL_ELEMENTS = 2_000_000

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_controller: Any = None


def n_threads() -> int:
    """Threads for row-parallel passes: ``GLMX_NUM_THREADS`` or the usable cores."""
    env = os.environ.get("GLMX_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def row_slices(n: int, n_cols: int, align: int = 1) -> list[tuple[int, int]]:
    """[lo, hi) row ranges, one per thread (a single range for small passes); the cut
    points are multiples of ``align`` so that block boundaries do not depend on them."""
    parts = n_threads()
    if parts <= 1 or n * max(n_cols, 1) < MIN_PARALLEL_ELEMENTS:
        return [(0, n)]
    step = -(-n // parts)
    step = -(-step // align) * align
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


class _SingleThreadedBlas(ContextDecorator):
    """Holds BLAS to one thread while any pass runs (reference-counted, so that passes
    started from several user threads restore the original setting only at the end).
    A context manager, or a decorator of a function that runs passes."""

    def __init__(self) -> None:
        self._users = 0
        self._limiter: Any = None

    def __enter__(self) -> None:
        global _controller
        with _lock:
            self._users += 1
            if self._users > 1:
                return
            if _controller is None:
                try:
                    from threadpoolctl import ThreadpoolController

                    _controller = ThreadpoolController()
                except Exception:  # pragma: no cover - threadpoolctl missing or failing
                    _controller = False
            if _controller is not False:
                self._limiter = _controller.limit(limits=1, user_api="blas")

    def __exit__(self, *exc: object) -> None:
        with _lock:
            self._users -= 1
            if self._users == 0 and self._limiter is not None:
                self._limiter.restore_original_limits()
                self._limiter = None


_single_threaded_blas = _SingleThreadedBlas()


def single_threaded_blas() -> _SingleThreadedBlas:
    """Context holding BLAS to one thread; a whole fit runs inside it, because BLAS's
    threads spin for a while after each call and would take the cores from the passes."""
    return _single_threaded_blas


def map_slices(fn: Callable[[int, int], T], slices: Sequence[tuple[int, int]]) -> list[T]:
    """fn(lo, hi) for each slice, in parallel when there are several; results in order."""
    if len(slices) == 1:
        return [fn(*slices[0])]
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=n_threads(), thread_name_prefix="glmx")
    with _single_threaded_blas:
        futures = [_pool.submit(fn, lo, hi) for lo, hi in slices]
        return [f.result() for f in futures]
