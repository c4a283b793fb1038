"""
The interface every registration method implements: ``Registrar``, ``Prior``, the result.

A registration estimates ``T_cam_lidar`` (4x4 float64, maps LiDAR points into the camera optical
frame) from one image and one cloud. Bad data never raises: it gives a result with status
``failed`` and a reason in words. ``ValueError`` is kept for programming errors (wrong types or
shapes passed to constructors).

Covariances are 6x6 over the twist ``xi = (rho, phi)`` (x, y, z in metres, then rotx, roty, rotz in
radians, the ROS ordering) of a LEFT perturbation in the camera optical frame:
``T_true = se3_exp(xi) @ T_cam_lidar``. Equivalently, ``-xi`` is a perturbation of the camera pose
``T_lidar_cam`` in its own (camera) frame, so the same matrix is the covariance of
``T_lidar_cam`` in the camera frame.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
import enum
import time

from i2p_registration.core.geometry import inverse, so3_log
from i2p_registration.core.sensors import CloudFrame, ImageFrame
import numpy as np


class Status(str, enum.Enum):
    """Outcome of a registration."""

    OK = 'ok'
    LOW_CONFIDENCE = 'low_confidence'
    FAILED = 'failed'


class RegistrationFailure(Exception):
    """Raised inside a method for bad data; ``Registrar.register`` turns it into ``failed``."""


def _as_transform(T, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f'{name} must have shape (4, 4), got {T.shape}')
    return T


def _as_vector3(v, name: str) -> np.ndarray:
    v = np.broadcast_to(np.asarray(v, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValueError(f'{name} must be 3 finite non-negative values, got {v}')
    return v


@dataclass(frozen=True)
class Prior:
    """
    An initial guess of ``T_cam_lidar`` and how far from it a global search may look.

    The search ranges are half-widths of a perturbation of the LiDAR points in the LiDAR frame
    (``T = T_cam_lidar @ delta``), so "planar" (x, y, yaw) means the LiDAR's own ground plane
    (z up).

    :param T_cam_lidar: ``(4, 4)`` float64 guess.
    :param translation_range: ``(3,)`` half-ranges along LiDAR x, y, z in metres (or a scalar).
    :param rotation_range: ``(3,)`` half-ranges of roll, pitch, yaw about LiDAR x, y, z, radians.
    :param covariance: optional ``(6, 6)`` covariance of the guess (convention of this module).
    """

    T_cam_lidar: np.ndarray
    translation_range: np.ndarray = field(default_factory=lambda: np.full(3, 0.5))
    rotation_range: np.ndarray = field(default_factory=lambda: np.full(3, np.radians(5.0)))
    covariance: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, 'T_cam_lidar', _as_transform(self.T_cam_lidar, 'T_cam_lidar'))
        object.__setattr__(self, 'translation_range',
                           _as_vector3(self.translation_range, 'translation_range'))
        object.__setattr__(self, 'rotation_range',
                           _as_vector3(self.rotation_range, 'rotation_range'))
        if self.covariance is not None:
            cov = np.asarray(self.covariance, dtype=np.float64)
            if cov.shape != (6, 6):
                raise ValueError(f'covariance must have shape (6, 6), got {cov.shape}')
            object.__setattr__(self, 'covariance', cov)

    def outside(self, T_cam_lidar: np.ndarray) -> str:
        """
        Return how an estimate lies outside the ranges around the guess, or ``''`` within them.

        The correction ``delta = inv(guess) @ T_cam_lidar`` is compared axis by axis: its
        translation with ``translation_range``, its rotation vector with ``rotation_range``.
        """
        delta = inverse(self.T_cam_lidar) @ np.asarray(T_cam_lidar, dtype=np.float64)
        moved, turned = np.abs(delta[:3, 3]), np.abs(so3_log(delta[:3, :3]))
        parts = [f'{moved[i]:.2f} m along LiDAR {axis} (range {self.translation_range[i]:.2f})'
                 for i, axis in enumerate('xyz') if moved[i] > self.translation_range[i]]
        parts += [f'{np.degrees(turned[i]):.1f} deg about LiDAR {axis} (range '
                  f'{np.degrees(self.rotation_range[i]):.1f})'
                  for i, axis in enumerate('xyz') if turned[i] > self.rotation_range[i]]
        return ', '.join(parts)


@dataclass
class RegistrationResult:
    """
    What a registration returns.

    :param T_cam_lidar: ``(4, 4)`` float64 estimate; all NaN when ``status`` is ``failed``.
    :param covariance: ``(6, 6)`` float64 covariance of the left perturbation ``xi = (rho, phi)``
        in the camera optical frame (see the module docstring); NaN when failed.
    :param score: alignment quality in ``[0, 1]`` (method specific; higher is better).
    :param inlier_ratio: fraction of the method's correspondences within its inlier bound.
    :param status: ``ok``, ``low_confidence`` or ``failed``.
    :param reason: why the status is not ``ok``, in words (empty when ok).
    :param method: the method's name, e.g. ``'edge'``.
    :param timings: wall time per stage in milliseconds, in execution order.
    """

    T_cam_lidar: np.ndarray
    covariance: np.ndarray
    score: float
    inlier_ratio: float
    status: Status
    reason: str
    method: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the estimate may be published (status ``ok``)."""
        return self.status == Status.OK

    @classmethod
    def failure(cls, method: str, reason: str,
                timings: dict[str, float] | None = None) -> 'RegistrationResult':
        """Return a ``failed`` result with NaN pose and covariance."""
        return cls(np.full((4, 4), np.nan), np.full((6, 6), np.nan), 0.0, 0.0, Status.FAILED,
                   reason, method, dict(timings or {}))


