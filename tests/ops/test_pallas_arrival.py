"""The `pallas` arrival-ring kernels (`ops.arrival_scatter` and its transposes) against the dense NumPy
construction and the ``reference`` backend, run by the Pallas interpreter on CPU, and lowered for CUDA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import ops
from diffbrain.ops.kernels import pallas, reference

from .conftest import random_spikes
from .test_arrival_ring import delayed, dense_scatter

CASES = [
    (5, "float", False, jnp.float64),
    (1, "bool", True, jnp.float32),  # L = 1: every row arrives in the slot it was scattered from
]
"""(L, spike kind, homogeneous, dtype)."""


def structure(row_ptr, lag, W, step):
    return row_ptr, lag, W.indptr, W.indices, jnp.int32(step)


@pytest.mark.parametrize(("length", "kind", "homogeneous", "dtype"), CASES)
def test_kernels_match_dense_and_reference(length, kind, homogeneous, dtype):
    n_pre, n_post = 16, 3  # three columns: some rows have no synapse; some neurons have no rows
    W, row_ptr, lag, source = delayed(31, n_pre, n_post, length, dtype, homogeneous)
    assert (np.diff(np.asarray(W.indptr)) == 0).any() and (np.diff(np.asarray(row_ptr)) == 0).any()
    spikes = random_spikes(32, (n_pre,), kind, dtype)
    rng = np.random.default_rng(33)
    ring = jnp.asarray(rng.normal(size=(length, n_post)), dtype)
    cotangent = jnp.asarray(rng.normal(size=(length, n_post)), dtype)
    tol = 1e-5 if dtype == jnp.float32 else 1e-12
    for step in (4, -1):
        args = structure(row_ptr, lag, W, step)
        expected = dense_scatter(spikes, W, lag, source, ring, step)
        got, empty = pallas.arrival_scatter(*args, W.data, spikes, ring)
        assert got.dtype == dtype and got.shape == ring.shape and empty.shape == (0,)
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
        popped, arriving = pallas.arrival_scatter(*args, W.data, spikes, ring, True)
        slot = (step + 1) % length
        np.testing.assert_allclose(arriving, expected[slot], rtol=tol, atol=tol)
        np.testing.assert_allclose(popped, expected.at[slot].set(0), rtol=tol, atol=tol)
        for name, operand in (("arrival_data_grad", spikes), ("arrival_row_dot", W.data)):
            want = getattr(reference, name)(*args, operand, cotangent)
            got = getattr(pallas, name)(*args, operand, cotangent)
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_rows_longer_than_a_chunk_with_a_small_chunk():
    """4-lane chunks (tuning (4, 3, 1)): every row spans several masked chunks, 3 neurons per program."""
    W, row_ptr, lag, source = delayed(34, 10, 23, 4)
    spikes = random_spikes(35, (10,), "float")
    ring = jnp.asarray(np.random.default_rng(36).normal(size=(4, 23)))
    args = structure(row_ptr, lag, W, 2)
    got, _ = pallas._arrival_scatter(*args, W.data, spikes, ring, False, None, (4, 3, 1))
    np.testing.assert_allclose(got, dense_scatter(spikes, W, lag, source, ring, 2), rtol=1e-12, atol=1e-12)
    for name, operand, kernel in (
        ("arrival_data_grad", spikes, pallas._arrival_data_grad),
        ("arrival_row_dot", W.data, pallas._arrival_row_dot),
    ):
        want = getattr(reference, name)(*args, operand, ring)
        np.testing.assert_allclose(
            kernel(*args, operand, ring, None, (4, 3, 1)), want, rtol=1e-12, atol=1e-12
        )


def test_silent_neurons_are_never_read():
    """The rows of neurons with s = 0 are skipped: their inf weights leave the ring finite, and the weight
    cotangent is zero on their synapses whatever the cotangent."""
    W = ops.CSR.from_dense(jnp.array([[1.0, 1.0], [2.0, 0.0], [0.0, 3.0]]))
    W = W.with_data(jnp.array([jnp.inf, 1.0, 2.0, 3.0]))  # the builders refuse inf; a JAX array is not read
    row_ptr, lag = jnp.array([0, 1, 3], jnp.int32), jnp.array([1, 1, 2], jnp.int32)
    args = structure(row_ptr, lag, W, 0)
    ring, _ = pallas.arrival_scatter(*args, W.data, jnp.array([False, True]), jnp.zeros((2, 2)))
    np.testing.assert_array_equal(ring, [[0.0, 3.0], [2.0, 0.0]])
    g = pallas.arrival_data_grad(*args, jnp.array([0.0, 0.5]), jnp.array([[jnp.inf, 4.0], [6.0, jnp.inf]]))
    np.testing.assert_array_equal(g, [0.0, 0.0, 3.0, 2.0])


def test_public_operator_forward_vmap_and_gradients():
    """`ops.arrival_scatter(backend="pallas")` equals the reference: pop, vmap over spikes and rings, and
    the gradients w.r.t. the weights, float spikes and the ring (its transposes run the kernels)."""
    W, row_ptr, lag, _ = delayed(37, 12, 9, 4)
    spikes = random_spikes(38, (3, 12), "float")
    rings = jnp.asarray(np.random.default_rng(39).normal(size=(3, 4, 9)))
    cotangent = jnp.asarray(np.random.default_rng(40).normal(size=9))

    def run(data, s, ring, backend):
        _, arriving = ops.arrival_scatter(
            s, W.with_data(data), row_ptr, lag, ring, 2, pop=True, backend=backend
        )
        return arriving

    def loss(data, s, ring, backend):
        return jnp.vdot(cotangent, jnp.tanh(run(data, s, ring, backend)))

    vmapped = {
        b: jax.vmap(run, (None, 0, 0, None))(W.data, spikes, rings, b) for b in ("pallas", "reference")
    }
    np.testing.assert_allclose(vmapped["pallas"], vmapped["reference"], rtol=1e-12, atol=1e-12)
    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
    got, expected = (grad(W.data, spikes[0], rings[0], b) for b in ("pallas", "reference"))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


def test_arrival_kernels_lower_for_gpu():
    """Each arrival kernel lowers through Pallas' Triton path for CUDA (compiling to PTX needs a GPU)."""
    W, row_ptr, lag, _ = delayed(41, 20, 30, 4, jnp.float32)
    args = structure(row_ptr, lag, W, 1)
    ring, s = jnp.zeros((4, 30), jnp.float32), jnp.zeros(20, bool)
    calls = [
        (lambda d, r: pallas.arrival_scatter(*args, d, s, r, True, interpret=False), (W.data, ring)),
        (lambda d, r: pallas.arrival_scatter(*args, d, s, r, interpret=False), (jnp.float32(0.5), ring)),
        (lambda s, c: pallas.arrival_data_grad(*args, s, c, interpret=False), (s, ring)),
        (lambda d, c: pallas.arrival_row_dot(*args, d, c, interpret=False), (W.data, ring)),
    ]
    for f, operands in calls:
        lowered = jax.jit(f).trace(*operands).lower(lowering_platforms=("cuda",)).as_text()
        assert "triton" in lowered.lower()
