"""PyTorch on the GPU, checked against the pure-Python core."""

import math

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")

from sample_gpu_lib import matmul, softmax  # noqa: E402
from sample_gpu_lib.gpu import matmul_torch, softmax_torch, torch_device_name  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch"),
]


def test_torch_sees_a_cuda_device():
    assert torch.cuda.device_count() >= 1
    name = torch_device_name()
    print(f"PyTorch {torch.__version__} on {name} (CUDA {torch.version.cuda})")
    assert name


def test_matmul_on_the_gpu_matches_the_cpu(matrices):
    a, b = matrices
    expected = matmul(a, b)
    result = matmul_torch(a, b)
    for got_row, want_row in zip(result, expected):
        for got, want in zip(got_row, want_row):
            assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)


def test_large_matmul_really_runs_on_the_gpu():
    left = torch.randn(2048, 2048, device="cuda")
    right = torch.randn(2048, 2048, device="cuda")
    product = left @ right
    torch.cuda.synchronize()
    assert product.is_cuda
    reference = (left.cpu().double() @ right.cpu().double()).float()
    assert torch.allclose(product.cpu(), reference, rtol=1e-2, atol=1e-1)


def test_softmax_on_the_gpu_matches_the_cpu():
    values = [0.5, -1.0, 3.0, 2.0]
    for got, want in zip(softmax_torch(values), softmax(values)):
        assert math.isclose(got, want, rel_tol=1e-12)