class StageTimer:
    """Collect per-stage wall times in milliseconds: ``with timer('stage'): ...``."""

    def __init__(self):
        self.timings: dict[str, float] = {}
        self._stage = None
        self._start = 0.0

    def __call__(self, stage: str) -> 'StageTimer':
        self._stage = stage
        return self

    def __enter__(self) -> 'StageTimer':
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        elapsed = (time.perf_counter() - self._start) * 1e3
        self.timings[self._stage] = self.timings.get(self._stage, 0.0) + elapsed


class Registrar(abc.ABC):
    """
    One registration method: image + cloud (+ optional prior) -> ``RegistrationResult``.

    Subclasses implement :meth:`_register` and raise :class:`RegistrationFailure` for bad data;
    :meth:`register` checks the inputs, times the call and converts failures into results.
    """

    name = 'registrar'
    # True for methods that read the scan as seen from its sensor (scan lines, ranges): their
    # cloud must be in the sensor's own frame, as a LiDAR driver publishes it.
    needs_sensor_frame = False

    def register(self, image: ImageFrame, cloud: CloudFrame,
                 prior: Prior | None = None) -> RegistrationResult:
        """
        Estimate ``T_cam_lidar`` for one image and one cloud.

        :param image: the camera image and its calibration.
        :param cloud: the LiDAR points in the LiDAR frame.
        :param prior: an initial guess (methods that need one fail without it).
        :return: the result; status ``failed`` (never an exception) for bad data.
        """
        if not isinstance(image, ImageFrame):
            raise ValueError(f'image must be an ImageFrame, got {type(image).__name__}')
        if not isinstance(cloud, CloudFrame):
            raise ValueError(f'cloud must be a CloudFrame, got {type(cloud).__name__}')
        if prior is not None and not isinstance(prior, Prior):
            raise ValueError(f'prior must be a Prior or None, got {type(prior).__name__}')
        timer = StageTimer()
        start = time.perf_counter()
        try:
            reason = _check_data(cloud, prior)
            if reason:
                raise RegistrationFailure(reason)
            result = self._register(image, cloud, prior, timer)
        except RegistrationFailure as failure:
            result = RegistrationResult.failure(self.name, str(failure), timer.timings)
        except np.linalg.LinAlgError as error:
            result = RegistrationResult.failure(self.name, f'singular linear system: {error}',
                                                timer.timings)
        result.timings['total'] = (time.perf_counter() - start) * 1e3
        return result

    @abc.abstractmethod
    def _register(self, image: ImageFrame, cloud: CloudFrame, prior: Prior | None,
                  timer: StageTimer) -> RegistrationResult:
        """Run the method; time stages with ``with timer('stage'):``."""


