"""
``i2p-eval``: run a registration method over pairs and write errors and latencies as JSON.

Sources of pairs:

- ``--real DIR``: the real samples of ``../shared/data/real`` (each folder's ``calib.json``, image
  and scan); every sample is registered from ``--trials`` seeded perturbations of its reference
  ``T_cam_lidar`` (uniform per axis within ``--max-rotation-deg`` / ``--max-translation``).
- ``--kitti ROOT``: a KITTI-odometry layout folder (KITTI itself or a written synthetic world),
  pairs drawn by a protocol of ``i2p_registration.data.protocols`` (``nearby``,
  ``same_frame``, ``random_frame``); the protocol's unperturbed transform is the prior.

The JSON holds per-pair RTE, RRE (protocol and geodesic), status and timings, their summary
(medians, registration recall, share converged), per-stage latency percentiles, the device and
the seed. ``--plot`` also writes error histograms as PNG next to the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import cv2
from i2p_registration.core.geometry import inverse, make_transform, so3_exp, transform_points
from i2p_registration.core.metrics import registration_recall, rre_geodesic, rre_protocol, rte
from i2p_registration.core.registration.base import Prior, Registrar, Status
from i2p_registration.core.registration.factory import get_registrar
from i2p_registration.core.registration.search import resolve_device
from i2p_registration.core.sensors import CameraModel, CloudFrame, ImageFrame
import numpy as np

REAL_SAMPLES = ('pjlab_scene3', 'pjlab_manual', 'kitti_000008')


def read_pcd(path: str) -> dict[str, np.ndarray]:
    """Read a PCD file (ascii, binary or binary_compressed) into named per-point arrays."""
    import open3d as o3d
    cloud = o3d.t.io.read_point_cloud(path)
    return {name: cloud.point[name].numpy() for name in cloud.point}


def load_real_sample(folder: str) -> tuple[ImageFrame, CloudFrame, np.ndarray]:
    """
    Load one real sample: image (RGB), scan and reference ``T_cam_lidar``.

    :param folder: a sample folder holding ``calib.json`` (see the samples' README).
    :return: ``(image, cloud, T_cam_lidar)``; the camera keeps the plumb_bob coefficients.
    """
    with open(os.path.join(folder, 'calib.json')) as f:
        calib = json.load(f)
    bgr = cv2.imread(os.path.join(folder, calib['image']), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'cannot read the image of {folder}')
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    D = np.asarray(calib.get('dist_plumb_bob', []), dtype=np.float64)
    model = 'plumb_bob' if np.any(D != 0) else 'none'
    camera = CameraModel(np.asarray(calib['K']), rgb.shape[1], rgb.shape[0], model,
                         D if model == 'plumb_bob' else np.zeros(0))
    path = os.path.join(folder, calib['cloud'])
    ring = intensity = None
    if path.endswith('.bin'):
        data = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
        points, intensity = data[:, :3], data[:, 3]
    else:
        fields = read_pcd(path)
        points = fields['positions'].astype(np.float32)
        if 'intensity' in fields:
            intensity = fields['intensity'][:, 0].astype(np.float32)
        if 'ring' in fields:
            ring = fields['ring'][:, 0].astype(np.uint16)
    finite = np.all(np.isfinite(points), axis=1)
    cloud = CloudFrame(points[finite], 0, 'lidar', None if intensity is None
                       else intensity[finite], None if ring is None else ring[finite])
    return ImageFrame(rgb, 0, 'camera', camera), cloud, np.asarray(calib['T_cam_lidar'], float)


def perturbation(rng: np.random.Generator, max_rotation_deg: float,
                 max_translation: float) -> np.ndarray:
    """Return a LiDAR-frame motion, each Euler angle and translation uniform in its range."""
    angles = np.radians(rng.uniform(-max_rotation_deg, max_rotation_deg, 3))
    return make_transform(so3_exp(angles), rng.uniform(-max_translation, max_translation, 3))


def _record(name: str, result, T_gt: np.ndarray, T_start: np.ndarray) -> dict:
    row = {'pair': name, 'status': result.status.value, 'reason': result.reason,
           'score': result.score, 'timings_ms': result.timings,
           'start_rte_m': float(rte(T_start, T_gt)),
           'start_rre_geodesic_deg': float(rre_geodesic(T_start, T_gt))}
    if result.status != Status.FAILED:
        row.update(rte_m=float(rte(result.T_cam_lidar, T_gt)),
                   rre_protocol_deg=float(rre_protocol(result.T_cam_lidar, T_gt)),
                   rre_geodesic_deg=float(rre_geodesic(result.T_cam_lidar, T_gt)))
    else:
        row.update(rte_m=float('nan'), rre_protocol_deg=float('nan'),
                   rre_geodesic_deg=float('nan'))
    return row


def run_real(registrar: Registrar, root: str, samples, trials: int, seed: int,
             max_rotation_deg: float, max_translation: float) -> list[dict]:
    """Register every real sample from ``trials`` seeded perturbations; return per-pair rows."""
    rows = []
    for s, name in enumerate(samples):
        image, cloud, T_gt = load_real_sample(os.path.join(root, name))
        rng = np.random.default_rng([seed, s])
        for k in range(trials):
            T_start = T_gt @ perturbation(rng, max_rotation_deg, max_translation)
            prior = Prior(T_start, max_translation, np.radians(max_rotation_deg))
            rows.append(_record(f'{name}/{k}', registrar.register(image, cloud, prior), T_gt,
                                T_start))
    return rows


def run_protocol(registrar: Registrar, root: str, sequence: str, protocol: str, count: int,
                 seed: int) -> list[dict]:
    """
    Register ``count`` pairs of a KITTI-layout folder drawn by ``protocol``.

    A protocol moves the scan's points by its perturbation ``P`` and keeps the unperturbed
    transform as the prior. Methods that read the scan as seen from its sensor
    (``needs_sensor_frame``: scan lines, ranges) get the same problem in the form a vehicle
    poses it instead: the scan in its sensor frame and the prior moved by ``P``; their estimate
    is mapped back into the protocol's frame, so every method is scored on the same ground
    truth and errors.
    """
    from i2p_registration.data.kitti import KittiOdometry
    from i2p_registration.data.protocols import PairDataset
    dataset = PairDataset(KittiOdometry(root, sequence), protocol, seed)
    if protocol == 'same_frame':
        # The correction undoes P (+-10 m per axis, any yaw): its translation, rotated by the
        # yaw, reaches 10 sqrt(2) m on each axis.
        ranges = (np.array([14.15, 14.15, 0.1]), np.array([0.02, 0.02, np.pi]))
    else:
        ranges = (np.full(3, 0.5), np.full(3, np.radians(5.0)))
    rows = []
    for k in range(min(count, len(dataset))):
        sample = dataset[k]
        image = ImageFrame(sample.image, 0, 'camera', sample.camera)
        T_start = sample.T_init
        if registrar.needs_sensor_frame:
            P = sample.perturbation
            sensor_points = transform_points(inverse(P), sample.points).astype(np.float32)
            cloud = CloudFrame(sensor_points, 0, 'lidar', sample.intensity, sample.ring)
            result = registrar.register(image, cloud, Prior(T_start @ P, *ranges))
            if result.status != Status.FAILED:
                result.T_cam_lidar = result.T_cam_lidar @ inverse(P)
        else:
            cloud = CloudFrame(sample.points, 0, 'lidar', sample.intensity, sample.ring)
            result = registrar.register(image, cloud, Prior(T_start, *ranges))
        rows.append(_record(f'{protocol}/{k}', result, sample.T_cam_lidar, T_start))
    return rows


def summarize(rows: list[dict]) -> dict:
    """Return medians, recall, share of converged (ok) pairs and latency percentiles."""
    rte_m = np.array([r['rte_m'] for r in rows])
    rre_p = np.array([r['rre_protocol_deg'] for r in rows])
    rre_g = np.array([r['rre_geodesic_deg'] for r in rows])
    failed = np.isnan(rte_m)
    summary = {'pairs': len(rows), 'failed': int(failed.sum()),
               'ok': int(sum(r['status'] == 'ok' for r in rows)),
               'recall': registration_recall(np.where(failed, np.inf, rte_m),
                                             np.where(failed, np.inf, rre_p)) if rows else None}
    for name, values in (('rte_m', rte_m), ('rre_protocol_deg', rre_p),
                         ('rre_geodesic_deg', rre_g)):
        # Failed pairs count as infinitely wrong, so a median over all pairs stays honest.
        summary[f'{name}_median'] = float(np.median(np.where(failed, np.inf, values)))
    stages = sorted({k for r in rows for k in r['timings_ms']})
    summary['latency_ms'] = {
        stage: {f'p{q}': float(np.percentile([r['timings_ms'].get(stage, 0.0) for r in rows], q))
                for q in (50, 90, 99)} for stage in stages}
    return summary


def plot(rows: list[dict], path: str, bins: int = 30) -> None:
    """Write histograms of RTE and geodesic RRE side by side to ``path`` (PNG, drawn by OpenCV)."""
    panels = []
    for key, label in (('rte_m', 'RTE [m]'), ('rre_geodesic_deg', 'RRE geodesic [deg]')):
        values = np.array([r[key] for r in rows], dtype=np.float64)
        values = values[np.isfinite(values)]
        panel = np.full((300, 400, 3), 255, np.uint8)
        if values.size:
            counts, edges = np.histogram(values, bins=bins)
            width = 360 / bins
            for i, c in enumerate(counts):
                top = 260 - int(220 * c / max(counts.max(), 1))
                cv2.rectangle(panel, (20 + int(i * width), top),
                              (20 + int((i + 1) * width) - 1, 260), (180, 100, 30), -1)
            cv2.putText(panel, f'{edges[0]:.3g}', (10, 285), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (0, 0, 0), 1)
            cv2.putText(panel, f'{edges[-1]:.3g}', (340, 285), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (0, 0, 0), 1)
        cv2.putText(panel, f'{label}, {values.size} pairs', (20, 25), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, (0, 0, 0), 1)
        panels.append(panel)
    cv2.imwrite(path, np.concatenate(panels, axis=1))


def main(argv=None) -> int:
    """Parse arguments, run the evaluation, write the JSON (and PNG); return the exit code."""
    parser = argparse.ArgumentParser(prog='i2p-eval', description=__doc__.split('\n\n')[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--real', help='folder of real samples (../shared/data/real)')
    source.add_argument('--kitti', help='KITTI-odometry layout folder')
    parser.add_argument('--samples', default=','.join(REAL_SAMPLES),
                        help='comma-separated real sample folders')
    parser.add_argument('--sequence', default='00')
    parser.add_argument('--protocol', default='nearby',
                        choices=('nearby', 'same_frame', 'random_frame'))
    parser.add_argument('--count', type=int, default=200, help='protocol pairs')
    parser.add_argument('--trials', type=int, default=20, help='perturbations per real sample')
    parser.add_argument('--max-rotation-deg', type=float, default=2.0)
    parser.add_argument('--max-translation', type=float, default=0.2)
    parser.add_argument('--method', default='edge', help='edge, ray or ray+edge')
    parser.add_argument('--checkpoint', help='network checkpoint of --method ray / ray+edge')
    parser.add_argument('--search', default='none', choices=('none', 'planar', '6dof'))
    parser.add_argument('--kernel', default='huber', choices=('none', 'huber', 'cauchy'))
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--output', default='i2p_eval.json')
    parser.add_argument('--plot', action='store_true', help='also write <output>.png')
    args = parser.parse_args(argv)
    device = str(resolve_device(args.device))
    search = None if args.search == 'none' else args.search
    if args.kitti and args.protocol == 'same_frame' and search is None:
        search = 'planar'
    registrar = get_registrar(args.method, refine=True, device=device, search=search,
                              kernel=args.kernel, checkpoint=args.checkpoint)
    if args.real:
        rows = run_real(registrar, args.real, args.samples.split(','), args.trials, args.seed,
                        args.max_rotation_deg, args.max_translation)
    else:
        rows = run_protocol(registrar, args.kitti, args.sequence, args.protocol, args.count,
                            args.seed)
    report = {'method': registrar.name, 'checkpoint': args.checkpoint, 'search': search,
              'kernel': args.kernel, 'device': device, 'seed': args.seed,
              'source': args.real or args.kitti,
              'protocol': 'real' if args.real else args.protocol,
              'summary': summarize(rows), 'pairs': rows}
    with open(args.output, 'w') as f:
        json.dump(report, f, indent=2, default=float)
        f.write('\n')
    if args.plot:
        plot(rows, os.path.splitext(args.output)[0] + '.png')
    s = report['summary']
    print(f"{s['pairs']} pairs, {s['failed']} failed: median RTE {s['rte_m_median']:.3f} m, "
          f"RRE {s['rre_geodesic_deg_median']:.2f} deg (geodesic), RR {s['recall']:.2f}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
