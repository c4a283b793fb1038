"""Shape checks shared by the geometry modules (private)."""

from __future__ import annotations

import numpy as np


def as_float64(x, trailing: tuple[int, ...], name: str) -> np.ndarray:
    """
    ``x`` as a float64 array whose last dimensions are ``trailing``, else ``ValueError``.

    :param x: array-like of shape ``(..., *trailing)``.
    :param trailing: the required trailing shape, e.g. ``(3, 3)``.
    :param name: the argument name used in the error message.
    :return: ``(..., *trailing)`` float64 array (a view where no conversion is needed).
    """
    a = np.asarray(x, dtype=np.float64)
    n = len(trailing)
    if a.ndim < n or a.shape[a.ndim - n:] != tuple(trailing):
        want = ', '.join(['...'] + [str(d) for d in trailing])
        raise ValueError(f'{name} must have shape ({want}), got {a.shape}')
    return a


def as_points(x, dim: int, name: str) -> np.ndarray:
    """``x`` as an ``(N, dim)`` array (dtype kept when floating), else ``ValueError``."""
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[1] != dim:
        raise ValueError(f'{name} must have shape (N, {dim}), got {a.shape}')
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    return a


def as_weights(weights, n: int, name: str = 'weights') -> np.ndarray:
    """Per-item weights as an ``(n,)`` float64 array (ones when ``None``); finite and >= 0."""
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f'{name} must have shape ({n},), got {w.shape}')
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f'{name} must be finite and non-negative')
    return w


def skew(v: np.ndarray) -> np.ndarray:
    """Build the cross-product matrices ``(..., 3, 3)`` of ``(..., 3)`` vectors."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    # Filled in place: nested np.stack costs more than the maths for the single vectors of
    # an LM step.
    K = np.zeros(v.shape[:-1] + (3, 3), dtype=np.result_type(v, np.float32))
    K[..., 0, 1], K[..., 0, 2] = -z, y
    K[..., 1, 0], K[..., 1, 2] = z, -x
    K[..., 2, 0], K[..., 2, 1] = -y, x
    return K
