"""
Speed of the voxel map (``core.multiview.map_files.voxel_downsample``).

The multiview node rebuilds its map from every keyframe cloud at each publish and downsamples
each scan on arrival with this function. The cloud here is the size of the demo's map (1.3M
points: 88 keyframes of 15k points each, spread over a 300 m x 300 m x 8 m street volume), at
the map voxel of 0.2 m. The baseline, measured in the same run, is the row-wise ``np.unique``
of the (N, 3) integer voxel keys that the function used before: the new one packs the three
keys into one integer in the same lexicographic order and gives identical output (checked).

Usage: ``python benchmarks/voxel_map.py [--quick]``; writes benchmarks/results/voxel_map.json.
"""

import argparse

from common import figure, median_ms, write_results
from i2p_registration.core.multiview.map_files import voxel_downsample
import numpy as np

N_POINTS = 1_320_000
VOXEL_M = 0.2
SEED = 0


def rowwise_voxel_downsample(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """Centroid per voxel with the row-wise unique of the keys (the baseline)."""
    keys = np.floor(points / voxel_size).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.stack([np.bincount(inverse, points[:, k], len(counts)) for k in range(3)], axis=1)
    return (sums / counts[:, None]).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='fewer repetitions')
    args = parser.parse_args()
    repeat = 3 if args.quick else 9
    rng = np.random.default_rng(SEED)
    points = rng.uniform([-150, -150, -2], [150, 150, 6], size=(N_POINTS, 3))
    ours_map = voxel_downsample(points, VOXEL_M)
    np.testing.assert_array_equal(ours_map, rowwise_voxel_downsample(points, VOXEL_M))
    ours = median_ms(lambda: voxel_downsample(points, VOXEL_M), repeat, warmup=1)
    baseline = median_ms(lambda: rowwise_voxel_downsample(points, VOXEL_M), repeat, warmup=1)
    figures = [
        figure('voxel_map_1320k_ms', ours, 'ms', 'lower',
               baseline=f'row-wise np.unique of the keys: {baseline:.0f} ms'),
        figure('voxel_map_speedup_vs_rowwise_unique', baseline / ours, 'x', 'higher', 1.0,
               baseline=f'row-wise {baseline:.0f} ms / ours {ours:.0f} ms, identical output'),
    ]
    path = write_results('voxel_map', {'n_points': N_POINTS, 'voxel_m': VOXEL_M,
                                       'map_voxels': len(ours_map), 'repeat': repeat,
                                       'seed': SEED, 'quick': args.quick}, figures)
    for f in figures:
        print(f"{f['name']}: {f['value']:.2f} {f['unit']}  ({f['baseline']})")
    print('wrote', path)


if __name__ == '__main__':
    main()
