"""The same operations on a CUDA GPU. PyTorch and CuPy are optional: each is imported only by
the functions that use it, so `import sample_gpu_lib.gpu` works without either."""

from __future__ import annotations

from typing import Any, List, Sequence

from sample_gpu_lib import Matrix


def torch_device_name() -> str:
    """Name of the GPU PyTorch uses, e.g. "NVIDIA H100 80GB HBM3"."""
    import torch

    return str(torch.cuda.get_device_name(torch.cuda.current_device()))


def matmul_torch(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> Matrix:
    """Matrix product computed on the GPU with PyTorch (float64), returned as lists."""
    import torch

    left = torch.tensor(a, dtype=torch.float64, device="cuda")
    right = torch.tensor(b, dtype=torch.float64, device="cuda")
    product = left @ right
    torch.cuda.synchronize()
    return product.cpu().tolist()


def softmax_torch(values: Sequence[float]) -> List[float]:
    import torch

    tensor = torch.tensor(values, dtype=torch.float64, device="cuda")
    return torch.softmax(tensor, dim=0).cpu().tolist()


def sum_cupy(values: Sequence[float]) -> float:
    """Sum reduced on the GPU with CuPy."""
    import cupy

    return float(cupy.asarray(values, dtype=cupy.float64).sum())


def norm_cupy(values: Sequence[float]) -> float:
    import cupy

    array: Any = cupy.asarray(values, dtype=cupy.float64)
    return float(cupy.linalg.norm(array))
