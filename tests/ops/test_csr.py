"""`ops.CSR`: validation, conversions, the random builders' statistics and speed, PyTree behaviour."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import ops
from diffbrain.ops.csr import _index_dtype

from .conftest import SHAPES, random_csr

KEY = jax.random.key(0)


@pytest.mark.parametrize(("n_pre", "n_post", "p"), SHAPES)
def test_from_edges_matches_dense_and_round_trips(n_pre, n_post, p):
    W = random_csr(1, n_pre, n_post, p)
    dense = np.asarray(W.to_dense())
    back = ops.CSR.from_dense(dense)
    np.testing.assert_array_equal(back.indptr, W.indptr)
    np.testing.assert_array_equal(back.indices, W.indices)
    np.testing.assert_array_equal(back.data, W.data)
    np.testing.assert_array_equal(W.T.to_dense(), dense.T)
    np.testing.assert_array_equal(W.T.T.to_dense(), dense)
    assert W.nnz == np.count_nonzero(dense)


def test_homogeneous_transpose_and_with_data():
    W = random_csr(2, 10, 6, 0.4, homogeneous=True)
    assert W.homogeneous and W.data.shape == ()
    np.testing.assert_array_equal(W.T.to_dense(), W.to_dense().T)
    heterogeneous = W.with_data(jnp.arange(W.nnz, dtype=jnp.float64))
    assert not heterogeneous.homogeneous
    np.testing.assert_array_equal(heterogeneous.T.to_dense(), heterogeneous.to_dense().T)


def test_python_weights_default_to_float32():
    assert ops.CSR.fixed_prob(KEY, 5, 5, 0.5, weight=2.0).data.dtype == jnp.float32


@pytest.mark.parametrize(
    ("indptr", "indices", "data", "shape", "match"),
    [
        ([0, 1, 3], [0, 1], [1.0, 1.0], (2, 2), "indptr"),  # does not end at nnz
        ([0, 2, 1, 2], [0, 1], [1.0, 1.0], (3, 2), "indptr"),  # decreasing
        ([0, 1], [0], [1.0], (2, 2), "indptr"),  # wrong length
        ([0, 1, 2], [0, 5], [1.0, 1.0], (2, 2), "indices"),  # out of range
        ([0, 1, 2], [0, -1], [1.0, 1.0], (2, 2), "indices"),
        ([0, 1, 2], [0.0, 1.0], [1.0, 1.0], (2, 2), "indices"),  # not integer
        ([0.0, 1.0, 2.0], [0, 1], [1.0, 1.0], (2, 2), "indptr"),
        ([0, 1, 2], [0, 1], [1.0, 1.0, 1.0], (2, 2), "data"),  # length
        ([0, 1, 2], [0, 1], [1, 1], (2, 2), "data"),  # integer weights
        ([0, 1, 2], [0, 1], [1.0, 1.0], (2, -2), "shape"),
    ],
)
def test_validation_names_the_argument(indptr, indices, data, shape, match):
    with pytest.raises(ValueError, match=f"`{match}"):
        ops.CSR(np.asarray(indptr), np.asarray(indices), np.asarray(data), shape)


def test_from_edges_rejects_bad_edges():
    with pytest.raises(ValueError, match="repeat"):
        ops.CSR.from_edges(np.array([0, 1, 0]), np.array([2, 0, 2]), 1.0, (2, 3))
    with pytest.raises(ValueError, match="`post`"):
        ops.CSR.from_edges(np.array([0, 1]), np.array([2, 3]), 1.0, (2, 3))
    with pytest.raises(ValueError, match="equal lengths"):
        ops.CSR.from_edges(np.array([0, 1]), np.array([2]), 1.0, (2, 3))
    with pytest.raises(ValueError, match="`weight`"):
        ops.CSR.from_edges(np.array([0, 1]), np.array([2, 0]), np.ones(3), (2, 3))


def test_index_dtype_widens_at_two_to_the_31():
    assert _index_dtype(2**31 - 1) == np.int32
    assert _index_dtype(2**31) == np.int64  # tests run with x64 enabled
    with pytest.raises(ValueError, match="int64"):
        ops.CSR(np.array([0, 1], np.int32), np.zeros(1, np.int32), 1.0, (1, 2**31))
    # narrower integer types are widened to the kernels' int32 (or int64 when the sizes need it)
    assert ops.CSR(np.array([0, 1], np.int8), np.zeros(1, np.int8), 1.0, (1, 300)).indices.dtype == np.int32
    assert (
        ops.CSR(np.array([0, 1], np.uint16), np.zeros(1, np.uint16), 1.0, (1, 2**31)).indices.dtype
        == np.int64
    )


def test_builder_arguments_are_checked():
    with pytest.raises(ValueError, match="`p`"):
        ops.CSR.fixed_prob(KEY, 4, 4, 1.5)
    with pytest.raises(ValueError, match="`k`"):
        ops.CSR.fixed_out_degree(KEY, 4, 4, 4, allow_self=False)
    with pytest.raises(ValueError, match="allow_self"):
        ops.CSR.fixed_in_degree(KEY, 4, 5, 2, allow_self=False)
    with pytest.raises(ValueError, match="`n_pre`"):
        ops.CSR.fixed_prob(KEY, -1, 4, 0.5)


@pytest.mark.parametrize("p", [0.05, 0.8])  # sparse rows, and rows more than half full
@pytest.mark.parametrize("allow_self", [True, False])
def test_fixed_prob_statistics(p, allow_self):
    n = 400
    W = ops.CSR.fixed_prob(KEY, n, n, p, allow_self=allow_self)
    dense = np.asarray(W.to_dense())
    choices = n if allow_self else n - 1
    expected, sd = n * choices * p, np.sqrt(n * choices * p * (1 - p))
    assert abs(W.nnz - expected) < 5 * sd
    assert np.all(dense[dense != 0] == 1.0) and np.count_nonzero(dense) == W.nnz  # no repeated synapse
    if not allow_self:
        assert not np.any(np.diag(dense))
    np.testing.assert_array_equal(ops.CSR.fixed_prob(KEY, n, n, p, allow_self=allow_self).indices, W.indices)
    other = ops.CSR.fixed_prob(jax.random.key(1), n, n, p, allow_self=allow_self)
    assert other.nnz != W.nnz or not np.array_equal(other.indices, W.indices)


@pytest.mark.parametrize("k", [0, 3, 50, 99])
@pytest.mark.parametrize("allow_self", [True, False])
def test_fixed_degrees_are_exact(k, allow_self):
    n = 100
    out = np.asarray(ops.CSR.fixed_out_degree(KEY, n, n, k, 0.5, allow_self=allow_self).to_dense())
    into = np.asarray(ops.CSR.fixed_in_degree(KEY, n, n, k, 0.5, allow_self=allow_self).to_dense())
    for dense, axis in ((out, 1), (into, 0)):
        np.testing.assert_array_equal(np.count_nonzero(dense, axis=axis), k)
        assert set(np.unique(dense)) <= {0.0, 0.5}
        if not allow_self:
            assert not np.any(np.diag(dense))


def test_fixed_in_degree_rectangular_and_uniform():
    W = ops.CSR.fixed_in_degree(KEY, 50, 2000, 10)
    counts = np.bincount(np.asarray(W.indices), minlength=2000)
    np.testing.assert_array_equal(counts, 10)
    out_degree = np.diff(np.asarray(W.indptr))  # each pre neuron is chosen ~ 2000·10/50 = 400 times
    assert abs(out_degree.mean() - 400) < 1e-9 and out_degree.std() < 4 * np.sqrt(400)


def test_build_100k_by_100k_with_400_per_row_is_fast():
    # The CPU time of this process: the builder runs on one core, so on an idle machine it is the wall
    # time, and unlike the wall time it does not grow when other jobs share the cores.
    start, cpu_start = time.perf_counter(), time.process_time()
    W = ops.CSR.fixed_out_degree(KEY, 100_000, 100_000, 400, weight=0.1)
    jax.block_until_ready(W)
    cpu, wall = time.process_time() - cpu_start, time.perf_counter() - start
    assert W.nnz == 40_000_000 and W.indices.dtype == jnp.int32
    assert cpu < 3.0, f"building took {cpu:.2f} s of CPU ({wall:.2f} s wall)"


def test_structure_arrays_are_leaves_so_one_compilation_serves_equal_shapes():
    traces = []

    @jax.jit
    def total(W):
        traces.append(None)
        return ops.event_matvec(jnp.ones(W.shape[0], bool), W, backend="reference").sum()

    first = ops.CSR.fixed_out_degree(KEY, 30, 20, 4, 1.0)
    second = ops.CSR.fixed_out_degree(jax.random.key(5), 30, 20, 4, 1.0)
    assert total(first) == total(second) == 120.0
    assert len(traces) == 1
    assert len(jax.tree.leaves(first)) == 3


def test_csr_can_be_built_and_transposed_inside_jit():
    W = random_csr(3, 12, 8, 0.3)

    @jax.jit
    def rebuilt(indptr, indices, data):
        return ops.CSR(indptr, indices, data, W.shape).T.to_dense()

    np.testing.assert_array_equal(rebuilt(W.indptr, W.indices, W.data), W.to_dense().T)
