"""
Online multiview mapping: scans in, keyframe graph and voxel map out (ROS-free).

:class:`MultiviewMapper` runs the multiview pipeline on a stream of LiDAR scans:

1. checks: too few finite points, a stamp older than the previous scan (a time jump; refused,
   or with ``reset_on_time_jump`` a new map), an invalid odometry pose. A refused scan changes
   nothing.
2. motion prior: with odometry, the pose ``T_odom_scan`` of the scan (its LiDAR frame in the
   odometry frame); without, each scan is registered against the last keyframe (from a
   constant-velocity prediction), which tracks ``T_map_scan``. A tracking registration below the
   confidence threshold refuses the scan, unless it is at least half of it and agrees with the
   prediction (as a sequential registration may agree with odometry, below): when the mapper
   falls behind the scans, the next scan lies farther from the last keyframe and overlaps it
   less, so a refusal would repeat for every later scan (measured on the demo drive played in
   real time on two cores: tracking stopped at 26 s of 60 with confidences 0.14-0.27).
3. keyframes (:class:`.keyframes.KeyframeSelector`) by travel, rotation and time.
4. a new keyframe gets candidate edges (:func:`.candidates.candidate_edges`): the previous
   keyframe(s) and loop closures near it in the current estimates, each measured by pairwise
   registration (:class:`.pairwise.PairwiseRegistrar`) from the current estimates. Edges below
   ``min_confidence`` are discarded; when the edge to the previous keyframe is, the keyframe is
   refused (the graph stays connected and unchanged). With odometry, a sequential registration
   down to half that confidence still counts when it agrees with the odometry (two independent
   measurements of one motion): open or turning stretches lower the scans' overlap, and once a
   keyframe is refused the next candidates lie farther from the last keyframe.
5. transformation synchronization (:class:`.synchronization.TransformationSynchronizer`,
   incremental) of a copy of the graph; only a successful solve replaces the graph.

Gauge: the first keyframe fixes the map frame. With odometry its map pose is its odometry pose,
so ``T_map_odom`` starts at identity (REP-105); without, the map frame is the first keyframe's
LiDAR frame. Keyframe clouds are stored voxelized at ``voxel_size_m``; they are the registration
targets and make the map. :meth:`MultiviewMapper.snapshot` returns an immutable view of the
keyframes that other threads may read (map building, saving) while the mapper goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os

import numpy as np

from .candidates import candidate_edges, CandidateConfig
from .graph import check_transforms, PoseGraph
from .keyframes import KeyframeConfig, KeyframeSelector
from .map_files import MAP_FORMATS, voxel_downsample, write_point_cloud, write_tum
from .pairwise import PairwiseConfig, PairwiseRegistrar, PairwiseResult
from .pose_history import interpolate_pose
from .synchronization import SynchronizationConfig, TransformationSynchronizer
from ..geometry.rotations import geodesic_angle, project_to_so3
from ..geometry.se3 import inverse

# A registration confirmed by odometry or by the motion prediction: its confidence is at least
# this share of min_confidence, and it differs from the expected relative pose by at most
# (metres at 0 m, per metre travelled) and degrees.
CONFIRMED_CONFIDENCE = 0.5
AGREEMENT_TRANSLATION = (0.3, 0.05)
AGREEMENT_ROTATION_DEG = 2.0


def _rigid(T: np.ndarray) -> np.ndarray:
    """Re-orthonormalize the rotation of a product of transforms (round-off accumulates)."""
    T = np.array(T, dtype=np.float64)
    T[:3, :3] = project_to_so3(T[:3, :3])
    return T


@dataclass
class ScanOutcome:
    """
    What :meth:`MultiviewMapper.add_scan` did with one scan.

    :ivar status: ``'keyframe'`` (added to the graph), ``'tracked'`` (pose known, no
        keyframe) or ``'refused'`` (nothing changed; see ``reason``).
    :ivar reason: why a scan was refused, or a note (e.g. a discarded loop closure); '' if none.
    :ivar T_map_scan: ``(4, 4)`` estimated pose of the scan in the map frame, None if unknown.
    :ivar edges_added: edges the scan added (0 unless a keyframe).
    :ivar loop_closures_added: loop-closure edges among them.
    """

    status: str
    reason: str = ''
    T_map_scan: np.ndarray | None = None
    edges_added: int = 0
    loop_closures_added: int = 0


@dataclass
class MapperStats:
    """
    Counters and the figures of the last solve.

    :ivar scans: scans offered. :ivar refused: scans refused (bad input or failed registration).
    :ivar bad_input: refused for their content (too few finite points, invalid prior).
    :ivar time_jumps: scans older than the previous one. :ivar registration_failures: refused
        because a registration they needed fell below the confidence threshold.
    :ivar discarded_edges: candidate edges discarded for low confidence.
    :ivar odometry_confirmed: sequential edges accepted below the confidence threshold because
        they agree with the odometry.
    :ivar prediction_confirmed: LiDAR-only tracking registrations accepted below the confidence
        threshold because they agree with the constant-velocity prediction.
    :ivar resets: new maps started. :ivar solve_time_ms: wall time of the last synchronization.
    :ivar pruned_edges: edges pruned by the last synchronization.
    :ivar rotation_residual_deg: ``(median, max)`` over the kept edges after the last solve.
    :ivar translation_residual_m: ``(median, max)`` over the kept edges after the last solve.
    :ivar last_reason: the reason of the last refusal.
    """

    scans: int = 0
    refused: int = 0
    bad_input: int = 0
    time_jumps: int = 0
    registration_failures: int = 0
    discarded_edges: int = 0
    odometry_confirmed: int = 0
    prediction_confirmed: int = 0
    resets: int = 0
    solve_time_ms: float = float('nan')
    pruned_edges: int = 0
    rotation_residual_deg: tuple = (float('nan'), float('nan'))
    translation_residual_m: tuple = (float('nan'), float('nan'))
    last_reason: str = ''


@dataclass(frozen=True)
class KeyframeSnapshot:
    """
    Immutable view of the keyframes at one moment (safe to read from another thread).

    :ivar stamps_ns: ``(K,)`` int64 keyframe stamps.
    :ivar poses: ``(K, 4, 4)`` keyframe poses ``T_map_keyframe`` (LiDAR frames).
    :ivar clouds: K ``(N_k, 3)`` float32 voxelized keyframe clouds in their LiDAR frames.
    :ivar voxel_size_m: voxel of the map.
    :ivar n_edges: edges of the graph. :ivar n_loop_closures: loop closures among them.
    :ivar version: increases with every change of the keyframes.
    """

    stamps_ns: np.ndarray
    poses: np.ndarray
    clouds: tuple
    voxel_size_m: float
    n_edges: int = 0
    n_loop_closures: int = 0
    version: int = 0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def map_points(self) -> np.ndarray:
        """Return the ``(M, 3)`` float32 voxelized map in the map frame (computed once)."""
        if 'map' not in self._cache:
            parts = [c.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
                     for c, T in zip(self.clouds, self.poses)]
            points = np.concatenate(parts) if parts else np.zeros((0, 3))
            self._cache['map'] = voxel_downsample(points, self.voxel_size_m)
        return self._cache['map']

    def save(self, directory: str | os.PathLike, map_format: str = 'pcd') -> tuple[str, str]:
        """
        Write ``map.<map_format>`` (the voxel map) and ``keyframes.tum`` (keyframe poses).

        :param directory: output folder (created; ``~`` expanded); files are overwritten.
        :param map_format: ``'pcd'`` or ``'ply'``.
        :return: the paths of the map file and of the TUM file.
        :raises ValueError: on an unknown format or an empty map.
        :raises OSError: when the files cannot be written.
        """
        if map_format not in MAP_FORMATS:
            raise ValueError(f"map_format must be 'pcd' or 'ply', got {map_format!r}")
        if len(self.stamps_ns) == 0:
            raise ValueError('the map is empty: no keyframe yet')
        directory = os.path.expanduser(str(directory))
        os.makedirs(directory, exist_ok=True)
        map_path = os.path.join(directory, f'map.{map_format}')
        tum_path = os.path.join(directory, 'keyframes.tum')
        write_point_cloud(map_path, self.map_points())
        write_tum(tum_path, self.stamps_ns, self.poses)
        return map_path, tum_path


class MultiviewMapper:
    """
    Keyframe pose graph and voxel map of a LiDAR scan stream (see the module docstring).

    :param registrar: pairwise scan registration.
    :param synchronizer: transformation synchronization of the graph.
    :param keyframes: keyframe thresholds.
    :param candidates: candidate edge rules.
    :param use_odometry: True when every scan comes with its odometry pose.
    :param min_confidence: edges with a lower local confidence are discarded.
    :param voxel_size_m: voxel of the stored keyframe clouds and of the map.
    :param min_points: fewest finite points a scan may have.
    :param reset_on_time_jump: start a new map on a stamp older than the previous one by more
        than ``jump_back_ns`` (else such scans are refused).
    :param jump_back_ns: that threshold, int nanoseconds.
    """

    def __init__(self, registrar: PairwiseRegistrar, synchronizer: TransformationSynchronizer,
                 keyframes: KeyframeConfig, candidates: CandidateConfig, *,
                 use_odometry: bool, min_confidence: float = 0.3, voxel_size_m: float = 0.2,
                 min_points: int = 100, reset_on_time_jump: bool = False,
                 jump_back_ns: int = 1_000_000_000) -> None:
        """Create a mapper with an empty map."""
        if not voxel_size_m > 0.0 or min_points < 1 or not 0.0 <= min_confidence <= 1.0:
            raise ValueError('voxel_size_m must be > 0, min_points >= 1 and min_confidence in '
                             f'[0, 1], got {voxel_size_m}, {min_points}, {min_confidence}')
        self.registrar = registrar
        self.synchronizer = synchronizer
        self.selector = KeyframeSelector(keyframes)
        self.candidates = candidates
        self.use_odometry = bool(use_odometry)
        self.min_confidence = float(min_confidence)
        self.voxel_size_m = float(voxel_size_m)
        self.min_points = int(min_points)
        self.reset_on_time_jump = bool(reset_on_time_jump)
        self.jump_back_ns = int(jump_back_ns)
        self.stats = MapperStats()
        self._clear()

    def _clear(self) -> None:
        self._graph = PoseGraph()
        self._clouds: list[np.ndarray] = []
        self._odom_poses: list[np.ndarray] = []
        self._last_stamp: int | None = None
        # Last two tracked scans as (stamp, keyframe index, T_keyframe_scan), for the
        # constant-velocity prediction of LiDAR-only tracking.
        self._track: list[tuple[int, int, np.ndarray]] = []
        self._version = getattr(self, '_version', 0) + 1
        self.selector.reset()
        self.synchronizer.reset()

    def reset(self) -> None:
        """Forget every keyframe and start a new map (counters are kept)."""
        self._clear()
        self.stats.resets += 1

    @property
    def graph(self) -> PoseGraph:
        """Return a copy of the keyframe pose graph."""
        return self._graph.copy()

    @property
    def n_keyframes(self) -> int:
        """Return the number of keyframes."""
        return self._graph.n_nodes

    def T_map_odom(self) -> np.ndarray | None:
        """Return ``(4, 4)`` ``T_map_odom`` from the newest keyframe; None without odometry."""
        if not self.use_odometry or self._graph.n_nodes == 0:
            return None
        return _rigid(self._graph.poses[-1] @ inverse(self._odom_poses[-1]))

    def snapshot(self) -> KeyframeSnapshot:
        """Return an immutable view of the current keyframes."""
        g = self._graph
        return KeyframeSnapshot(g.stamps, g.poses, tuple(self._clouds), self.voxel_size_m,
                                g.n_edges, int(g.loop_closure.sum()), self._version)

    # --- the pipeline ---------------------------------------------------------------------

    def refuse(self, reason: str) -> ScanOutcome:
        """
        Count a scan refused before it reached the mapper (e.g. no odometry at its stamp).

        :param reason: why, reported as ``stats.last_reason``.
        :return: the ``'refused'`` outcome.
        """
        self.stats.scans += 1
        return self._refuse(reason, 'bad_input')

    def _refuse(self, reason: str, kind: str | None = None) -> ScanOutcome:
        self.stats.refused += 1
        if kind is not None:
            setattr(self.stats, kind, getattr(self.stats, kind) + 1)
        self.stats.last_reason = reason
        return ScanOutcome('refused', reason)

    def add_scan(self, points, stamp_ns: int, T_odom_scan=None) -> ScanOutcome:
        """
        Offer one scan.

        :param points: ``(N, 3)`` scan in its LiDAR frame (metres); non-finite rows are dropped.
        :param stamp_ns: scan stamp, int64 nanoseconds.
        :param T_odom_scan: ``(4, 4)`` pose of the LiDAR frame in the odometry frame at the
            stamp; required with ``use_odometry``, ignored without.
        :return: what was done; a refused scan leaves the mapper unchanged (counters aside).
        """
        self.stats.scans += 1
        stamp_ns = int(stamp_ns)
        pts = np.asarray(points)
        if pts.ndim != 2 or pts.shape[1] != 3:
            return self._refuse(f'points must have shape (N, 3), got {pts.shape}', 'bad_input')
        finite = pts[np.all(np.isfinite(pts), axis=1)]
        if len(finite) < self.min_points:
            what = 'empty scan' if len(pts) == 0 else \
                f'{len(finite)} finite points of {len(pts)}'
            return self._refuse(f'{what}: need at least {self.min_points}', 'bad_input')
        if self.use_odometry:
            if T_odom_scan is None:
                return self._refuse('no odometry pose for the scan', 'bad_input')
            try:
                T_odom_scan = check_transforms(T_odom_scan, 'T_odom_scan')
            except ValueError as error:
                return self._refuse(str(error), 'bad_input')
        if self._last_stamp is not None and stamp_ns < self._last_stamp:
            back = self._last_stamp - stamp_ns
            self.stats.time_jumps += 1
            if not (self.reset_on_time_jump and back > self.jump_back_ns):
                return self._refuse(f'time jumped back by {back * 1e-9:.3f} s: scan older than '
                                    'the previous one', None)
            self.reset()
        cloud = voxel_downsample(finite, self.voxel_size_m)
        if self._graph.n_nodes == 0:
            return self._add_first(cloud, stamp_ns, T_odom_scan)
        if self.use_odometry:
            return self._add_with_odometry(cloud, stamp_ns, T_odom_scan)
        return self._add_lidar_only(cloud, stamp_ns)

    def _register(self, cloud: np.ndarray, target: int, T_init: np.ndarray | None,
                  T_expected: np.ndarray | None = None,
                  expected_from: str = 'odometry') -> PairwiseResult | str:
        """
        Register ``cloud`` onto keyframe ``target``; return the result or why it failed.

        :param T_expected: ``(4, 4)`` ``T_target_scan`` from the odometry or the motion
            prediction: a registration of lower confidence that agrees with it counts (see the
            module docstring).
        :param expected_from: ``'odometry'`` or ``'prediction'``, where ``T_expected`` comes
            from (reasons and counters).
        """
        try:
            result = self.registrar.register(cloud, self._clouds[target],
                                             None if T_init is None else _rigid(T_init))
        except ValueError as error:
            return str(error)
        if result.confidence >= self.min_confidence:
            return result
        why = (f'registration onto keyframe {target} has confidence {result.confidence:.3f} '
               f'< {self.min_confidence:.3f}')
        if T_expected is None:
            return why
        if result.confidence < CONFIRMED_CONFIDENCE * self.min_confidence:
            return why
        delta = inverse(T_expected) @ result.T_target_source
        moved = float(np.linalg.norm(delta[:3, 3]))
        travelled = float(np.linalg.norm(T_expected[:3, 3]))
        tolerance = AGREEMENT_TRANSLATION[0] + AGREEMENT_TRANSLATION[1] * travelled
        turned = float(np.degrees(geodesic_angle(delta[:3, :3], np.eye(3))))
        if moved > tolerance or turned > AGREEMENT_ROTATION_DEG:
            return (f'{why}, and it differs from the {expected_from} by {moved:.2f} m / '
                    f'{turned:.1f} deg')
        name = f'{expected_from}_confirmed'
        setattr(self.stats, name, getattr(self.stats, name) + 1)
        return result

    def _add_first(self, cloud, stamp_ns, T_odom_scan) -> ScanOutcome:
        cfg = self.registrar.config
        n = len(voxel_downsample(cloud, cfg.voxel_size_m))
        if n < cfg.min_points:
            return self._refuse(f'{n} points after {cfg.voxel_size_m} m voxel downsampling; '
                                f'registration needs at least {cfg.min_points}', 'bad_input')
        T_map = T_odom_scan if self.use_odometry else np.eye(4)
        self._graph.add_node(T_map, stamp_ns)
        self._commit_keyframe(cloud, stamp_ns, T_odom_scan, T_map)
        self._track = [(stamp_ns, 0, np.eye(4))]
        return ScanOutcome('keyframe', '', T_map.copy())

    def _add_with_odometry(self, cloud, stamp_ns, T_odom_scan) -> ScanOutcome:
        last = self._graph.n_nodes - 1
        T_map_odom = self._graph.poses[last] @ inverse(self._odom_poses[last])
        T_map_scan = _rigid(T_map_odom @ T_odom_scan)
        if not self.selector.should_add(T_odom_scan, stamp_ns):
            self._last_stamp = stamp_ns
            return ScanOutcome('tracked', '', T_map_scan)
        return self._add_keyframe(cloud, stamp_ns, T_map_scan, T_odom_scan, None)

    def _add_lidar_only(self, cloud, stamp_ns) -> ScanOutcome:
        kf = self._graph.n_nodes - 1
        poses = self._graph.poses
        # Without a velocity yet, the global step registers: ICP from the last pose slides along
        # street-like scenes (the first scan after standstill moved 2.7 m on the test drive).
        T_init = None
        if len(self._track) == 2:
            T_init = inverse(poses[kf]) @ self._predict(stamp_ns, poses)
        tracked = self._register(cloud, kf, T_init, T_init, 'prediction')
        if isinstance(tracked, str):
            return self._refuse(f'tracking failed: {tracked}', 'registration_failures')
        T_map_scan = _rigid(poses[kf] @ tracked.T_target_source)
        if not self.selector.should_add(T_map_scan, stamp_ns):
            self._last_stamp = stamp_ns
            self._track = [*self._track[-1:], (stamp_ns, kf, tracked.T_target_source)]
            return ScanOutcome('tracked', '', T_map_scan)
        return self._add_keyframe(cloud, stamp_ns, T_map_scan, None, tracked)

    def _predict(self, stamp_ns: int, poses: np.ndarray) -> np.ndarray:
        """Constant-velocity prediction of ``T_map_scan`` from the last two tracked scans."""
        samples = [(s, poses[k] @ T) for s, k, T in self._track]
        if samples[-1][0] == samples[0][0]:
            return samples[-1][1]
        (s0, T0), (s1, T1) = samples
        return interpolate_pose(T0, T1, (stamp_ns - s0) / (s1 - s0))

    def _add_keyframe(self, cloud, stamp_ns, T_map_scan, T_odom_scan,
                      sequential: PairwiseResult | None) -> ScanOutcome:
        graph = self._graph.copy()
        new = graph.add_node(T_map_scan, stamp_ns)
        partners, loops = candidate_edges(graph.poses, new, self.candidates)
        accepted, notes = [], []
        for partner, loop in zip(partners, loops):
            T_init = inverse(graph.poses[partner]) @ T_map_scan
            if sequential is not None and partner == new - 1:
                result = sequential
            elif partner == new - 1 and self.use_odometry:
                T_odometry = inverse(self._odom_poses[partner]) @ T_odom_scan
                result = self._register(cloud, int(partner), T_init, T_odometry)
            else:
                result = self._register(cloud, int(partner), T_init)
            if isinstance(result, str):
                if partner == new - 1:
                    return self._refuse(f'keyframe refused: {result}', 'registration_failures')
                self.stats.discarded_edges += 1
                notes.append(result)
                continue
            accepted.append((int(partner), result, bool(loop)))
        for partner, result, loop in accepted:
            graph.add_edge(partner, new, _rigid(result.T_target_source), result.confidence,
                           result.information, loop)
        try:
            solution = self.synchronizer.update(graph)
            graph.set_poses(solution.poses)
        except Exception as error:  # noqa: B902 (any solver failure must leave the graph as is)
            self.synchronizer.reset()
            return self._refuse('keyframe refused: synchronization failed: '
                                f'{type(error).__name__}: {error}', None)
        self._graph = graph
        self._commit_keyframe(cloud, stamp_ns, T_odom_scan, graph.poses[new])
        kept = solution.kept
        rot = np.rad2deg(solution.rotation_residual_rad[kept])
        trans = solution.translation_residual_m[kept]
        s = self.stats
        s.solve_time_ms = solution.timings_s['total'] * 1e3
        s.pruned_edges = int(solution.pruned.sum())
        s.rotation_residual_deg = (float(np.median(rot)), float(rot.max()))
        s.translation_residual_m = (float(np.median(trans)), float(trans.max()))
        self._track = [*self._track[-1:], (stamp_ns, new, np.eye(4))]
        n_loops = sum(loop for _, _, loop in accepted)
        return ScanOutcome('keyframe', '; '.join(notes), graph.poses[new], len(accepted),
                           n_loops)

    def _commit_keyframe(self, cloud, stamp_ns, T_odom_scan, T_map_scan) -> None:
        self._clouds.append(cloud)
        self._odom_poses.append(T_odom_scan if T_odom_scan is not None else T_map_scan)
        self.selector.accept(T_odom_scan if self.use_odometry else T_map_scan, stamp_ns)
        self._last_stamp = stamp_ns
        self._version += 1


def make_mapper(config) -> MultiviewMapper:
    """
    Build the mapper that a :class:`~.config.MultiviewNodeConfig` describes.

    :param config: the node configuration (sections ``odometry``, ``input``, ``keyframes``,
        ``candidates``, ``pairwise``, ``synchronization``, ``map``).
    """
    p, s, c = config.pairwise, config.synchronization, config.candidates
    registrar = PairwiseRegistrar(PairwiseConfig(
        voxel_size_m=p.voxel_size, normal_radius_m=p.normal_radius, icp_method=p.icp_method,
        global_method=p.global_method, min_prior_fitness=p.min_prior_fitness,
        max_correspondence_factor=p.max_correspondence_factor,
        ransac_iterations=p.ransac_iterations, icp_iterations=p.icp_iterations, seed=p.seed))
    synchronizer = TransformationSynchronizer(SynchronizationConfig(
        sigma_rot_rad=s.sigma_rotation, sigma_trans_m=s.sigma_translation,
        cauchy_scale=s.cauchy_scale, prune_threshold=s.prune_threshold, refine=s.refine))
    keyframes = KeyframeConfig(min_distance_m=config.keyframes.min_distance,
                               min_rotation_rad=config.keyframes.min_rotation,
                               max_interval_ns=config.keyframes.max_interval_ns)
    candidates = CandidateConfig(sequential=c.sequential, loop_radius_m=c.loop_radius,
                                 min_index_gap=c.min_index_gap,
                                 max_loop_closures=c.max_loop_closures)
    return MultiviewMapper(
        registrar, synchronizer, keyframes, candidates,
        use_odometry=config.odometry.source != 'none', min_confidence=p.min_confidence,
        voxel_size_m=config.map.voxel_size, min_points=config.input.min_points,
        reset_on_time_jump=config.input.reset_on_time_jump,
        jump_back_ns=config.input.jump_back_threshold_ns)
