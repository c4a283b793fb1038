"""
The learned ``ray`` method: the RayI2P network predicts ``T_cam_lidar`` with no prior.

Stages (timed under these names): ``preprocess`` (image resized so that its focal length matches
the training data, centre-cropped to the network input size, camera model scaled and cropped
alike; scan range-filtered, voxel-downsampled and sampled to a fixed count with a fixed seed),
``network`` (batch of 1 under ``torch.inference_mode()``, float16 autocast on CUDA), ``rays``
(the classical camera-from-rays solution of the predicted rays) and ``score``.

The network checks itself: the regressed pose and the pose solved from its own rays should
agree. Their difference ``xi`` (left perturbation in the camera frame, ``T_rays = exp(xi) @
T_cam_lidar``) gives the covariance ``diag(xi**2 + floor**2)`` and the score
``exp(-(|rho| / translation_scale + |phi| / rotation_scale))``; the inlier ratio is the share of
patch rays that pass within ``inlier_m`` of the regressed camera centre and within
``inlier_deg`` of the regressed bearing. A prior, when given, is not used.
"""

from __future__ import annotations

import cv2
from i2p_registration.core.geometry.se3 import inverse, se3_log
from i2p_registration.core.models.checkpoint import load_model
from i2p_registration.core.models.pose_regression import solve_pose_from_rays
from i2p_registration.core.models.ray_net import RayI2PConfig, RayI2PNet
from i2p_registration.core.preprocess import random_sample, range_mask, voxel_downsample
from i2p_registration.core.registration.base import (Prior, Registrar, RegistrationFailure,
                                                     RegistrationResult, StageTimer, Status)
from i2p_registration.core.sensors import CameraModel, CloudFrame, ImageFrame
import numpy as np
import torch


