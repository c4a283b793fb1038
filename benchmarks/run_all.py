"""
Run every benchmark in quick mode and gather their figures into one summary (``make bench``).

Each ``benchmarks/<name>.py`` (all but this file and ``common.py``) runs as its own subprocess
with ``--quick``, the interpreter of this process and the ROS environment of the tests
(localhost discovery, the package's Fast DDS profile for large messages, a random domain id, a
temporary log folder). A script that fails or runs past its time limit is reported and the run
goes on. Afterwards every ``benchmarks/results/<name>.json`` written by this run is read and its
``figures`` gathered into ``benchmarks/results/summary.json`` and the markdown table
``benchmarks/results/summary.md`` (benchmark, figure, value, unit, target, meets).

Usage: ``python benchmarks/run_all.py [--only NAME ...] [--timeout S] [--full]``.
Exits 1 when a benchmark failed (the summary is written anyway).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

from common import git_revision, machine_description, REPO_ROOT, RESULTS_DIR

BENCH_DIR = os.path.join(REPO_ROOT, 'benchmarks')
NOT_BENCHMARKS = {'common', 'run_all'}
FASTDDS_PROFILE = os.path.join(REPO_ROOT, 'config', 'fastdds_localhost_large.xml')


def benchmark_names() -> list[str]:
    """Return the names of the benchmark scripts in ``benchmarks/``, sorted."""
    names = (os.path.splitext(os.path.basename(p))[0]
             for p in glob.glob(os.path.join(BENCH_DIR, '*.py')))
    return sorted(n for n in names if n not in NOT_BENCHMARKS and not n.startswith('_'))


def ros_environment(log_dir: str) -> dict:
    """Return this process's environment with the ROS settings every ROS-starting process needs."""
    env = dict(os.environ)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', FASTDDS_PROFILE)
    env['ROS_DOMAIN_ID'] = str(random.SystemRandom().randint(101, 200))
    env['ROS_LOG_DIR'] = log_dir
    env.setdefault('HOME', log_dir)
    env['PYTHONUNBUFFERED'] = '1'
    return env


def run_benchmark(name: str, quick: bool, timeout_s: float, log_dir: str) -> dict:
    """
    Run ``benchmarks/<name>.py`` as a subprocess and read the results it wrote.

    :return: ``{'benchmark', 'status' ('ok', 'failed', 'timeout' or 'no results'), 'seconds',
        'returncode', 'error', 'figures'}``; ``error`` holds the tail of the output on failure.
    """
    path = os.path.join(RESULTS_DIR, f'{name}.json')
    argv = [sys.executable, os.path.join(BENCH_DIR, f'{name}.py')] + (['--quick'] if quick else [])
    started = time.time()
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=ros_environment(log_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    status, output = 'ok', ''
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        output, _ = proc.communicate()
        status = 'timeout'
    seconds = time.time() - started
    entry = {'benchmark': name, 'status': status, 'seconds': round(seconds, 1),
             'returncode': proc.returncode, 'error': '', 'figures': []}
    if status == 'ok' and proc.returncode != 0:
        entry['status'] = 'failed'
    fresh = os.path.exists(path) and os.path.getmtime(path) >= started
    if entry['status'] == 'ok' and not fresh:
        entry['status'] = 'no results'
    if entry['status'] != 'ok':
        entry['error'] = '\n'.join(output.strip().splitlines()[-15:])
        return entry
    with open(path) as f:
        entry['figures'] = json.load(f).get('figures', [])
    return entry


def _cell(value) -> str:
    """Format one table cell: numbers with 4 significant digits, None as an empty cell."""
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, float):
        return f'{value:.4g}'
    return str(value).replace('|', '/')


def summary_markdown(runs: list[dict], header: dict) -> str:
    """Return the markdown summary: one line per figure, then the failures with their output."""
    lines = ['# Benchmark summary', '',
             f"git `{header['git']}`, {header['machine']}, quick={header['quick']}, "
             f"{header['seconds']:.0f} s in all.", '',
             '| benchmark | figure | value | unit | target | meets |',
             '|---|---|---|---|---|---|']
    for run in runs:
        for fig in run['figures']:
            lines.append('| ' + ' | '.join(_cell(v) for v in (
                run['benchmark'], fig.get('name'), fig.get('value'), fig.get('unit'),
                fig.get('target'), fig.get('meets'))) + ' |')
    failed = [r for r in runs if r['status'] != 'ok']
    if failed:
        lines += ['', '## Not measured', '']
        for run in failed:
            lines += [f"- **{run['benchmark']}**: {run['status']} after {run['seconds']} s "
                      f"(exit code {run['returncode']})", '', '```', run['error'], '```', '']
    return '\n'.join(lines).rstrip() + '\n'


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, write the summary and return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[1])
    parser.add_argument('--only', nargs='+', metavar='NAME', help='run only these benchmarks')
    parser.add_argument('--timeout', type=float, default=300.0,
                        help='seconds one benchmark may run (default 300)')
    parser.add_argument('--full', action='store_true', help='run without --quick')
    args = parser.parse_args(argv)
    names = benchmark_names()
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        parser.error(f'unknown benchmark(s) {unknown}; there are {names}')
    names = [n for n in names if not args.only or n in args.only]
    log_dir = tempfile.mkdtemp(prefix='i2p_bench_roslog_')
    started = time.time()
    runs = []
    try:
        for i, name in enumerate(names, 1):
            print(f'[{i}/{len(names)}] {name} ...', flush=True)
            run = run_benchmark(name, not args.full, args.timeout, log_dir)
            print(f"[{i}/{len(names)}] {name}: {run['status']} in {run['seconds']} s, "
                  f"{len(run['figures'])} figures", flush=True)
            if run['error']:
                print('    ' + run['error'].replace('\n', '\n    '), flush=True)
            runs.append(run)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    header = {'git': git_revision(), 'machine': machine_description(), 'quick': not args.full,
              'seconds': time.time() - started}
    summary = dict(header, benchmarks=[
        {k: r[k] for k in ('benchmark', 'status', 'seconds', 'returncode', 'error')}
        for r in runs],
        figures=[dict(fig, benchmark=r['benchmark']) for r in runs for fig in r['figures']])
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2, allow_nan=False)
        f.write('\n')
    with open(os.path.join(RESULTS_DIR, 'summary.md'), 'w') as f:
        f.write(summary_markdown(runs, header))
    failed = [r['benchmark'] for r in runs if r['status'] != 'ok']
    print(f"summary: {len(summary['figures'])} figures from {len(runs) - len(failed)} of "
          f"{len(runs)} benchmarks in {header['seconds']:.0f} s -> "
          f"{os.path.relpath(os.path.join(RESULTS_DIR, 'summary.md'), REPO_ROOT)}"
          + (f'; failed: {", ".join(failed)}' if failed else ''), flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
