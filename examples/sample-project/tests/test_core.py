"""The pure-Python core: runs anywhere."""

import math

import pytest

from sample_gpu_lib import dot, matmul, normalize, softmax


def test_dot_of_orthogonal_vectors_is_zero():
    assert dot([1.0, 0.0], [0.0, 5.0]) == 0.0


def test_dot_refuses_vectors_of_different_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        dot([1.0], [1.0, 2.0])


def test_matmul_by_the_identity_is_the_same_matrix(matrices):
    a, _ = matrices
    identity = [[1.0 if i == j else 0.0 for j in range(48)] for i in range(48)]
    assert matmul(a, identity) == a


def test_matmul_small_known_product():
    assert matmul([[1, 2], [3, 4]], [[5, 6], [7, 8]]) == [[19, 22], [43, 50]]


def test_matmul_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes do not match"):
        matmul([[1, 2, 3]], [[1], [2]])


@pytest.mark.parametrize("values", [[0.0], [1.0, 2.0, 3.0], [1000.0, 1000.0], [-50.0, 0.0, 50.0]])
def test_softmax_sums_to_one_and_keeps_order(values):
    result = softmax(values)
    assert math.isclose(sum(result), 1.0)
    assert sorted(range(len(values)), key=values.__getitem__) == sorted(
        range(len(result)), key=result.__getitem__
    )


def test_normalize_gives_unit_length(rng):
    values = [rng.uniform(-10, 10) for _ in range(100)]
    assert math.isclose(math.sqrt(sum(v * v for v in normalize(values))), 1.0)
