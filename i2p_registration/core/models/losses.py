"""
Training losses of RayI2PNet: ray regression, camera pose, attention focus and overlap.

Every loss is a function; :class:`RayI2PLoss` weighs them from the network outputs and the
ground truth ``T_cam_lidar`` (maps LiDAR points into the camera optical frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from .overlap import frustum_labels
from .ray_head import ray_targets
from .rigid import invert_transform
from ..geometry.torch_ops import geodesic_angle, project_points, transform_points


def ray_loss(d: torch.Tensor, m: torch.Tensor, d_gt: torch.Tensor, m_gt: torch.Tensor,
             moment_scale: float) -> torch.Tensor:
    """
    Compute the mean L1 error of Plücker rays ``(B, M, 3)``; moments divided by ``moment_scale``.

    :return: scalar: mean over patches of ``|d - d_gt|_1 + |m - m_gt|_1 / moment_scale``.
    """
    return ((d - d_gt).abs().sum(-1) + (m - m_gt).abs().sum(-1) / moment_scale).mean()


def pose_loss(R: torch.Tensor, t: torch.Tensor, R_gt: torch.Tensor, t_gt: torch.Tensor,
              translation_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Compute rotation and translation losses of camera poses.

    :param R: ``(B, 3, 3)`` predicted rotations; ``R_gt`` the truth.
    :param t: ``(B, 3)`` predicted translations (metres); ``t_gt`` the truth.
    :param translation_scale: metres per unit of translation loss.
    :return: mean geodesic angle (radians) and mean ``|t - t_gt|_1 / translation_scale``.
    """
    return (geodesic_angle(R, R_gt).mean(),
            (t - t_gt).abs().sum(-1).mean() / translation_scale)


def focus_loss(attention: torch.Tensor, patch_uv: torch.Tensor, superpoints: torch.Tensor,
               T_cam_lidar: torch.Tensor, K: torch.Tensor, sigma: float,
               D: torch.Tensor | None = None) -> torch.Tensor:
    """
    Compute the focus loss of a cross-attention map.

    Each patch's attention mass should fall on the superpoints that project (by the ground
    truth) within ``sigma`` pixels of the patch centre.

    :param attention: ``(B, M, S)`` cross-attention map (rows sum to 1).
    :param patch_uv: ``(M, 2)`` patch centres, pixels.
    :param superpoints: ``(B, S, 3)`` metres, LiDAR frame.
    :param T_cam_lidar: ``(B, 4, 4)`` ground truth.
    :param K: ``(B, 3, 3)``; ``D`` optional plumb_bob coefficients ``(B, k)``.
    :param sigma: radius in pixels.
    :return: scalar ``-log(mass)`` averaged over patches that have such superpoints (0 when
        none has).
    """
    uv, in_front = project_points(transform_points(T_cam_lidar, superpoints), K, D)
    dist = torch.linalg.norm(patch_uv[None, :, None, :] - uv[:, None, :, :], dim=-1)
    near = in_front[:, None, :] & (dist.nan_to_num(float('inf')) <= sigma)
    has = near.any(-1)
    if not bool(has.any()):
        return attention.sum() * 0.0
    mass = (attention * near).sum(-1)
    return -torch.log(mass[has].clamp_min(1e-6)).mean()


def overlap_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """
    Compute the class-balanced binary cross-entropy of overlap logits ``(B, S)``.

    :param labels: ``(B, S)`` bool, True inside the camera frustum.
    :return: scalar; positives and negatives weigh half each (when both are present).
    """
    y = labels.to(logits.dtype)
    pos = y.sum().clamp_min(1.0)
    neg = (1.0 - y).sum().clamp_min(1.0)
    weight = torch.where(labels, 0.5 * y.numel() / pos, 0.5 * y.numel() / neg)
    return F.binary_cross_entropy_with_logits(logits, y, weight=weight)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms in the total."""

    ray: float = 1.0
    rotation: float = 1.0
    translation: float = 1.0
    focus: float = 0.1
    overlap: float = 0.5


class RayI2PLoss(nn.Module):
    """
    The weighted training loss of :class:`~.ray_net.RayI2PNet` outputs.

    :param sigma: focus radius, pixels.
    :param moment_scale: metres per unit of the ray moment loss.
    :param translation_scale: metres per unit of the translation loss.
    :param weights: term weights.
    """

    def __init__(self, sigma: float, moment_scale: float, translation_scale: float,
                 weights: LossWeights = LossWeights()):
        super().__init__()
        self.sigma, self.moment_scale = sigma, moment_scale
        self.translation_scale, self.weights = translation_scale, weights

    def forward(self, outputs: dict[str, torch.Tensor], T_cam_lidar: torch.Tensor,
                K: torch.Tensor, image_hw: tuple[int, int],
                D: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """
        Compute the loss terms.

        :param outputs: the network outputs (with ``attention`` for the focus term).
        :param T_cam_lidar: ``(B, 4, 4)`` ground truth.
        :param K: ``(B, 3, 3)``; ``D`` optional plumb_bob coefficients ``(B, k)``.
        :param image_hw: ``(height, width)`` of the network input, pixels.
        :return: dict of scalar terms ``ray``, ``rotation``, ``translation``, ``focus``,
            ``overlap`` and their weighted sum ``total``.
        """
        d = outputs['ray_directions']
        T_gt = T_cam_lidar.to(d)
        K = K.to(d)
        d_gt, m_gt = ray_targets(T_gt, K, outputs['patch_uv'], D)
        T_lidar_cam = invert_transform(T_gt)
        terms = {'ray': ray_loss(d, outputs['ray_moments'], d_gt, m_gt, self.moment_scale)}
        terms['rotation'], terms['translation'] = pose_loss(
            outputs['R_lidar_cam'], outputs['t_lidar_cam'], T_lidar_cam[:, :3, :3],
            T_lidar_cam[:, :3, 3], self.translation_scale)
        labels = frustum_labels(outputs['superpoints'], T_gt, K, image_hw, D)
        terms['overlap'] = overlap_loss(outputs['overlap_logits'], labels)
        if 'attention' in outputs:
            terms['focus'] = focus_loss(outputs['attention'], outputs['patch_uv'],
                                        outputs['superpoints'], T_gt, K, self.sigma, D)
        else:
            terms['focus'] = torch.zeros((), dtype=d.dtype, device=d.device)
        w = self.weights
        terms['total'] = (w.ray * terms['ray'] + w.rotation * terms['rotation']
                          + w.translation * terms['translation'] + w.focus * terms['focus']
                          + w.overlap * terms['overlap'])
        return terms
