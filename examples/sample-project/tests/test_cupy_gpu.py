"""CuPy reductions on the GPU, checked against the CPU."""

import math

import pytest

cupy = pytest.importorskip("cupy", reason="CuPy is not installed")

from sample_gpu_lib import normalize  # noqa: E402
from sample_gpu_lib.gpu import norm_cupy, sum_cupy  # noqa: E402


def _gpu_count():
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no driver, no device
        return 0


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(_gpu_count() == 0, reason="no CUDA GPU visible to CuPy"),
]


def test_sum_on_the_gpu_matches_math_fsum(rng):
    values = [rng.uniform(-1, 1) for _ in range(1_000_000)]
    assert math.isclose(sum_cupy(values), math.fsum(values), rel_tol=1e-9, abs_tol=1e-9)


def test_norm_on_the_gpu_agrees_with_normalize(rng):
    values = [rng.uniform(-10, 10) for _ in range(10_000)]
    norm = norm_cupy(values)
    unit = normalize(values)
    assert math.isclose(values[0] / norm, unit[0], rel_tol=1e-12)


def test_the_array_lives_on_the_gpu():
    array = cupy.arange(10)
    assert isinstance(array, cupy.ndarray)
    assert array.device.id == cupy.cuda.Device().id
    assert int(array.sum()) == 45