def publication_status(result: RegistrationResult, prior: Prior | None,
                       min_score: float) -> tuple[Status, str]:
    """
    Return the status and reason under which a result may be published (``ok``) or not.

    The registration node and ``i2p-replay`` decide alike: a result must be ``ok``, score at
    least ``min_score``, be finite and lie within the prior's ranges (the truth does; on the
    demo drive the wrong estimates that scored well sat 4-7 deg from the prior, the truth
    within 2.1 deg of it).
    """
    if result.status != Status.OK:
        return result.status, result.reason
    if not result.score >= min_score:
        return Status.LOW_CONFIDENCE, (f'score {result.score:.3f} below registration.min_score '
                                       f'{min_score:.3f}')
    if not np.isfinite(result.T_cam_lidar).all():
        return Status.FAILED, 'estimate is not finite'
    outside = prior.outside(result.T_cam_lidar) if prior is not None else ''
    if outside:
        return Status.LOW_CONFIDENCE, f"estimate outside the prior's ranges: {outside}"
    return Status.OK, ''


def _check_data(cloud: CloudFrame, prior: Prior | None) -> str:
    """Return why the inputs cannot be registered, or ``''``."""
    if len(cloud) == 0:
        return 'empty cloud: no points'
    if not np.all(np.isfinite(cloud.points)):
        return 'cloud contains NaN or inf coordinates'
    if prior is not None and not np.all(np.isfinite(prior.T_cam_lidar)):
        return 'prior T_cam_lidar contains NaN or inf'
    return ''


class RefinedRegistrar(Registrar):
    """
    Run one method, then a refinement stage seeded with its estimate.

    :param method: the first stage (any registrar).
    :param refiner: a registrar that refines from its prior (e.g. edge alignment without search).
    :param refine_ranges: ``(translation_range, rotation_range)`` of the prior handed to the
        refiner (metres, radians); the refiner may use them to reject runaway solutions.
    """

    def __init__(self, method: Registrar, refiner: Registrar,
                 refine_ranges: tuple[float, float] = (0.5, np.radians(5.0))):
        if not isinstance(method, Registrar) or not isinstance(refiner, Registrar):
            raise ValueError('method and refiner must both be Registrar instances')
        self.method = method
        self.refiner = refiner
        self.refine_ranges = refine_ranges
        self.name = f'{method.name}+{refiner.name}'

    def _register(self, image, cloud, prior, timer):
        first = self.method.register(image, cloud, prior)
        timings = {f'{self.method.name}.{k}': v for k, v in first.timings.items()}
        if first.status == Status.FAILED:
            return RegistrationResult.failure(self.name, first.reason, timings)
        seed = Prior(first.T_cam_lidar, self.refine_ranges[0], self.refine_ranges[1],
                     first.covariance if np.all(np.isfinite(first.covariance)) else None)
        second = self.refiner.register(image, cloud, seed)
        timings.update({f'{self.refiner.name}.{k}': v for k, v in second.timings.items()})
        if second.status == Status.FAILED:
            # The first estimate still stands, but nothing confirmed it.
            first.status = Status.LOW_CONFIDENCE
            first.reason = f'refinement failed: {second.reason}'
            second = first
        second.timings = timings
        second.method = self.name
        return second
