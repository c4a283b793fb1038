"""
Speed of the point transform every stage uses (``core.geometry.se3.transform_points``).

Maps a scan-sized cloud (466k points, about four accumulated 64-beam scans) by a rigid transform,
float32 in and out with float64 maths, against the plain BLAS matmul formulation
``p @ R.T + t`` measured in the same run. The matmul hands a (N, 3) x (3, 3) product to BLAS,
whose thread start-up dominates on a small loaded machine.

Usage: ``python benchmarks/geometry.py [--quick]``; writes benchmarks/results/geometry.json.
"""

import argparse

from common import figure, median_ms, write_results
from i2p_registration.core.geometry.se3 import se3_exp, transform_points
import numpy as np

N_POINTS = 466_000
SEED = 0


def matmul_transform(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points with a BLAS matmul (the baseline formulation)."""
    p = points.astype(np.float64)
    return (p @ T[:3, :3].T + T[:3, 3]).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='fewer repetitions')
    args = parser.parse_args()
    repeat = 7 if args.quick else 31
    rng = np.random.default_rng(SEED)
    points = rng.uniform(-80, 80, size=(N_POINTS, 3)).astype(np.float32)
    T = se3_exp(rng.normal(size=6))
    np.testing.assert_allclose(transform_points(T, points), matmul_transform(T, points),
                               atol=1e-4)
    ours = median_ms(lambda: transform_points(T, points), repeat)
    baseline = median_ms(lambda: matmul_transform(T, points), repeat)
    figures = [
        figure('transform_points_466k_ms', ours, 'ms', 'lower',
               baseline=f'BLAS matmul p @ R.T + t: {baseline:.1f} ms'),
        figure('transform_points_speedup_vs_matmul', baseline / ours, 'x', 'higher', 1.0,
               baseline=f'matmul {baseline:.1f} ms / ours {ours:.1f} ms'),
    ]
    path = write_results('geometry', {'n_points': N_POINTS, 'repeat': repeat, 'seed': SEED,
                                      'quick': args.quick}, figures)
    for f in figures:
        print(f"{f['name']}: {f['value']:.2f} {f['unit']}  ({f['baseline']})")
    print('wrote', path)


if __name__ == '__main__':
    main()