def fit_image(image: np.ndarray, camera: CameraModel, image_hw: tuple[int, int],
              scale: float) -> tuple[np.ndarray, CameraModel]:
    """
    Resize an image by ``scale`` (more if the crop would not fit) and centre-crop it.

    :param image: ``(H, W, 3)`` uint8.
    :param camera: its camera model.
    :param image_hw: crop ``(height, width)``, pixels.
    :param scale: resize factor before cropping (> 0).
    :return: ``(height, width, 3)`` uint8 image and its camera model (``K`` resized and shifted
        like the pixels, OpenCV pixel-centre convention).
    """
    th, tw = image_hw
    h, w = image.shape[:2]
    if scale <= 0 or th <= 0 or tw <= 0:
        raise ValueError(f'scale and image_hw must be positive, got {scale}, {image_hw}')
    s = max(scale, th / h, tw / w)
    nw, nh = max(int(round(w * s)), tw), max(int(round(h * s)), th)
    resized = cv2.resize(image, (nw, nh),
                         interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    x0, y0 = (nw - tw) // 2, (nh - th) // 2
    return (np.ascontiguousarray(resized[y0:y0 + th, x0:x0 + tw]),
            camera.resized(nw, nh).cropped(x0, y0, tw, th))


class RayRegistrar(Registrar):
    """
    Registration by the ray network alone (see the module docstring).

    :param model: the trained network (moved to ``device`` and put in eval mode here).
    :param device: torch device.
    :param image_hw: network input ``(height, width)``, pixels.
    :param focal_px: focal length of the training images, pixels; the image is scaled to it
        (None: scale by ``image_scale``).
    :param image_scale: resize factor when ``focal_px`` is None.
    :param n_points: points fed to the network.
    :param voxel_size: voxel edge of the downsampling, metres (None: none).
    :param min_range: points nearer than this are dropped, metres.
    :param seed: seed of the point sampling (results are repeatable).
    :param half: float16 autocast (None: on CUDA only).
    :param translation_scale: metres of ray / regression disagreement that divide the score by e.
    :param rotation_scale_deg: degrees of disagreement that divide the score by e.
    :param floor: ``(metres, degrees)`` standard deviations added to the covariance.
    :param inlier_m: largest distance of a consistent ray from the camera centre, metres.
    :param inlier_deg: largest angle of a consistent ray from its regressed bearing, degrees.
    :param min_score: below this score the status is ``low_confidence``.
    """

    name = 'ray'

    def __init__(self, model: RayI2PNet, device: torch.device | str = 'cpu',
                 image_hw: tuple[int, int] = (160, 512), focal_px: float | None = None,
                 image_scale: float = 0.5, n_points: int = 40960,
                 voxel_size: float | None = 0.1, min_range: float = 1.0, seed: int = 0,
                 half: bool | None = None, translation_scale: float = 1.0,
                 rotation_scale_deg: float = 5.0, floor: tuple[float, float] = (0.1, 1.0),
                 inlier_m: float = 1.0, inlier_deg: float = 3.0, min_score: float = 0.3):
        if not isinstance(model, RayI2PNet):
            raise ValueError(f'model must be a RayI2PNet, got {type(model).__name__}')
        if n_points < model.point_encoder.min_points:
            raise ValueError(f'n_points {n_points} is below the {model.point_encoder.min_points} '
                             f'points the network needs')
        if focal_px is not None and focal_px <= 0:
            raise ValueError(f'focal_px must be > 0 pixels, got {focal_px}')
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.focal_px, self.image_scale = focal_px, float(image_scale)
        self.n_points, self.voxel_size = int(n_points), voxel_size
        self.min_range, self.seed = float(min_range), int(seed)
        self.half = self.device.type == 'cuda' if half is None else bool(half)
        self.scales = np.array([translation_scale, np.radians(rotation_scale_deg)])
        self.floor = np.array([floor[0]] * 3 + [np.radians(floor[1])] * 3)
        self.inlier_m, self.inlier_cos = float(inlier_m), float(np.cos(np.radians(inlier_deg)))
        self.min_score = float(min_score)

    def _inputs(self, image: ImageFrame, cloud: CloudFrame) -> tuple[dict, CameraModel]:
        camera = image.camera
        if camera.distortion_model == 'equidistant':
            raise RegistrationFailure('the ray network takes pinhole or plumb_bob images; '
                                      'rectify fisheye (equidistant) images first')
        scale = (self.image_scale if self.focal_px is None
                 else self.focal_px / float(np.sqrt(camera.K[0, 0] * camera.K[1, 1])))
        pixels, camera = fit_image(image.image, camera, self.image_hw, scale)
        points = cloud.points[range_mask(cloud.points, self.min_range)]
        if self.voxel_size is not None and len(points):
            points = points[voxel_downsample(points, self.voxel_size)]
        needed = self.model.point_encoder.min_points
        if len(points) < needed:
            raise RegistrationFailure(f'{len(points)} usable points (beyond {self.min_range} m, '
                                      f'one per voxel); the network needs at least {needed}')
        points = points[random_sample(len(points), self.n_points,
                                      np.random.default_rng(self.seed))]
        dev = self.device
        inputs = {'image': torch.from_numpy(pixels).to(dev).permute(2, 0, 1)[None].float() / 255,
                  'points': torch.from_numpy(np.ascontiguousarray(points)).to(dev)[None],
                  'K': torch.from_numpy(camera.K).float().to(dev)[None],
                  'D': (torch.from_numpy(camera.D).float().to(dev)[None]
                        if camera.is_distorted else None)}
        return inputs, camera

    def _register(self, image: ImageFrame, cloud: CloudFrame, prior: Prior | None,
                  timer: StageTimer) -> RegistrationResult:
        with timer('preprocess'):
            inputs, camera = self._inputs(image, cloud)
        with timer('network'), torch.inference_mode():
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
                out = self.model(inputs['image'], inputs['points'], inputs['K'], inputs['D'])
            out = {k: v.float() for k, v in out.items() if v.is_floating_point()}
            if self.device.type == 'cuda':
                torch.cuda.synchronize(self.device)
        T = out['T_cam_lidar'][0].double().cpu().numpy()
        if not np.all(np.isfinite(T)):
            raise RegistrationFailure('the network output is not finite')
        with timer('rays'):
            T_rays, ok = solve_pose_from_rays(out['ray_directions'], out['ray_moments'],
                                              out['patch_uv'], inputs['K'], self.image_hw,
                                              out['pose_weights'], inputs['D'])
        with timer('score'):
            inliers = self._consistency(out)
            status, reason = Status.OK, ''
            if bool(ok[0]):
                xi = se3_log(T_rays[0].cpu().numpy() @ inverse(T))
                gap = np.array([np.linalg.norm(xi[:3]), np.linalg.norm(xi[3:])])
                score = float(np.exp(-np.sum(gap / self.scales)))
                covariance = np.diag(xi ** 2 + self.floor ** 2)
            else:
                score, covariance = 0.0, np.diag((10.0 * self.floor) ** 2)
                status = Status.LOW_CONFIDENCE
                reason = 'the camera-from-rays solver found no pose in the predicted rays'
            if status == Status.OK and score < self.min_score:
                status = Status.LOW_CONFIDENCE
                reason = (f'score {score:.2f} below {self.min_score:.2f}: regressed pose and '
                          f'ray solution differ by {gap[0]:.2f} m, {np.degrees(gap[1]):.1f} deg')
        return RegistrationResult(T, covariance, score, inliers, status, reason, self.name,
                                  timer.timings)

    def _consistency(self, out: dict[str, torch.Tensor]) -> float:
        """Return the share of patch rays consistent with the regressed camera pose."""
        d, m = out['ray_directions'][0], out['ray_moments'][0]
        R, c = out['R_lidar_cam'][0], out['t_lidar_cam'][0]
        expected = out['bearings'][0] @ R.T
        distance = torch.linalg.norm(m - torch.linalg.cross(c.expand_as(d), d, dim=-1), dim=-1)
        cosine = (torch.nn.functional.normalize(d, dim=-1) * expected).sum(-1)
        return float(((distance < self.inlier_m) & (cosine > self.inlier_cos)).float().mean())


def load_ray_registrar(checkpoint, device: torch.device | str = 'cpu',
                       config: RayI2PConfig | None = None, **options) -> RayRegistrar:
    """
    Build a :class:`RayRegistrar` from a checkpoint (read with ``weights_only=True``).

    The input size, point count, voxel size and focal length come from the checkpoint's training
    data description where it has them; ``options`` override them and set the rest.

    :param checkpoint: path of a checkpoint written by ``i2p-train``.
    :param device: torch device of the network.
    :param config: the expected architecture (a mismatch is a ``ValueError`` naming the fields),
        or None to take the checkpoint's.
    """
    model, ckpt = load_model(checkpoint, config, device)
    train = (ckpt.data or {}).get('train') or {}
    size = train.get('input_size') or {}
    defaults = {}
    if size.get('image_hw'):
        defaults['image_hw'] = tuple(size['image_hw'])
    if size.get('n_points'):
        defaults['n_points'] = int(size['n_points'])
    if 'voxel_size' in size:
        defaults['voxel_size'] = size['voxel_size']
    if train.get('focal_px'):
        defaults['focal_px'] = float(train['focal_px'])
    return RayRegistrar(model, device, **{**defaults, **options})
