"""
Robust kernels for iteratively reweighted least squares; chosen by :func:`get_kernel`.

A kernel ``rho(r)`` replaces the squared residual ``r^2 / 2``; its IRLS weight is
``rho'(r) / r``, which is 1 for small residuals and falls off for outliers.
"""

from __future__ import annotations

import abc

import numpy as np

KERNELS = ('none', 'huber', 'cauchy')


class RobustKernel(abc.ABC):
    """
    A robust cost of residuals in some unit (pixels here).

    :param scale: the residual at which the kernel starts to down-weight (> 0), in that unit.
    """

    def __init__(self, scale: float = 1.0):
        if not scale > 0:
            raise ValueError(f'kernel scale must be positive, got {scale}')
        self.scale = float(scale)

    @abc.abstractmethod
    def rho(self, r: np.ndarray) -> np.ndarray:
        """Return the cost of each residual ``(N,)`` (``r^2 / 2`` near zero)."""

    @abc.abstractmethod
    def weight(self, r: np.ndarray) -> np.ndarray:
        """Return the IRLS weight ``rho'(r) / r`` of each residual ``(N,)``, in ``(0, 1]``."""


class TrivialKernel(RobustKernel):
    """Plain least squares: ``rho(r) = r^2 / 2``, weight 1."""

    def rho(self, r):
        """Return ``r^2 / 2``."""
        return 0.5 * np.square(r)

    def weight(self, r):
        """Return ones."""
        return np.ones_like(np.asarray(r, dtype=np.float64))


class HuberKernel(RobustKernel):
    """Huber: quadratic up to ``scale``, linear beyond (weight ``scale / |r|``)."""

    def rho(self, r):
        """Return ``r^2 / 2`` for ``|r| <= scale``, else ``scale (|r| - scale / 2)``."""
        a = np.abs(r)
        return np.where(a <= self.scale, 0.5 * a * a, self.scale * (a - 0.5 * self.scale))

    def weight(self, r):
        """Return ``min(1, scale / |r|)``."""
        a = np.abs(r)
        return np.where(a <= self.scale, 1.0, self.scale / np.maximum(a, 1e-300))


class CauchyKernel(RobustKernel):
    """Cauchy (Lorentzian): ``rho(r) = c^2 / 2 log(1 + (r / c)^2)``."""

    def rho(self, r):
        """Return ``c^2 / 2 log(1 + (r / c)^2)``."""
        return 0.5 * self.scale ** 2 * np.log1p(np.square(np.asarray(r) / self.scale))

    def weight(self, r):
        """Return ``1 / (1 + (r / c)^2)``."""
        return 1.0 / (1.0 + np.square(np.asarray(r) / self.scale))


def get_kernel(name: str, scale: float = 1.0) -> RobustKernel:
    """Return the kernel called ``name`` (``'none'``, ``'huber'``, ``'cauchy'``) at ``scale``."""
    kernels = {'none': TrivialKernel, 'huber': HuberKernel, 'cauchy': CauchyKernel}
    if name not in kernels:
        raise ValueError(f'unknown robust kernel {name!r}, expected one of {KERNELS}')
    return kernels[name](scale)
