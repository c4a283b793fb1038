"""
Train / validation / test splits of synthetic data by world seed.

A world seed belongs to exactly one split by its last decimal digit: 0-7 train, 8 validation,
9 test (80 / 10 / 10). The splits are therefore disjoint by construction, for any number of
worlds, and a seed's split can be recovered from the seed alone.
"""

from __future__ import annotations

SPLITS = ('train', 'val', 'test')
_DIGITS = {'train': tuple(range(8)), 'val': (8,), 'test': (9,)}


def split_of_seed(seed: int) -> str:
    """Return the split a world seed belongs to."""
    if int(seed) < 0:
        raise ValueError(f'world seeds are >= 0, got {seed}')
    digit = int(seed) % 10
    return next(name for name, digits in _DIGITS.items() if digit in digits)


def split_seed(split: str, k: int) -> int:
    """Return the ``k``-th (0-based) world seed of a split."""
    if split not in _DIGITS:
        raise ValueError(f'unknown split {split!r}, expected one of {SPLITS}')
    if int(k) < 0:
        raise ValueError(f'k must be >= 0, got {k}')
    digits = _DIGITS[split]
    block, r = divmod(int(k), len(digits))
    return 10 * block + digits[r]


def split_seeds(split: str, count: int, start: int = 0) -> list[int]:
    """Return the world seeds ``start .. start + count - 1`` of a split, in increasing order."""
    if count < 0:
        raise ValueError(f'count must be >= 0, got {count}')
    return [split_seed(split, k) for k in range(start, start + count)]
