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
# Pose-prior strength of the edge refinement, squared pixels (see EdgeRefiner): a correction as
# large as the prior's range costs as much as 45 edge points one pixel off. Measured against
# a prior as strong as 0.05 of the summed robust point weights (the previous rule, which made
# dense scans lean on the prior as much as sparse ones): median error on 100 pairs of the demo
# drive (32 lines) 0.26 m / 0.44 deg -> 0.13 m / 0.30 deg, on 200 synthetic nearby pairs (64
# lines) 0.263 -> 0.297 deg and 8.8 -> 8.6 cm, on the real samples within 0.02 deg and 0.4 cm.
PRIOR_WEIGHT = 45.0
# Weight of the tops of objects (edges between scan lines) against their sides in the edge
# refinement; see EdgeRegistrar.
TOP_WEIGHT = 0.5
# Weight of the markings on the ground (intensity edges of any slant) in the edge refinement;
# see EdgeRegistrar.
MARKING_WEIGHT = 1.0


def _edge_refiner(kernel: str, kernel_scale: float, prior_weight: float,
                  final_kernel: str | None) -> EdgeRefiner:
    final = None if final_kernel is None else get_kernel(final_kernel, kernel_scale)
    return EdgeRefiner(get_kernel(kernel, kernel_scale), prior_weight=prior_weight,
                       final_kernel=final)


def get_refiner(kernel: str = 'huber', kernel_scale: float = 2.0,
                final_kernel: str | None = 'cauchy', top_weight: float = TOP_WEIGHT,
                marking_weight: float = MARKING_WEIGHT) -> Registrar:
    """Return the edge refinement stage alone (no search): it follows any method."""
    return EdgeRegistrar(get_edge_detector('canny'),
                         _edge_refiner(kernel, kernel_scale, PRIOR_WEIGHT, final_kernel),
                         top_weight=top_weight, marking_weight=marking_weight)


def get_registrar(method: str = 'edge', refine: bool = True, device: str = 'auto',
                  search: str | None = '6dof', edge_detector: str = 'canny',
                  kernel: str = 'huber', kernel_scale: float = 2.0,
                  default_prior: Prior | None = None, min_score: float = 0.2,
                  checkpoint: str | None = None,
                  prior_weight: float = PRIOR_WEIGHT,
                  intensity_threshold: float = 0.3, final_kernel: str | None = 'cauchy',
                  top_weight: float = TOP_WEIGHT,
                  marking_weight: float = MARKING_WEIGHT) -> Registrar:
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
    :param final_kernel: kernel of a last refinement pass on the finest level, at
        ``kernel_scale`` (see :class:`EdgeRefiner`); None: no such pass.
    :param top_weight: weight of the tops of objects in the edge refinement (see
        :class:`EdgeRegistrar`); 0: sides only.
    :param marking_weight: weight of the markings on the ground in the edge refinement (see
        :class:`EdgeRegistrar`); 0: none.
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
        return RefinedRegistrar(network, get_refiner(kernel, kernel_scale, final_kernel,
                                                     top_weight, marking_weight))
    refiner = (_edge_refiner(kernel, kernel_scale, prior_weight, final_kernel)
               if refine else None)
    pose_search = get_search(search, torch_device) if search is not None else None
    if refiner is None and pose_search is None:
        raise ValueError('edge registration needs refine=True or a search mode')
    return EdgeRegistrar(get_edge_detector(edge_detector), refiner, pose_search, default_prior,
                         min_score=min_score, intensity_threshold=intensity_threshold,
                         top_weight=top_weight, marking_weight=marking_weight)


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
                         intensity_threshold=r.intensity_threshold, top_weight=r.top_weight,
                         marking_weight=r.marking_weight)


__all__ = ['get_refiner', 'get_registrar', 'METHODS', 'RefinedRegistrar', 'registrar_from_config']
