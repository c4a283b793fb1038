"""
CPU threads of the numerical libraries: BLAS/LAPACK and OpenMP (threadpoolctl) and torch.

The package's CPU work is many small operations (6 x 6 normal equations, banded pose-graph
factorizations, batched scoring of a few thousand points), where extra threads gain little and,
when other processes (other nodes, the player) keep the cores busy, cost a lot: threads of one
operation wait on each other. Measured here (2 cores) on the demo drive:

- edge registration, 60 pairs, two busy processes beside it: median 250 ms with the libraries'
  default threads, 128 ms with one; unloaded 76-95 ms either way;
- multiview synchronization of 30-53 keyframes, two busy processes beside it: 128-262 ms with
  OpenBLAS's default threads, 5-35 ms with one.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits, ThreadpoolController

_BLAS: ThreadpoolController | None = None


def single_threaded_blas():
    """Return a context in which BLAS and LAPACK run on one thread (about 12 us to enter)."""
    global _BLAS
    if _BLAS is None:
        # Built at first use, once numpy's and scipy's libraries are loaded.
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api='blas')


def set_cpu_threads(threads: int) -> None:
    """
    Limit this process's BLAS, OpenMP and torch intra-op threads, from now on.

    Libraries loaded later keep their own defaults; call it after importing them.

    :param threads: threads per operation; 0 leaves the libraries' defaults (all cores).
    :raises ValueError: on a negative count.
    """
    if threads < 0:
        raise ValueError(f'threads must be >= 0, got {threads}')
    if threads == 0:
        return
    threadpool_limits(limits=threads)
    import torch
    torch.set_num_threads(threads)
