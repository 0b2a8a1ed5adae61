"""sample-gpu-lib: small numeric helpers with a pure-Python core and optional GPU paths.

The core (this module) needs nothing but Python. `sample_gpu_lib.gpu` offers the same operations
on a CUDA GPU through PyTorch or CuPy, imported only when called.
"""

from __future__ import annotations

import math
from typing import List, Sequence

Matrix = List[List[float]]

__all__ = ["dot", "matmul", "softmax", "normalize"]


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    """Sum of the products of two equally long vectors."""
    if len(a) != len(b):
        raise ValueError(f"vectors differ in length: {len(a)} and {len(b)}")
    return math.fsum(x * y for x, y in zip(a, b))


def matmul(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> Matrix:
    """Matrix product of an n×k and a k×m matrix, as lists of rows."""
    if not a or not b:
        raise ValueError("empty matrix")
    inner = len(b)
    if any(len(row) != inner for row in a):
        raise ValueError(f"shapes do not match: rows of a must have {inner} entries")
    columns = list(zip(*b))
    return [[dot(row, column) for column in columns] for row in a]


def softmax(values: Sequence[float]) -> List[float]:
    """exp(x) / sum(exp), computed stably (shifted by the maximum)."""
    if not values:
        return []
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = math.fsum(exps)
    return [e / total for e in exps]


def normalize(values: Sequence[float]) -> List[float]:
    """Scale a vector to unit Euclidean length."""
    norm = math.sqrt(math.fsum(v * v for v in values))
    if norm == 0:
        raise ValueError("cannot normalize the zero vector")
    return [v / norm for v in values]
