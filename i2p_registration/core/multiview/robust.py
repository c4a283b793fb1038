"""Robust edge weights: the Cauchy kernel and its combination with the local confidence."""

from __future__ import annotations

import numpy as np


def cauchy_weights(residuals, scale: float) -> np.ndarray:
    """
    IRLS weights of the Cauchy kernel ``rho(r) = c^2 / 2 * log(1 + (r / c)^2)``.

    :param residuals: ``(M,)`` non-negative residuals, in the unit of ``scale``.
    :param scale: the kernel scale ``c`` (> 0): a residual of ``c`` gets weight 1/2.
    :return: ``(M,)`` weights ``1 / (1 + (r / c)^2)`` in ``(0, 1]``.
    """
    if not scale > 0.0:
        raise ValueError(f'Cauchy scale must be positive, got {scale}')
    r = np.asarray(residuals, dtype=np.float64) / scale
    return 1.0 / (1.0 + r * r)


def harmonic_mean(a, b) -> np.ndarray:
    """
    Element-wise harmonic mean ``2ab / (a + b)`` of two weights in ``[0, 1]`` (0 where both 0).

    A low value in either input dominates, so an edge needs both a good local confidence and a
    small residual to keep a high weight.

    :param a: ``(M,)`` weights.
    :param b: ``(M,)`` weights.
    :return: ``(M,)`` harmonic means.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    s = a + b
    return np.where(s > 0.0, 2.0 * a * b / np.where(s > 0.0, s, 1.0), 0.0)
