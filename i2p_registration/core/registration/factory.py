"""
Build a registrar from the ``registration`` config section (``method``, ``refine``, ``device``).

Classes take explicit arguments; this is the one place that reads the configuration names.
"""

from __future__ import annotations

from i2p_registration.core.registration.base import Prior, RefinedRegistrar, Registrar
from i2p_registration.core.registration.edge import EdgeRegistrar
from i2p_registration.core.registration.image_edges import get_edge_detector
from i2p_registration.core.registration.kernels import get_kernel
from i2p_registration.core.registration.ray import load_ray_registrar
from i2p_registration.core.registration.refine import EdgeRefiner
from i2p_registration.core.registration.search import get_search, resolve_device

METHODS = ('edge', 'ray', 'ray+edge')
# Pose-prior strength of the edge refinement: a correction as large as the prior's range costs as
# much as a half-pixel shift of every edge point. Without it the one-sided edge cost drifts along
# weakly observed directions (translation); much stronger, it pins the estimate to the prior
# (measured on the real samples: benchmarks/registration_edge.py).
PRIOR_WEIGHT = 0.25


def get_refiner(kernel: str = 'huber', kernel_scale: float = 2.0) -> Registrar:
    """Return the edge refinement stage alone (no search): it follows any method."""
    return EdgeRegistrar(get_edge_detector('canny'),
                         EdgeRefiner(get_kernel(kernel, kernel_scale), prior_weight=PRIOR_WEIGHT))


def get_registrar(method: str = 'edge', refine: bool = True, device: str = 'auto',
                  search: str | None = '6dof', edge_detector: str = 'canny',
                  kernel: str = 'huber', kernel_scale: float = 2.0,
                  default_prior: Prior | None = None, min_score: float = 0.2,
                  checkpoint: str | None = None,
                  prior_weight: float = PRIOR_WEIGHT,
                  intensity_threshold: float = 0.0) -> Registrar:
    """
    Return the registrar for ``registration.method`` and ``registration.refine``.

    :param method: ``'edge'``, ``'ray'`` (the network alone) or ``'ray+edge'`` (the network,
        then edge refinement).
    :param refine: follow ``edge`` by robust LM edge refinement (the ray methods name theirs).
    :param device: ``'auto'`` (CUDA when present), ``'cpu'`` or ``'cuda'``; resolved here, once.
    :param search: global search mode of ``edge`` (``'planar'``, ``'6dof'``) or None.
    :param edge_detector: ``'canny'`` or ``'gradient'``.
    :param kernel: robust kernel of the refinement: ``'none'``, ``'huber'``, ``'cauchy'``.
    :param kernel_scale: kernel scale in pixels.
    :param default_prior: prior used when ``register`` gets none.
    :param min_score: score under which results are ``low_confidence``.
    :param checkpoint: network checkpoint of the ray methods (``i2p-train`` output).
    :param prior_weight: strength of the edge refinement's pose-prior term (see
        :class:`EdgeRefiner`); 0 disables it.
    :param intensity_threshold: LiDAR intensity edges of ``edge`` (see :class:`EdgeRegistrar`);
        0: depth edges only.
    """
    if method not in METHODS:
        raise ValueError(f'unknown or unavailable registration method {method!r}, expected one '
                         f'of {METHODS}')
    torch_device = resolve_device(device)
    if method in ('ray', 'ray+edge'):
        if checkpoint is None:
            raise ValueError(f'unknown or unavailable registration method {method!r}: it needs '
                             f'a network checkpoint (checkpoint=..., i2p-eval --checkpoint)')
        network = load_ray_registrar(checkpoint, torch_device)
        if method == 'ray':
            return network
        return RefinedRegistrar(network, get_refiner(kernel, kernel_scale))
    refiner = (EdgeRefiner(get_kernel(kernel, kernel_scale), prior_weight=prior_weight)
               if refine else None)
    pose_search = get_search(search, torch_device) if search is not None else None
    if refiner is None and pose_search is None:
        raise ValueError('edge registration needs refine=True or a search mode')
    return EdgeRegistrar(get_edge_detector(edge_detector), refiner, pose_search, default_prior,
                         min_score=min_score, intensity_threshold=intensity_threshold)


def registrar_from_config(registration) -> Registrar:
    """
    Build the registrar that a ``registration`` config section describes, for this process.

    Also limits the process's CPU threads to ``registration.threads`` (see
    :mod:`i2p_registration.core.threads`). The registration node and ``i2p-replay`` both build
    theirs here, so a replay registers as the node does.

    :param registration: a :class:`~i2p_registration.core.config.RegistrationConfig`.
    :raises ValueError: when the method cannot be built (unknown, unavailable device...).
    """
    from i2p_registration.core import threads
    r = registration
    threads.set_cpu_threads(r.threads)
    return get_registrar(method=r.method, refine=r.refine, device=r.device,
                         min_score=r.min_score, checkpoint=r.checkpoint or None,
                         intensity_threshold=r.intensity_threshold)


__all__ = ['get_refiner', 'get_registrar', 'METHODS', 'RefinedRegistrar', 'registrar_from_config']
