"""
Speed of the synthetic world generator and sensor simulator (``i2p_registration.data``).

Measures, with the default configuration (``config/synthetic.yaml``: 4 x 3 blocks, HDL-64E with
2000 columns, 1242 x 375 camera with shadows):

- building a world (street plan, scene meshes, Open3D ray-casting scene), median over seeds;
- one frame: a 64-beam scan plus a 1242 x 375 image with its depth, median over frames along the
  route, and each part alone;
- writing one KITTI frame to disk (PNG + velodyne .bin) on top of rendering it.

Targets from issue 3 (on the 2-core development machine): world <= 5 s, frame <= 1 s.

Usage: ``python benchmarks/synthetic.py [--quick]``; writes benchmarks/results/synthetic.json.
"""

import argparse
import statistics
import tempfile
import time

from common import figure, write_results
from i2p_registration.data.kitti import write_kitti_sequence
from i2p_registration.data.simulator import Simulator
from i2p_registration.data.synth_config import load_synth_config
from i2p_registration.data.world import World

SEED = 0


def timed(fn):
    """Wall time of one call in seconds and its result."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main():
    """Run the measurements and write the results JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--quick', action='store_true', help='fewer repetitions (make bench)')
    args = parser.parse_args()
    n_worlds = 3 if args.quick else 7
    n_frames = 3 if args.quick else 9
    config = load_synth_config()

    world_s = [timed(lambda s=s: World.generate(config.world, SEED + s))[0]
               for s in range(n_worlds)]
    sim = Simulator(config, SEED)
    stamps = sim.stamps(60.0)['lidar'].stamps_ns
    sim.image(int(stamps[0]), 0)                       # warm-up: per-pixel rays, Open3D BVH
    sim.scan(int(stamps[0]), 0)
    picks = [int(stamps[k]) for k in range(5, len(stamps), max(len(stamps) // n_frames, 1))]
    picks = picks[:n_frames]
    image_s, scan_s, frame_s, n_points = [], [], [], []
    for k, stamp in enumerate(picks):
        t_img, _ = timed(lambda: sim.image(stamp, k))
        t_scan, cloud = timed(lambda: sim.scan(stamp, k))
        image_s.append(t_img)
        scan_s.append(t_scan)
        frame_s.append(t_img + t_scan)
        n_points.append(len(cloud))
    with tempfile.TemporaryDirectory() as tmp:
        n_write = 3 if args.quick else 5
        t_write, _ = timed(lambda: write_kitti_sequence(sim, tmp, '00', n_write))
    write_frame_s = t_write / n_write

    med = statistics.median
    figures = [
        figure('world_build_s', med(world_s), 's', 'lower', 5.0,
               f'issue 3 target 5 s; {World.generate(config.world, SEED).n_triangles} '
               'triangles'),
        figure('frame_s', med(frame_s), 's', 'lower', 1.0,
               'issue 3 target 1 s for a 64-beam scan + 1242x375 image'),
        figure('image_s', med(image_s), 's', 'lower', None,
               'ray cast + shading + shadow rays + noise, 1242x375'),
        figure('scan_s', med(scan_s), 's', 'lower', None,
               f'64 beams x {config.lidar.columns} columns, {med(n_points):.0f} points'),
        figure('kitti_frame_write_s', write_frame_s, 's', 'lower', None,
               f'render + PNG + .bin per frame, frame_s {med(frame_s):.2f} s in this run'),
    ]
    run_config = {'seed': SEED, 'quick': args.quick, 'statistic': 'median',
                  'worlds': n_worlds, 'frames': len(picks), 'blocks': list(config.world.blocks),
                  'camera': [config.camera.width, config.camera.height],
                  'shadows': config.camera.shadows, 'lidar_preset': config.lidar.preset,
                  'lidar_columns': config.lidar.columns}
    path = write_results('synthetic', run_config, figures)
    for f in figures:
        print(f"{f['name']:>22}: {f['value']:.3f} {f['unit']}"
              + ('' if f['meets'] is None else f"  (target {f['target']}: "
                 f"{'meets' if f['meets'] else 'MISSES'})"))
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
