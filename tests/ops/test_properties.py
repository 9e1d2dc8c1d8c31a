"""Property tests: for any sizes, densities and batch shapes, outputs have the right shapes and values."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from diffbrain import ops

from .conftest import random_csr, random_spikes


@settings(max_examples=6, deadline=None)
@given(
    n_pre=st.integers(0, 12),
    n_post=st.integers(0, 12),
    p=st.sampled_from([0.0, 0.3, 1.0]),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_shapes_and_values(backend, n_pre, n_post, p, batch, seed):
    W = random_csr(seed, n_pre, n_post, p)
    spikes = random_spikes(seed, (batch, n_pre), "float")

    @jax.jit  # one compilation per example
    def evaluate(W, spikes):
        def total(data, s):
            return ops.event_matmat(s, W.with_data(data), backend=backend).sum()

        y = ops.event_matmat(spikes, W, backend=backend)
        return W.to_dense(), W.T.to_dense(), y, *jax.grad(total, argnums=(0, 1))(W.data, spikes)

    dense, transposed, y, d_data, d_spikes = evaluate(W, spikes)
    assert dense.shape == (n_pre, n_post) and y.shape == (batch, n_post)
    assert d_data.shape == (W.nnz,) and d_spikes.shape == spikes.shape
    np.testing.assert_array_equal(transposed, dense.T)
    np.testing.assert_allclose(y, spikes @ dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d_spikes, jnp.broadcast_to(dense.sum(1), spikes.shape), rtol=1e-12, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(0, 60), allow_self=st.booleans(), seed=st.integers(0, 2**16))
def test_fixed_out_degree_rows_are_distinct_and_exact(n, k, allow_self, seed):
    k = min(k, n - (not allow_self))
    W = ops.CSR.fixed_out_degree(jax.random.key(seed), n, n, k, allow_self=allow_self)
    indptr, indices = np.asarray(W.indptr), np.asarray(W.indices)
    np.testing.assert_array_equal(np.diff(indptr), k)
    for row in range(n):
        columns = indices[indptr[row] : indptr[row + 1]]
        assert np.all(np.diff(columns) > 0)  # sorted, no repeats
        assert allow_self or row not in columns
