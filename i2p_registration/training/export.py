r"""
``i2p-export``: export a trained ray network to TorchScript, with an equivalence check.

Example::

    i2p-export --checkpoint out/train/<run>/best.pt --output models/ray_small.ts

The network is traced (``torch.jit.trace``) for one input size (the training size by default:
160 x 512 pixels, 40960 points, batch 1, pinhole camera): the farthest-point sampling loops are
unrolled for that point count. The traced module maps ``(image (1, 3, H, W) float [0, 1],
points (1, N, 3) metres, K (1, 3, 3) pixels)`` to the tuple of :data:`OUTPUTS`. It is then run
on fresh random inputs of the same size next to the eager network; every output must agree
within ``--tolerance`` (default 1e-4, absolute) or the export fails. The file carries the config,
the git revision and the input size as extra files (``config.json``, ``meta.json``), readable
with ``torch.jit.load(path, _extra_files=...)``; run the module under ``torch.no_grad()``.

TorchScript rather than ONNX (not installed here) or ``torch.export``: a traced module loads in
libtorch (C++) without Python, and tracing unrolls the sampling loops in seconds. torch 2.13
marks ``torch.jit`` deprecated; ``torch.export`` is its successor.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import warnings

import torch
from torch import nn

from ..core.models.checkpoint import load_model
from ..core.models.ray_net import RayI2PNet

OUTPUTS = ('T_cam_lidar', 'R_lidar_cam', 't_lidar_cam', 'ray_directions', 'ray_moments',
           'overlap_logits', 'pose_weights')


class ExportableRayNet(nn.Module):
    """
    The network with tensor-tuple outputs (:data:`OUTPUTS`), as tracing needs.

    :param model: the network (eval mode).
    """

    def __init__(self, model: RayI2PNet):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, points: torch.Tensor,
                K: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Map ``(1, 3, H, W)``, ``(1, N, 3)``, ``(1, 3, 3)`` to the :data:`OUTPUTS` tensors."""
        out = self.model(image, points, K)
        return tuple(out[k] for k in OUTPUTS)


def example_inputs(image_hw: tuple[int, int], n_points: int, seed: int = 0,
                   device: torch.device | str = 'cpu') -> tuple[torch.Tensor, ...]:
    """
    Return plausible random inputs: an image, points of a street-sized scene and a pinhole K.

    :return: image ``(1, 3, H, W)`` in [0, 1], points ``(1, N, 3)`` metres within +-40 m
        horizontally and -2 .. 8 m vertically, ``K`` ``(1, 3, 3)`` (focal = width * 0.7).
    """
    g = torch.Generator().manual_seed(seed)
    H, W = image_hw
    image = torch.rand(1, 3, H, W, generator=g)
    points = torch.rand(1, n_points, 3, generator=g) * torch.tensor([80.0, 80.0, 10.0])
    points -= torch.tensor([40.0, 40.0, 2.0])
    f = 0.7 * W
    K = torch.tensor([[[f, 0.0, (W - 1) / 2], [0.0, f, (H - 1) / 2], [0.0, 0.0, 1.0]]])
    return image.to(device), points.to(device), K.to(device)


def max_differences(reference: nn.Module, exported, inputs) -> dict[str, float]:
    """Return the largest absolute difference of every output between two modules."""
    # no_grad, not inference_mode: a TorchScript module run both with and without autograd
    # must not see inference tensors.
    with torch.no_grad():
        a, b = reference(*inputs), exported(*inputs)
    return {name: float((x.double() - y.double()).abs().max()) for name, x, y in
            zip(OUTPUTS, a, b)}


def export_torchscript(model: RayI2PNet, path, image_hw: tuple[int, int] = (160, 512),
                       n_points: int = 40960, tolerance: float = 1e-4, checks: int = 2,
                       meta: dict | None = None) -> dict:
    """
    Trace ``model`` at one input size, save it, reload it and check it against the eager model.

    :param model: the network (on the CPU or a CUDA device).
    :param path: output file (``.ts`` by convention).
    :param image_hw: input ``(height, width)``, pixels.
    :param n_points: input point count.
    :param tolerance: largest allowed absolute difference of any output.
    :param checks: random input sets compared (not the tracing inputs).
    :param meta: plain values stored in ``meta.json`` beside the input size.
    :return: ``{'path', 'max_difference', 'differences'}``.
    :raises ValueError: an output differs by more than ``tolerance``.
    """
    device = next(model.parameters()).device
    wrapper = ExportableRayNet(model.eval())
    info = {'image_hw': list(image_hw), 'n_points': int(n_points), 'outputs': list(OUTPUTS),
            **(meta or {})}
    extra = {'config.json': json.dumps(model.config.to_dict()), 'meta.json': json.dumps(info)}
    path = Path(path)
    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks become constants of the trace (expected for a fixed input size), and
        # torch 2.13 marks torch.jit deprecated in favour of torch.export (see the docstring).
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        traced = torch.jit.trace(wrapper, example_inputs(image_hw, n_points, 0, device),
                                 check_trace=False)
        torch.jit.save(traced, str(path), _extra_files=extra)
        loaded = torch.jit.load(str(path), map_location=device)
    worst: dict[str, float] = {}
    for k in range(checks):
        diff = max_differences(wrapper, loaded, example_inputs(image_hw, n_points, k + 1, device))
        worst = {n: max(v, worst.get(n, 0.0)) for n, v in diff.items()}
    largest = max(worst.values())
    if not largest <= tolerance:
        raise ValueError(f'the exported network differs from the eager one by {largest:.3g} '
                         f'(> {tolerance:g}): {worst}')
    return {'path': str(path), 'max_difference': largest, 'differences': worst}


def main(argv: list[str] | None = None) -> int:
    """Export a checkpoint; returns the process exit status (1: equivalence check failed)."""
    p = argparse.ArgumentParser(prog='i2p-export', description=__doc__.strip().split('\n')[0])
    p.add_argument('--checkpoint', required=True, help='i2p-train checkpoint')
    p.add_argument('--output', required=True, help='TorchScript file to write')
    p.add_argument('--image-hw', type=int, nargs=2, help='default: the training input size')
    p.add_argument('--points', type=int, help='default: the training point count')
    p.add_argument('--tolerance', type=float, default=1e-4)
    p.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    args = p.parse_args(argv)
    try:
        model, ckpt = load_model(args.checkpoint, device=args.device)
    except (ValueError, OSError) as err:
        print(f'i2p-export: error: {err}', file=sys.stderr)
        return 2
    size = ((ckpt.data or {}).get('train') or {}).get('input_size') or {}
    image_hw = tuple(args.image_hw or size.get('image_hw') or (160, 512))
    n_points = int(args.points or size.get('n_points') or 40960)
    try:
        report = export_torchscript(model, args.output, image_hw, n_points, args.tolerance,
                                    meta={'git_revision': ckpt.git_revision,
                                          'checkpoint': str(args.checkpoint)})
    except ValueError as err:
        print(f'i2p-export: error: {err}', file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
