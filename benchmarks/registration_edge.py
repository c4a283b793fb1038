"""
Accuracy and latency of the classical ``edge`` registration (issue 4 targets).

Figures:

- refinement on the real samples (pjlab_scene3, pjlab_manual, kitti_000008) from seeded
  +-2 deg / +-0.2 m perturbations: median geodesic rotation and translation error per sample,
  a failed registration counting as infinitely wrong (so the median is honest), and the share
  of trials that return a result;
- latency per stage of one registration at 160x512 pixels and 40960 points (pjlab_scene3
  resized, its scan subsampled), median over repetitions;
- the synthetic-world targets: ``nearby`` refinement (+-5 deg / +-0.5 m: median RRE, RTE,
  share converged) and ``same_frame`` global search (registration recall, latency); on
  ``--synthetic ROOT`` (a KITTI-layout world) or, by default, on a test-split world that the
  script writes to a temporary folder with ``i2p-synth`` (30 frames with ``--quick``, 200
  otherwise). The method gets each scan in its sensor frame with the protocol's perturbation
  moved into the prior (``evaluate.run_protocol``), and is scored in the protocol's frame.

The method is the factory's default ``edge`` (oriented Canny edges for the sides and the tops
of objects, all Canny edges for the markings on the ground; LiDAR depth edges plus steep
intensity edges, intensity edges of any slant as markings; a 6-DoF hypothesis search within the
prior's ranges, ranked against a local chance level; robust LM with Huber then Cauchy and a
pose-prior term, started from the prior and from the three best hypotheses); the
``depth_only`` figures score the same pairs without intensity edges (so without markings too).
The ``same_frame`` figures use the planar search instead (a grid over the whole ground plane of
the prior's ranges, settled by batched Gauss-Newton steps on the edge points and the markings;
the LM starts from its best 128).

Run: ``python benchmarks/registration_edge.py [--quick] [--synthetic ROOT]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import common
from i2p_registration.core.registration.base import Prior
from i2p_registration.core.registration.factory import get_registrar
from i2p_registration.core.sensors import ImageFrame
from i2p_registration.training import evaluate
import numpy as np

REAL_DIR = os.path.abspath(os.path.join(common.REPO_ROOT, '..', 'shared', 'data', 'real'))
SEED = 0


def _median_inf(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.median(np.where(np.isnan(values), np.inf, values)))


def real_figures(trials: int) -> tuple[list[dict], dict]:
    registrar = get_registrar('edge', refine=True, device='cpu')
    figures, config = [], {}
    for name in evaluate.REAL_SAMPLES:
        rows = evaluate.run_real(registrar, REAL_DIR, [name], trials, SEED, 2.0, 0.2)
        rot = _median_inf([r['rre_geodesic_deg'] for r in rows])
        trans = _median_inf([r['rte_m'] for r in rows])
        returned = float(np.mean([r['status'] != 'failed' for r in rows]))
        start_rot = float(np.median([r['start_rre_geodesic_deg'] for r in rows]))
        start_trans = float(np.median([r['start_rte_m'] for r in rows]))
        baseline = (f'start median {start_rot:.2f} deg / {start_trans:.3f} m; '
                    f'{trials} trials, failed counted as inf')
        figures += [
            common.figure(f'real_{name}_rre_geodesic_median', rot, 'deg', 'lower', 0.5,
                          baseline),
            common.figure(f'real_{name}_rte_median', trans, 'm', 'lower', 0.10, baseline),
            common.figure(f'real_{name}_returned_share', returned, 'fraction', 'higher', None,
                          'share of trials not failed'),
        ]
        config[name] = {'trials': trials, 'ok': int(sum(r['status'] == 'ok' for r in rows))}
    return figures, config


def latency_figures(repeat: int) -> list[dict]:
    image, cloud, T_gt = evaluate.load_real_sample(os.path.join(REAL_DIR, 'pjlab_scene3'))
    import cv2
    camera = image.camera.resized(512, 160)
    small = ImageFrame(cv2.resize(image.image, (512, 160), interpolation=cv2.INTER_AREA),
                       image.stamp_ns, image.frame_id, camera)
    rng = np.random.default_rng(SEED)
    scan = cloud.select(np.sort(rng.choice(len(cloud), 40960, replace=False)))
    prior = Prior(T_gt, 0.2, np.radians(2.0))
    figures = []
    for label, search in (('refine_only', None), ('default', '6dof')):
        registrar = get_registrar('edge', refine=True, device='cpu', search=search)
        runs = [registrar.register(small, scan, prior) for _ in range(repeat + 2)][2:]
        stages = sorted({k for r in runs for k in r.timings})
        for stage in stages:
            value = float(np.median([r.timings.get(stage, 0.0) for r in runs]))
            figures.append(common.figure(f'latency_{label}_{stage}_ms', value, 'ms', 'lower',
                                         None, f'160x512, 40960 points, median of {repeat}'))
    return figures


def _write_world(folder: str, frames: int) -> str:
    """Write the first test-split world (KITTI layout) with ``i2p-synth``; return its root."""
    synth = os.path.join(os.path.dirname(sys.executable), 'i2p-synth')
    subprocess.run([synth, '--split', 'test', '--format', 'kitti', '--out', folder,
                    '--frames', str(frames), '--quiet', '--preview', '0'], check=True)
    return os.path.join(folder, 'kitti')


def _depth_only_variant(root: str, count: int, nearby: list[dict]) -> list[dict]:
    """Score the same ``nearby`` pairs with depth edges only (no LiDAR intensity edges)."""
    registrar = get_registrar('edge', refine=True, device='cpu', intensity_threshold=0.0)
    rows = evaluate.run_protocol(registrar, root, '00', 'nearby', count, SEED)
    base = (f'{len(rows)} pairs, registration.intensity_threshold 0 (default 0.3: '
            f'%s)')
    return [
        common.figure('synthetic_nearby_depth_only_rre_geodesic_median',
                      _median_inf([r['rre_geodesic_deg'] for r in rows]), 'deg', 'lower', None,
                      base % '%.3f deg' % _median_inf([r['rre_geodesic_deg'] for r in nearby])),
        common.figure('synthetic_nearby_depth_only_rte_median',
                      _median_inf([r['rte_m'] for r in rows]), 'm', 'lower', None,
                      base % '%.3f m' % _median_inf([r['rte_m'] for r in nearby])),
        common.figure('synthetic_nearby_depth_only_converged_share', float(np.mean(
            [r['status'] == 'ok' and r['rre_geodesic_deg'] < 1.0 and r['rte_m'] < 0.25
             for r in rows])), 'fraction', 'higher', None, base % 'see the figure above'),
    ]


def synthetic_figures(root: str, count: int, same_count: int) -> list[dict]:
    registrar = get_registrar('edge', refine=True, device='cpu')
    nearby = evaluate.run_protocol(registrar, root, '00', 'nearby', count, SEED)
    search = get_registrar('edge', refine=True, device='cpu', search='planar')
    same = evaluate.run_protocol(search, root, '00', 'same_frame', same_count, SEED)
    s = evaluate.summarize(same)
    base = f'{len(nearby)} pairs, seed {SEED}, +-5 deg / +-0.5 m'
    return [
        common.figure('synthetic_nearby_rre_geodesic_median',
                      _median_inf([r['rre_geodesic_deg'] for r in nearby]), 'deg', 'lower', 0.3,
                      base + '; start median %.2f deg' % np.median(
                          [r['start_rre_geodesic_deg'] for r in nearby])),
        common.figure('synthetic_nearby_rte_median', _median_inf([r['rte_m'] for r in nearby]),
                      'm', 'lower', 0.05, base + '; start median %.3f m' % np.median(
                          [r['start_rte_m'] for r in nearby])),
        common.figure('synthetic_nearby_converged_share', float(np.mean(
            [r['status'] == 'ok' and r['rre_geodesic_deg'] < 1.0 and r['rte_m'] < 0.25
             for r in nearby])), 'fraction', 'higher', 0.95,
            base + '; converged: status ok and within 1 deg / 0.25 m of the truth'),
        common.figure('synthetic_nearby_ok_share',
                      float(np.mean([r['status'] == 'ok' for r in nearby])), 'fraction',
                      'higher', None, base + '; status ok, right or wrong'),
        *_depth_only_variant(root, count, nearby),
        common.figure('synthetic_same_frame_recall', s['recall'], 'fraction', 'higher', 0.6,
                      f'{len(same)} pairs, seed {SEED}, planar search; median RTE '
                      f"{s['rte_m_median']:.2f} m, RRE {s['rre_protocol_deg_median']:.1f} deg"),
        common.figure('synthetic_same_frame_rte_median', s['rte_m_median'], 'm', 'lower', None,
                      f'{len(same)} pairs'),
        common.figure('synthetic_same_frame_rre_protocol_median', s['rre_protocol_deg_median'],
                      'deg', 'lower', None, f'{len(same)} pairs'),
        common.figure('synthetic_same_frame_latency_p50', s['latency_ms']['total']['p50'], 'ms',
                      'lower', None, f'{len(same)} pairs, this CPU; search p50 '
                      f"{s['latency_ms']['search']['p50']:.0f} ms, refine p50 "
                      f"{s['latency_ms']['refine']['p50']:.0f} ms"),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='fewer trials and repetitions')
    parser.add_argument('--synthetic', help='synthetic world folder in KITTI layout')
    args = parser.parse_args(argv)
    trials, repeat, count, same_count, frames = ((5, 3, 10, 10, 30) if args.quick
                                                 else (20, 10, 200, 200, 200))
    figures, real_config = ([], {}) if not os.path.isdir(REAL_DIR) else real_figures(trials)
    figures += latency_figures(repeat) if os.path.isdir(REAL_DIR) else []
    with tempfile.TemporaryDirectory(prefix='i2p_bench_world_') as folder:
        root = args.synthetic or _write_world(folder, frames)
        figures += synthetic_figures(root, count, same_count)
    config = {'seed': SEED, 'quick': args.quick, 'real_trials': trials,
              'real_perturbation': '+-2 deg per Euler angle, +-0.2 m per axis',
              'latency_repeat': repeat, 'real': real_config,
              'synthetic': args.synthetic or f'test split world 0, {frames} frames (i2p-synth)',
              'synthetic_pairs': {'nearby': count, 'same_frame': same_count},
              'method': 'edge (canny with gradient within 30 deg of the rows or columns, 6-DoF '
                        'search in the prior ranges on the sides against a local chance level '
                        '(31 px), refined from the prior and the 3 best hypotheses: huber 2 px '
                        'over 3 pyramid levels then cauchy 2 px on the finest, up to 60 steps '
                        'each, sides, tops (weight 0.5 at 0.35 deg line spacing) and markings '
                        '(intensity edges of any slant against all canny edges, weight 1), '
                        'prior weight 45 px^2, depth edges and (refinement only) steep '
                        'intensity edges at 0.3; the depth_only variant has no intensity '
                        'edges; same_frame: planar search over the prior ranges, 128 starts)'}
    common.print_figures(figures, common.write_results('registration_edge', config, figures), 55)
    return 0


if __name__ == '__main__':
    sys.exit(main())
