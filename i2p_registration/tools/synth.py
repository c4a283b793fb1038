r"""
``i2p-synth``: generate a synthetic driving sequence (KITTI layout) and / or a rosbag2.

Examples::

    i2p-synth --seed 3 --out out/synth3                       # KITTI layout + bag + previews
    i2p-synth --split test --index 0 --format kitti --duration 60
    i2p-synth --config config/synthetic.yaml --format bag --storage sqlite3 \
        --set lidar.preset=vlp16 --set camera.width=640

Same seed and config give byte-identical files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time

from ..data.bag_writer import write_bag
from ..data.kitti import write_kitti_sequence
from ..data.preview import write_previews
from ..data.progress import Progress
from ..data.simulator import Simulator
from ..data.splits import split_of_seed, split_seed, SPLITS
from ..data.synth_config import load_synth_config


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line interface."""
    p = argparse.ArgumentParser(prog='i2p-synth', description=__doc__.strip().split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', help='generator YAML (default: built-in = config/synthetic.yaml)')
    p.add_argument('--set', action='append', default=[], metavar='SECTION.KEY=VALUE',
                   help='override one config value (repeatable)')
    seed = p.add_mutually_exclusive_group()
    seed.add_argument('--seed', type=int, help='world seed (default 0)')
    seed.add_argument('--split', choices=SPLITS, help='take the world seed from a split')
    p.add_argument('--index', type=int, default=0, help='k-th world of --split (default 0)')
    p.add_argument('--format', choices=('kitti', 'bag', 'both'), default='both')
    p.add_argument('--out', help='output folder (default out/synth_<seed>)')
    p.add_argument('--sequence', default='00', help='KITTI sequence name (default 00)')
    p.add_argument('--duration', type=float, help='seconds of driving (output.duration_s)')
    p.add_argument('--frames', type=int, help='limit the KITTI sequence to N frames')
    p.add_argument('--storage', choices=('mcap', 'sqlite3'), help='bag storage')
    p.add_argument('--image-format', choices=('raw', 'jpeg', 'png'), help='bag image encoding')
    p.add_argument('--preview', type=int, default=3, metavar='N',
                   help='overlay previews to write (0: none; the top view comes with N > 0)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the generator; returns the process exit status."""
    args = build_parser().parse_args(argv)
    overrides = list(args.set)
    if args.duration is not None:
        overrides.append(f'output.duration_s={args.duration}')
    try:
        config = load_synth_config(args.config, overrides)
        seed = split_seed(args.split, args.index) if args.split else (args.seed or 0)
        if seed < 0:
            raise ValueError(f'--seed must be >= 0, got {seed}')
    except (ValueError, OSError) as err:
        print(f'i2p-synth: error: {err}', file=sys.stderr)
        return 2
    out = Path(args.out or f'out/synth_{seed}')
    if args.format in ('bag', 'both') and (out / 'bag').exists():
        print(f'i2p-synth: error: {out / "bag"} exists; choose another --out or remove it',
              file=sys.stderr)
        return 2
    stream = None if args.quiet else sys.stderr
    t0 = time.perf_counter()
    sim = Simulator(config, seed)
    summary = {'seed': seed, 'split': split_of_seed(seed), 'out': str(out),
               'world_build_s': round(sim.world.build_time_s, 3),
               'triangles': sim.world.n_triangles,
               'lap_length_m': round(sim.trajectory.lap_length, 1),
               'lap_time_s': round(sim.trajectory.lap_time, 1), 'outputs': []}
    if args.format in ('kitti', 'both'):
        progress = Progress(1, 'kitti', stream)
        summary['outputs'].append(write_kitti_sequence(sim, out / 'kitti', args.sequence,
                                                       args.frames, progress))
    if args.format in ('bag', 'both'):
        progress = Progress(1, 'bag  ', stream)
        summary['outputs'].append(write_bag(sim, out, args.storage, args.image_format,
                                            progress=progress))
    if args.preview > 0:
        summary['previews'] = write_previews(sim, out / 'preview', args.preview)
    summary['elapsed_s'] = round(time.perf_counter() - t0, 1)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
