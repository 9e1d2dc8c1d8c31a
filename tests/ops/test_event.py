"""Forward products of every backend against the dense reference: spikes kinds, dtypes, shapes, transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import ops

from .conftest import SHAPES, random_csr, random_spikes


def dense_product(spikes, W):
    return jnp.asarray(spikes, W.data.dtype) @ W.to_dense()


def tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == jnp.float32 else {"rtol": 1e-12, "atol": 1e-12}


CASES = [(*shape, homogeneous, jnp.float64) for shape in SHAPES for homogeneous in (False, True)]
CASES += [(*SHAPES[-1], homogeneous, jnp.float32) for homogeneous in (False, True)]


@pytest.mark.parametrize(("n_pre", "n_post", "p", "homogeneous", "dtype"), CASES)
def test_event_matvec_matches_dense(backend, n_pre, n_post, p, homogeneous, dtype):
    W = random_csr(n_pre + n_post, n_pre, n_post, p, dtype, homogeneous)
    for kind in ("bool", "int", "float"):
        spikes = random_spikes(n_pre, (n_pre,), kind, dtype)
        y = ops.event_matvec(spikes, W, backend=backend)
        assert y.shape == (n_post,) and y.dtype == dtype
        np.testing.assert_allclose(y, dense_product(spikes, W), **tolerance(dtype))
    spikes = random_spikes(1, (5, n_pre), "bool")
    np.testing.assert_allclose(
        ops.event_matmat(spikes, W, backend=backend), dense_product(spikes, W), **tolerance(dtype)
    )
    x = random_spikes(2, (n_pre,), "float", dtype) - 0.2
    np.testing.assert_allclose(ops.csr_matvec(x, W, backend=backend), dense_product(x, W), **tolerance(dtype))


def test_silent_rows_are_skipped(backend):
    W = ops.CSR.from_edges(np.array([0, 1]), np.array([0, 0]), np.array([1.0, 2.0]), (2, 1))
    W = W.with_data(jnp.array([jnp.inf, 2.0]))  # a JAX array is not read back for the finiteness check
    np.testing.assert_array_equal(ops.event_matvec(jnp.array([False, True]), W, backend=backend), [2.0])


def test_csr_matvec_is_the_dense_product_over_every_row(backend):
    """No event skipping in csr_matvec, batched or not, on every backend: 0·inf gives NaN as densely."""
    W = ops.CSR.from_edges(np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([1.0, 2.0, 4.0]), (2, 2))
    W = W.with_data(jnp.array([2.0, jnp.inf, 4.0]))
    x = jnp.array([1.0, 0.0])
    np.testing.assert_array_equal(ops.csr_matvec(x, W, backend=backend), [np.nan, 0.0])
    batched = jax.vmap(lambda v: ops.csr_matvec(v, W, backend=backend))(jnp.stack([x, jnp.array([0.5, 0.0])]))
    np.testing.assert_array_equal(batched, [[np.nan, 0.0], [np.nan, 0.0]])
    np.testing.assert_array_equal(ops.event_matvec(x, W, backend=backend), [2.0, 0.0])


def test_jit_vmap_and_scan(backend):
    W = random_csr(3, 40, 25, 0.12)
    steps = random_spikes(4, (6, 40), "bool")
    expected = dense_product(steps, W)

    step = jax.jit(lambda W, s: ops.event_matvec(s, W, backend=backend))
    np.testing.assert_allclose(step(W, steps[0]), expected[0], rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(step, (None, 0))(W, steps), expected, rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(step, (None, 1), 1)(W, steps.T), expected.T, rtol=1e-12)
    nested = jax.vmap(jax.vmap(step, (None, 0)), (None, 0))(W, steps.reshape(2, 3, 40))
    np.testing.assert_allclose(nested, expected.reshape(2, 3, 25), rtol=1e-12)

    def body(total, s):
        y = ops.event_matvec(s, W, backend=backend)
        return total + y, y

    total, ys = jax.jit(lambda: jax.lax.scan(body, jnp.zeros(25), steps))()
    np.testing.assert_allclose(ys, expected, rtol=1e-12)
    np.testing.assert_allclose(total, expected.sum(0), rtol=1e-12)


def test_vmap_over_weights_and_structures(backend):
    Ws = [ops.CSR.fixed_out_degree(jax.random.key(seed), 10, 8, 3, 1.0) for seed in range(3)]
    Ws = [W.with_data(jnp.arange(30.0)) for W in Ws]
    base = Ws[0]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *Ws)
    spikes = random_spikes(5, (10,), "float")
    ys = jax.vmap(lambda W: ops.event_matvec(spikes, W, backend=backend))(stacked)
    np.testing.assert_allclose(ys, [dense_product(spikes, W) for W in Ws], rtol=1e-12)
    scales = jnp.array([1.0, -2.0])
    ys = jax.vmap(lambda c: ops.event_matvec(spikes, base.with_data(c * base.data), backend=backend))(scales)
    np.testing.assert_allclose(ys, scales[:, None] * dense_product(spikes, base), rtol=1e-12)


def test_bad_inputs_name_the_argument():
    W = random_csr(6, 5, 4, 0.5, jnp.float32)
    with pytest.raises(ValueError, match=r"`spikes`.*shape"):
        ops.event_matvec(jnp.ones(6, bool), W)
    with pytest.raises(ValueError, match=r"`spikes`.*shape"):
        ops.event_matmat(jnp.ones(5, bool), W)
    with pytest.raises(ValueError, match=r"`spikes`.*dtype"):
        ops.event_matvec(jnp.ones(5, jnp.float64), W)
    with pytest.raises(ValueError, match=r"`spikes`.*dtype"):
        ops.event_matvec(jnp.ones(5, jnp.complex64), W)
    with pytest.raises(ValueError, match=r"`x`.*floating"):
        ops.csr_matvec(jnp.ones(5, bool), W)
    with pytest.raises(TypeError, match="`W`"):
        ops.event_matvec(jnp.ones(5, bool), W.to_dense())
    with pytest.raises(ValueError, match="`backend`"):
        ops.event_matvec(jnp.ones(5, bool), W, backend="gpu")
