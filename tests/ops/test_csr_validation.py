"""`ops.CSR` builders refuse NaN and infinite weights where that is cheap (host weights, shared scalars),
and their dtype and shape errors name the argument the caller passed (review s7 net #4, #7)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import ops

KEY = jax.random.key(0)
CSR = ops.CSR


def test_nan_and_infinite_weights_are_refused_naming_the_argument():
    with pytest.raises(ValueError, match="`matrix` must be finite, got 1 NaN or infinite"):
        CSR.from_dense(np.array([[np.nan, 1.0], [0.0, 2.0]], np.float32))
    with pytest.raises(ValueError, match="`weight` must be finite, got 2 NaN or infinite"):
        CSR.from_edges([0, 1, 1], [1, 0, 1], np.array([1.0, np.nan, np.nan]), (2, 2))
    with pytest.raises(ValueError, match="`weight` must be finite"):
        CSR.from_edges([0, 1], [1, 0], np.nan, (2, 2))
    for builder, size in ((CSR.fixed_prob, 0.5), (CSR.fixed_in_degree, 2), (CSR.fixed_out_degree, 2)):
        with pytest.raises(ValueError, match="`weight` must be finite"):
            builder(KEY, 5, 5, size, weight=np.nan)
    W = CSR.from_edges([0, 1], [1, 0], np.array([1.0, 2.0], np.float32), (2, 2))
    with pytest.raises(ValueError, match="`data` must be finite"):
        W.with_data(np.array([np.nan, 1.0], np.float32))
    with pytest.raises(ValueError, match="`data` must be finite"):
        W.with_data(jnp.float32(np.nan))  # a shared scalar, even a JAX one, is read back
    with pytest.raises(ValueError, match="`data` must be finite"):
        CSR(W.indptr, W.indices, [1.0, np.nan], W.shape)
    with pytest.raises(ValueError, match="`weight` must be finite, got 1 NaN or infinite"):
        CSR.from_edges([0], [1], np.array([np.inf]), (2, 2))
    with pytest.raises(ValueError, match="`data` must be finite"):
        W.with_data(-np.inf)


def test_nan_weights_inside_jit_are_not_read_back():
    """Inside jit the weights are traced: no check, no error (a per-synapse JAX array is not read either)."""
    W = CSR.from_edges([0, 1], [1, 0], np.array([1.0, 2.0], np.float32), (2, 2))
    out = jax.jit(lambda data: W.with_data(data).to_dense())(jnp.array([jnp.nan, 1.0]))
    assert np.isnan(np.asarray(out)[0, 1])
    assert np.isnan(float(W.with_data(jnp.array([jnp.nan, 1.0])).data[0]))


def test_dtype_and_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="`matrix` must be floating, got int64"):
        CSR.from_dense(np.array([[0, 1]], np.int64))
    with pytest.raises(ValueError, match=r"`matrix` must be 2-D \[n_pre, n_post\], got shape \(3,\)"):
        CSR.from_dense(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="`matrix` must be concrete"):
        jax.jit(lambda m: CSR.from_dense(m).data)(jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="`weight` must be floating, got int64"):
        CSR.from_edges([0, 1], [1, 0], np.array([1, 2], np.int64), (2, 2))
    with pytest.raises(ValueError, match="`weight` must be floating"):
        CSR.from_edges([0], [1], np.int64(2), (2, 2))
    assert CSR.from_edges([0], [1], 2, (2, 2)).data.dtype == jnp.float32  # a Python int is cast
    with pytest.raises(ValueError, match="`weight` must be one shared scalar"):
        CSR.fixed_prob(KEY, 5, 5, 0.5, weight=np.ones(3))
    with pytest.raises(ValueError, match=r"`weight` must be one shared scalar \(or 10 per-synapse"):
        CSR.fixed_in_degree(KEY, 5, 5, 2, weight=np.ones(3))
    assert CSR.fixed_in_degree(KEY, 5, 5, 2, weight=np.full(10, 0.5, np.float32)).data.shape == (10,)
    for p in (np.array([0.1, 0.2]), True, "0.1", 1.5, np.nan, -0.1):
        with pytest.raises(ValueError, match=r"`p` must be one probability in \[0, 1\]"):
            CSR.fixed_prob(KEY, 5, 5, p)
    assert CSR.fixed_prob(KEY, 5, 5, jnp.float32(1.0)).nnz == 25
    assert CSR.fixed_prob(KEY, 5, 5, np.float64(0.0)).nnz == 0
