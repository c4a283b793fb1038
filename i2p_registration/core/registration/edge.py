"""
The classical ``edge`` method: LiDAR depth-discontinuity points onto image edges.

Stages (timed under these names): ``image_features`` (rectified working image, edge cost
pyramid), ``lidar_features`` (depth edges, z-buffer occluders), ``search`` (optional global
hypothesis search), ``refine`` (robust coarse-to-fine LM from the prior and the best search
candidates), ``score``.
The score is the edge-strength-weighted share of visible edge points whose projection lies
within ``inlier_px`` working pixels of an image edge; the inlier ratio is the same share
unweighted.
"""

from __future__ import annotations

from i2p_registration.core.metrics import rre_geodesic, rte
from i2p_registration.core.preprocess import frustum_mask, range_mask, voxel_downsample
from i2p_registration.core.registration.base import (Prior, Registrar, RegistrationFailure,
                                                     RegistrationResult, StageTimer, Status)
from i2p_registration.core.registration.image_edges import edge_pyramid, EdgeDetector, rectify
from i2p_registration.core.registration.lidar_edges import (cross_line_edges, depth_edges,
                                                            ScanGeometry, ScanLineError)
from i2p_registration.core.registration.refine import edge_residuals, EdgeChannel, EdgeRefiner
from i2p_registration.core.registration.search import PoseSearch
from i2p_registration.core.sensors import CloudFrame, ImageFrame
import numpy as np


# Median line spacing (radians) of the LiDAR that ``top_weight`` was measured with (the 64-line
# LiDAR of the synthetic test worlds).
TOP_LINE_SPACING = np.radians(0.35)
# Starts whose coarsest LM level ends closer than this are refined once (metres, degrees).
MERGE_TRANSLATION = 0.01
MERGE_ROTATION_DEG = 0.05


