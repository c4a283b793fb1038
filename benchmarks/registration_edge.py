"""
Accuracy and latency of the classical ``edge`` registration (issue 4 targets).

Figures:

- refinement on the real samples (pjlab_scene3, pjlab_manual, kitti_000008) from seeded
  +-2 deg / +-0.2 m perturbations: median geodesic rotation and translation error per sample,
  a failed registration counting as infinitely wrong (so the median is honest), and the share
  of trials that return a result;
- latency per stage of one registration at 160x512 pixels and 40960 points (pjlab_scene3
  resized, its scan subsampled), median over repetitions;
- the synthetic-world targets (``nearby`` refinement, ``same_frame`` global search) need written
  synthetic worlds in KITTI layout: pass ``--synthetic ROOT`` (run ``i2p-eval --kitti`` for
  details); without it they are recorded as not measured (value NaN, ``meets`` false).

Run: ``python benchmarks/registration_edge.py [--quick] [--synthetic ROOT]``.
"""

from __future__ import annotations

import argparse
import os
import sys

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
    registrar = get_registrar('edge', refine=True, device='cpu', search=None)
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
    for label, search in (('refine', None), ('search6dof_refine', '6dof')):
        registrar = get_registrar('edge', refine=True, device='cpu', search=search)
        runs = [registrar.register(small, scan, prior) for _ in range(repeat + 2)][2:]
        stages = sorted({k for r in runs for k in r.timings})
        for stage in stages:
            value = float(np.median([r.timings.get(stage, 0.0) for r in runs]))
            figures.append(common.figure(f'latency_{label}_{stage}_ms', value, 'ms', 'lower',
                                         None, f'160x512, 40960 points, median of {repeat}'))
    return figures


def synthetic_figures(root: str | None, count: int) -> list[dict]:
    if root is None:
        nan = float('nan')
        reason = 'not measured: no synthetic world folder given (--synthetic)'
        return [common.figure('synthetic_nearby_rre_geodesic_median', nan, 'deg', 'lower', 0.3,
                              reason),
                common.figure('synthetic_nearby_rte_median', nan, 'm', 'lower', 0.05, reason),
                common.figure('synthetic_nearby_converged_share', nan, 'fraction', 'higher',
                              0.95, reason),
                common.figure('synthetic_same_frame_recall', nan, 'fraction', 'higher', 0.6,
                              reason)]
    registrar = get_registrar('edge', refine=True, device='cpu', search=None)
    nearby = evaluate.run_protocol(registrar, root, '00', 'nearby', count, SEED)
    search = get_registrar('edge', refine=True, device='cpu', search='planar')
    same = evaluate.run_protocol(search, root, '00', 'same_frame', count, SEED)
    s = evaluate.summarize(same)
    base = f'{count} pairs, seed {SEED}'
    return [
        common.figure('synthetic_nearby_rre_geodesic_median',
                      _median_inf([r['rre_geodesic_deg'] for r in nearby]), 'deg', 'lower', 0.3,
                      base),
        common.figure('synthetic_nearby_rte_median', _median_inf([r['rte_m'] for r in nearby]),
                      'm', 'lower', 0.05, base),
        common.figure('synthetic_nearby_converged_share',
                      float(np.mean([r['status'] == 'ok' for r in nearby])), 'fraction',
                      'higher', 0.95, base),
        common.figure('synthetic_same_frame_recall', s['recall'], 'fraction', 'higher', 0.6,
                      f"{base}; median RTE {s['rte_m_median']:.2f} m, RRE "
                      f"{s['rre_protocol_deg_median']:.1f} deg"),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='fewer trials and repetitions')
    parser.add_argument('--synthetic', help='synthetic world folder in KITTI layout')
    args = parser.parse_args(argv)
    trials, repeat, count = (5, 3, 20) if args.quick else (20, 10, 200)
    figures, real_config = ([], {}) if not os.path.isdir(REAL_DIR) else real_figures(trials)
    figures += latency_figures(repeat) if os.path.isdir(REAL_DIR) else []
    figures += synthetic_figures(args.synthetic, count)
    config = {'seed': SEED, 'quick': args.quick, 'real_trials': trials,
              'real_perturbation': '+-2 deg per Euler angle, +-0.2 m per axis',
              'latency_repeat': repeat, 'real': real_config, 'synthetic': args.synthetic,
              'method': 'edge (canny, huber 2 px, 3 pyramid levels, no prior term)'}
    path = common.write_results('registration_edge', config, figures)
    for f in figures:
        print(f"{f['name']:55s} {f['value']:10.3f} {f['unit']:8s} meets={f['meets']}")
    print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
