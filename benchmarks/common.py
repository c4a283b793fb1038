"""
Helpers shared by the benchmark scripts: timing, figures and the results JSON.

Every script in ``benchmarks/`` runs as a file (``python benchmarks/<name>.py [--quick]``),
imports this module as ``common`` and ends with :func:`write_results`, which writes
``benchmarks/results/<name>.json`` in the format of DESIGN.md section 7::

    {"benchmark": ..., "git": ..., "machine": ..., "config": {...},
     "figures": [{"name", "value", "unit", "better", "target", "meets", "baseline"}, ...]}
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import time
from typing import Callable

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO_ROOT, 'benchmarks', 'results')


def _command_output(argv: list[str]) -> str | None:
    """Return the stripped stdout of ``argv``, or None when it fails or is missing."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=REPO_ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def git_revision() -> str:
    """Return the commit of the working tree (``git rev-parse HEAD``), or ``'unknown'``."""
    return _command_output(['git', 'rev-parse', 'HEAD']) or 'unknown'


def machine_description() -> str:
    """Describe this machine as ``'<cpu model>, <n> cores, gpu <name or none>'``."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    gpu = None
    if shutil.which('nvidia-smi'):
        gpu = _command_output(['nvidia-smi', '--query-gpu=name', '--format=csv,noheader'])
    gpu = ', '.join(gpu.splitlines()) if gpu else 'none'
    return f'{cpu}, {os.cpu_count()} cores, gpu {gpu}'


def median_ms(fn: Callable[[], object], repeat: int, warmup: int = 3) -> float:
    """
    Time ``fn()`` ``repeat`` times after ``warmup`` untimed calls.

    :return: the median wall time of one call in milliseconds.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def figure(name: str, value: float, unit: str, better: str, target: float | None = None,
           baseline: str = '') -> dict:
    """
    Build one entry of ``figures``.

    :param better: ``'lower'`` or ``'higher'``: the direction in which the figure improves.
    :param target: the value to reach, or None; ``meets`` is None without a target.
    :param baseline: what the figure is compared with, in words and numbers.
    """
    if better not in ('lower', 'higher'):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    meets = None
    if target is not None:
        meets = bool(value <= target) if better == 'lower' else bool(value >= target)
    return {'name': name, 'value': float(value), 'unit': unit, 'better': better,
            'target': target, 'meets': meets, 'baseline': baseline}


def finite_or_none(value):
    """Return ``value`` with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def print_figures(figures: list[dict], path: str, name_width: int = 45) -> None:
    """Print one line per figure (value, unit, whether it meets its target), then ``path``."""
    for f in figures:
        value = f['value'] if f['value'] is not None else float('nan')
        print(f"{f['name']:{name_width}s} {value:10.3f} {f['unit']:8s} meets={f['meets']}")
    print(path)


def write_results(name: str, config: dict, figures: list[dict],
                  results_dir: str = RESULTS_DIR) -> str:
    """
    Write ``<results_dir>/<name>.json`` with the git revision and machine description.

    :param name: the benchmark name (also the file name).
    :param config: the settings the figures were measured with (sizes, repetitions, seed).
    :param figures: entries made by :func:`figure`.
    :return: the path written.
    """
    os.makedirs(results_dir, exist_ok=True)
    path = os.path.join(results_dir, f'{name}.json')
    result = {'benchmark': name, 'git': git_revision(), 'machine': machine_description(),
              'config': config, 'figures': figures}
    with open(path, 'w') as f:
        json.dump(finite_or_none(result), f, indent=2, allow_nan=False)
        f.write('\n')
    return path