class EdgeRegistrar(Registrar):
    """
    Edge alignment of one image and one scan.

    :param detector: image edge detector.
    :param refiner: the LM refinement, or None to return the search result as is.
    :param search: global search around the prior, or None to refine from the prior directly.
    :param default_prior: used when ``register`` gets no prior (e.g. the nominal extrinsic);
        without either, registration fails with that reason.
    :param max_width: working image width cap, pixels.
    :param pyramid_levels: cost pyramid levels.
    :param truncation: distance truncation, pixels of each level.
    :param min_range: scan points nearer than this are ignored, metres.
    :param max_range: scan points farther than this are ignored, metres.
    :param max_edge_points: edge points kept (strongest first when more are found).
    :param occluder_voxel: voxel size of the z-buffer occluders, metres.
    :param candidates: search hypotheses refined besides the prior itself (always a start when
        there is a refiner); the best refined score wins. None: as many as the search names
        (its ``starts``: 3 for the 6-DoF search, all 128 it returns for the planar one). The
        search ranks by a score over the edge points in view, the result by the inlier share
        of the visible ones, and the two can disagree. When the search still ranked by the
        soft score over all depth edge points (see :mod:`~.search`), on the first 300 pairs of
        the demo drive (32 lines, a few hundred edge points per pair), 26 estimates ended 5-8
        deg off, and for 25 of them the truth scored higher than the estimate while every
        search candidate started 3.4 deg or more away from it. With the prior as one of three
        starts instead of
        the third candidate, the share of the 1176 pairs of two replayed 60 s drives (seeds 0
        and 7) within 2 m / 5 deg rose from 92 % to 99.9 % and 99.0 %; the synthetic ``nearby``
        protocol (200 pairs, prior 5 deg / 0.5 m off) converged 71.4 % instead of 67.8 % (both
        with depth edges only).
    :param inlier_px: inlier bound of the score, working pixels.
    :param min_score: below this score the status is ``low_confidence``.
    :param intensity_threshold: relative step of the LiDAR intensity along a line that makes an
        intensity edge (paint and material borders: windows, signs, two-tone surfaces); 0:
        depth edges only. Only steep borders count (see ``intensity_support`` of
        :func:`~.lidar_edges.depth_edges`), the ones the orientation-filtered image edges hold.
        They take part in the refinement only: the search and the score use the depth edges.
        Default 0.3, against 0 (depth edges only), each estimate scored against the truth:
        ``benchmarks/registration_edge.py`` (200 ``nearby`` pairs of a synthetic test world),
        see its ``depth_only`` figures; the two PJLab samples 0.180 -> 0.177 and 0.188 ->
        0.177 deg, 9.2 -> 9.1 and 9.4 -> 9.1 cm (kitti_000008 fails either way); 17
        full-size pairs of 17 synthetic worlds (seeds 3-19, the node test's prior) within 10
        cm 65 -> 82 %, median 3.2 -> 2.2 cm, published beyond 10 cm 3 -> 1; three replayed
        60 s demo drives (1176 pairs each) median error 9.6 / 8.4 / 8.8 -> 8.0 / 6.8 / 7.2
        cm, published at ``min_score`` 0.32 and within 2 m / 5 deg 95.3 / 92.3 / 91.5 ->
        95.8 / 93.3 / 92.2 %, published beyond 0 / 1 / 1 -> 0 / 0 / 0. With intensity edges
        in the search too, all three starts of the node test's pair fell into a minimum 0.25
        m off.
    :param intensity_weight: weight of intensity edge points in ``(0, 1]`` (depth edges weigh up
        to 1 by their jump). The score counts depth edges only: an intensity edge that the
        image does not show as an edge (a faint marking) says nothing against the pose.
    :param top_weight: weight of the tops and bottoms of objects in the refinement (depth edges
        between adjacent scan lines, :func:`~.lidar_edges.cross_line_edges`, matched against
        the image edges along the rows); 0: sides only. Sides alone hardly tell the camera's
        pitch and height: refined from the truth without a prior on 40 pairs of a synthetic
        test world, tops (weight 0.5) took the median pitch error from 0.23 to 0.07 deg.
        The search and the score use the sides only (scoring tops in the search lost 5 % of
        converged pairs on 60 of them).
    :param marking_weight: weight of the markings in the refinement, relative to
        ``intensity_weight``: intensity edges that no neighbouring line confirms as a steep
        border (lane lines, crossings and other paint on the ground), matched against the image
        edges of every orientation (their own cost pyramid). Points on the ground at many ranges
        tell the camera's height and pitch, which sides and tops hardly do. 0: none; they also
        need ``intensity_threshold > 0``. Weight 1 against none, on 199 ``nearby`` pairs of a
        synthetic test world (then with 2 search starts and 30 LM steps): converged 76.9 ->
        84.9 %, median rotation error 0.193 -> 0.089 deg, camera position 4.6 -> 1.7 cm (weights
        0.5 / 2 / 4 on the first 60 pairs: 49 / 49 / 46 converged against 52 at 1); on
        pjlab_scene3 (20 trials) 0.174 -> 0.081 deg and 8.9 -> 3.5 cm, on pjlab_manual 0.180 ->
        0.156 deg and 9.0 -> 8.7 cm. In the 6-DoF search they cost converged pairs (148 of
        199 instead of 169): regions dense with markings draw the hypotheses. The planar
        search ranks its settled hypotheses with them (see :class:`~.search.PlanarSearch`).
    """

    name = 'edge'
    needs_sensor_frame = True

    def __init__(self, detector: EdgeDetector, refiner: EdgeRefiner | None = None,
                 search: PoseSearch | None = None, default_prior: Prior | None = None,
                 max_width: int = 960, pyramid_levels: int = 3, truncation: float = 10.0,
                 min_range: float = 1.0, max_range: float = 80.0, max_edge_points: int = 4000,
                 occluder_voxel: float = 0.2, candidates: int | None = None,
                 inlier_px: float = 2.0,
                 min_score: float = 0.2, intensity_threshold: float = 0.3,
                 intensity_weight: float = 0.5, top_weight: float = 0.0,
                 marking_weight: float = 0.0):
        if not isinstance(detector, EdgeDetector):
            raise ValueError(f'detector must be an EdgeDetector, got {type(detector).__name__}')
        if refiner is not None and not isinstance(refiner, EdgeRefiner):
            raise ValueError(f'refiner must be an EdgeRefiner or None, got '
                             f'{type(refiner).__name__}')
        if search is not None and not isinstance(search, PoseSearch):
            raise ValueError(f'search must be a PoseSearch or None, got {type(search).__name__}')
        if refiner is None and search is None:
            raise ValueError('edge alignment needs a search, a refiner or both')
        if default_prior is not None and not isinstance(default_prior, Prior):
            raise ValueError('default_prior must be a Prior or None')
        self.detector, self.refiner, self.search = detector, refiner, search
        self.default_prior = default_prior
        self.max_width, self.pyramid_levels = int(max_width), int(pyramid_levels)
        self.truncation = float(truncation)
        self.min_range, self.max_range = float(min_range), float(max_range)
        self.max_edge_points, self.occluder_voxel = int(max_edge_points), float(occluder_voxel)
        if candidates is not None and candidates < 0:
            raise ValueError(f'candidates must be >= 0, got {candidates}')
        self.candidates = None if candidates is None else int(candidates)
        self.inlier_px = float(inlier_px)
        self.min_score = float(min_score)
        if intensity_threshold < 0 or not 0 < intensity_weight <= 1:
            raise ValueError('intensity_threshold must be >= 0 and intensity_weight in (0, 1], '
                             f'got {intensity_threshold}, {intensity_weight}')
        self.intensity_threshold = float(intensity_threshold)
        self.intensity_weight = float(intensity_weight)
        if top_weight < 0 or marking_weight < 0:
            raise ValueError(f'top_weight and marking_weight must be >= 0, got {top_weight}, '
                             f'{marking_weight}')
        self.top_weight = float(top_weight)
        self.marking_weight = float(marking_weight)

    def _register(self, image: ImageFrame, cloud: CloudFrame, prior: Prior | None,
                  timer: StageTimer) -> RegistrationResult:
        prior = prior if prior is not None else self.default_prior
        if prior is None:
            raise RegistrationFailure('edge alignment needs a prior T_cam_lidar (an initial '
                                      'guess); none was given and no default is configured')
        with timer('image_features'):
            gray, K = rectify(image, self.max_width)
            edges, sides, tops = self.detector.detect_oriented(gray)
            pyramid = edge_pyramid(sides, K, self.pyramid_levels, self.truncation)
            if all(not np.any(f.cost < f.truncation) for f in pyramid):
                raise RegistrationFailure('no edges in the image (uniform or blank image)')
            top_pyramid = (edge_pyramid(tops, K, self.pyramid_levels, self.truncation)
                           if self.use_tops else None)
        with timer('lidar_features'):
            try:
                geometry = ScanGeometry.of(cloud.points, cloud.ring) if len(cloud) >= 3 else None
            except ScanLineError as error:
                raise RegistrationFailure(str(error)) from error
            points, weights, depth, occluders, markings = self._lidar_features(
                cloud, image, prior, geometry)
            score_weights = np.where(depth, weights, 0.0)
            more = []
            if self.use_tops and geometry is not None:
                top_points, top_weights = self._top_features(cloud, image, prior, geometry)
                more.append(EdgeChannel(top_pyramid, top_points,
                                        self.top_weight_of(geometry) * top_weights))
        marking_channels = ()
        if len(markings[0]):
            # The markings' own cost pyramid (all edges) only for scans that show markings.
            with timer('image_features'):
                marking_channels = (EdgeChannel(edge_pyramid(
                    edges, K, self.pyramid_levels, self.truncation), *markings),)
            more.extend(marking_channels)
        with timer('search'):
            starts = prior.T_cam_lidar[None]
            if self.search is not None:
                found, _ = self.search.search(pyramid, points, score_weights, prior, occluders,
                                              marking_channels)
                count = self.search.starts if self.candidates is None else self.candidates
                starts = (found[:1] if self.refiner is None else
                          np.concatenate([starts, found[:count]]))
        with timer('refine'):
            best = self._refine(pyramid, points, weights, score_weights, occluders, starts,
                                prior, tuple(more))
        with timer('score'):
            T, covariance, converged = best
            score, inliers, count = self._score(pyramid, points, score_weights, occluders, T)
        status, reason = Status.OK, ''
        if count < 1:
            raise RegistrationFailure('no edge points in view at the estimate')
        if score < self.min_score:
            status = Status.LOW_CONFIDENCE
            reason = f'score {score:.2f} below {self.min_score:.2f}'
        elif not converged:
            status = Status.LOW_CONFIDENCE
            reason = 'refinement reached its iteration limit without converging'
        return RegistrationResult(T, covariance, score, inliers, status, reason, self.name,
                                  timer.timings)

    @property
    def use_tops(self) -> bool:
        """Return whether the refinement also matches the tops of objects."""
        return self.top_weight > 0 and self.refiner is not None

    @property
    def use_markings(self) -> bool:
        """Return whether the refinement also matches intensity edges of any slant."""
        return (self.marking_weight > 0 and self.intensity_threshold > 0
                and self.refiner is not None)

    def _in_reach(self, points: np.ndarray, image: ImageFrame, prior: Prior) -> np.ndarray:
        """Return ``(M,)`` bool: points that the prior's uncertainty can bring into view."""
        if self.search is not None and np.any(prior.rotation_range >= np.radians(30.0)):
            return np.ones(len(points), dtype=bool)
        camera = image.camera
        reach = np.max(prior.rotation_range) + np.max(prior.translation_range) / 5.0
        margin = camera.K[0, 0] * np.tan(min(reach, 1.2)) + 0.05 * camera.width
        return frustum_mask(points, prior.T_cam_lidar, camera, margin)

    def _strongest(self, weight: np.ndarray) -> np.ndarray:
        """Return the indices of the ``max_edge_points`` strongest edge points, in order."""
        # Strongest first; ties keep scan order, so the choice is deterministic.
        return np.argsort(-weight, kind='stable')[:self.max_edge_points]

    def top_weight_of(self, geometry: ScanGeometry) -> float:
        """
        Return the weight of the tops of one scan: ``top_weight`` scaled by its line spacing.

        A top lies somewhere between two lines; half-way placement errs by up to half their
        spacing. Weighted by inverse variance against the spacing ``top_weight`` was measured
        at (0.35 deg, a 64-line LiDAR), a 32-line LiDAR's tops (1.33 deg apart) weigh 0.07 of
        it. At the full weight they took the median error of 100 pairs of the demo drive
        (32 lines) from 0.25 m / 0.47 deg without tops to 0.47 m / 0.71 deg (with the prior
        of the time, 0.05 of the summed point weights).
        """
        spacing = np.median(np.diff(geometry.line_elevation)) if len(
            geometry.line_elevation) > 1 else np.inf
        return self.top_weight * min(1.0, (TOP_LINE_SPACING / max(spacing, 1e-9)) ** 2)

    def _top_features(self, cloud: CloudFrame, image: ImageFrame, prior: Prior,
                      geometry: ScanGeometry):
        """Return the top and bottom edge points ``(M, 3)`` and their weights."""
        edges = cross_line_edges(cloud.points, min_range=self.min_range, geometry=geometry)
        keep = range_mask(edges.points, self.min_range, self.max_range)
        keep[keep] = self._in_reach(edges.points[keep], image, prior)
        points, weight = edges.points[keep], edges.weight[keep].astype(np.float64)
        if len(points) > self.max_edge_points:
            strongest = self._strongest(weight)
            points, weight = points[strongest], weight[strongest]
        return points, weight

    def _lidar_features(self, cloud: CloudFrame, image: ImageFrame, prior: Prior,
                        geometry: ScanGeometry | None):
        """
        Return the edge points.

        :return: side edge points ``(M, 3)``, their weights, their depth-edge mask ``(M,)``,
            the occluders and the markings (``(K, 3)`` points and their weights; none without
            ``use_markings``).
        """
        # Edges come from the whole scan (returns beyond the range limit still tell where a
        # silhouette ends); the edge points themselves obey the range limits.
        edges = depth_edges(cloud.points, cloud.ring, cloud.intensity, min_range=self.min_range,
                            intensity_threshold=self.intensity_threshold,
                            intensity_weight=self.intensity_weight,
                            flat_intensity=self.use_markings, geometry=geometry)
        in_range = range_mask(edges.points, self.min_range, self.max_range)
        if not np.any(in_range & ~edges.flat):
            raise RegistrationFailure('no depth edges in the scan (no discontinuities found)')
        in_view = in_range.copy()
        in_view[in_range] = self._in_reach(edges.points[in_range], image, prior)
        side, flat = in_view & ~edges.flat, in_view & edges.flat
        points, weight = edges.points[side], edges.weight[side].astype(np.float64)
        depth = edges.depth[side]
        if len(points) == 0:
            raise RegistrationFailure('no LiDAR edge points in the camera view at the prior')
        if len(points) > self.max_edge_points:
            strongest = self._strongest(weight)
            points, weight, depth = points[strongest], weight[strongest], depth[strongest]
        # Markings weigh alike: an even subsample keeps them spread over the view.
        step = max(1, -(-int(flat.sum()) // self.max_edge_points))
        markings = edges.points[flat][::step]
        marking_weights = np.full(len(markings), self.marking_weight * self.intensity_weight)
        cloud = cloud.select(range_mask(cloud.points, self.min_range, self.max_range))
        occluders = cloud.points[voxel_downsample(cloud.points, self.occluder_voxel)]
        return (points, weight, depth, occluders.astype(np.float64),
                (markings, marking_weights))

    def _refine(self, pyramid, points, weights, score_weights, occluders, starts, prior,
                more=()):
        """
        Refine each start, then polish the best score; return ``(T, covariance, converged)``.

        A start that ends the coarsest level within ``MERGE_TRANSLATION`` and
        ``MERGE_ROTATION_DEG`` of an earlier one is not refined further: the 6-DoF search's
        starts mostly meet (on pjlab_scene3 at 160x512 the refine stage took 96-103 ms instead of
        112-118 ms; 192 of 199 ``nearby`` pairs converged either way).

        A polish that fails (diverges, too few points) leaves the best refinement as it was.
        """
        if self.refiner is None:
            return starts[0], np.full((6, 6), np.nan), True
        ranges = np.concatenate([prior.translation_range, prior.rotation_range])
        best, best_score, failures = None, -np.inf, []
        coarsest = len(pyramid) - 1
        met = []
        for T0 in starts:
            try:
                lm = self.refiner.refine(pyramid, points, weights, occluders, T0,
                                         prior.T_cam_lidar, ranges, more, polish=False,
                                         levels=[coarsest])
                # A start that ends the coarsest level where an earlier one did would follow
                # it through the finer levels too.
                if any(rte(lm.T, T) < MERGE_TRANSLATION
                       and rre_geodesic(lm.T, T) < MERGE_ROTATION_DEG for T in met):
                    continue
                met.append(lm.T)
                if coarsest > 0:
                    lm = self.refiner.refine(pyramid, points, weights, occluders, lm.T,
                                             prior.T_cam_lidar, ranges, more, polish=False,
                                             levels=range(coarsest - 1, -1, -1), origin=T0)
            except RegistrationFailure as failure:
                failures.append(str(failure))
                continue
            score, _, _ = self._score(pyramid, points, score_weights, occluders, lm.T)
            if score > best_score:
                best, best_score = lm, score
        if best is None:
            raise RegistrationFailure(failures[0])
        try:
            best = self.refiner.polish(pyramid, points, weights, occluders, best.T,
                                       prior.T_cam_lidar, ranges, more) or best
        except RegistrationFailure:
            pass
        return best.T, best.covariance, best.converged

    def _score(self, pyramid, points, weights, occluders, T):
        """Return the weighted inlier share, the inlier ratio and the visible count at ``T``."""
        if self.refiner is not None:
            mask = self.refiner.visible(pyramid[0], points, occluders, T)
        else:
            mask = np.ones(len(points), dtype=bool)
        if not mask.any():
            return 0.0, 0.0, 0
        cost, _, _ = edge_residuals(pyramid[0], points[mask], weights[mask], T, False)
        inlier = cost * pyramid[0].scale < self.inlier_px
        score = float(np.sum(weights[mask] * inlier) / max(np.sum(weights[mask]), 1e-12))
        return score, float(np.mean(inlier)), int(mask.sum())
