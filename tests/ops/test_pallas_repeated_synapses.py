"""A row naming one column twice (accepted by `ops.CSR(...)`) is summed by the ``pallas`` backend as by
the others: interpret mode (every CPU run with ``backend="pallas"``) kept only one of the repeats."""

import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import ops

# row 0 -> column 1 three times (one chunk), row 1 -> columns 0, 2, 0; row 2 has no synapse
INDPTR = [0, 3, 6, 6]
INDICES = [1, 1, 1, 0, 2, 0]
WEIGHTS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
DENSE = np.array([[0.0, 7.0, 0.0], [40.0, 0.0, 16.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("homogeneous", [False, True])
def test_pallas_sums_repeated_synapses_like_the_reference(homogeneous):
    data = jnp.asarray(0.5 if homogeneous else WEIGHTS, jnp.float32)
    W = ops.CSR(jnp.asarray(INDPTR), jnp.asarray(INDICES), data, (3, 3))
    dense = np.asarray(W.to_dense())
    expected = (np.array([[0, 3, 0], [2, 0, 1], [0, 0, 0]]) * 0.5) if homogeneous else DENSE
    np.testing.assert_array_equal(dense, expected)
    spikes = jnp.array([True, True, False])
    x = jnp.array([1.0, -2.0, 3.0], jnp.float32)
    batch = jnp.array([[1.0, 0.0, 0.0], [0.5, 1.0, 1.0]], jnp.float32)
    for backend in ("reference", "pallas"):
        np.testing.assert_allclose(ops.event_matvec(spikes, W, backend=backend), [1, 1, 0] @ dense)
        np.testing.assert_allclose(ops.csr_matvec(x, W, backend=backend), np.asarray(x) @ dense)
        np.testing.assert_allclose(ops.event_matmat(batch, W, backend=backend), np.asarray(batch) @ dense)


def test_pallas_arrival_ring_sums_repeated_synapses():
    W = ops.CSR(jnp.asarray(INDPTR), jnp.asarray(INDICES), jnp.asarray(WEIGHTS, jnp.float32), (3, 3))
    row_ptr, lag = jnp.array([0, 1, 2, 3]), jnp.array([1, 2, 1])  # one delayed row per neuron
    ring = jnp.zeros((3, 3), jnp.float32)
    spikes = jnp.array([1.0, 1.0, 1.0], jnp.float32)
    out = {
        backend: np.asarray(ops.arrival_scatter(spikes, W, row_ptr, lag, ring, 0, backend=backend))
        for backend in ("reference", "pallas")
    }
    np.testing.assert_array_equal(out["reference"][1], DENSE[0])  # row 0 arrives after 1 step
    np.testing.assert_array_equal(out["pallas"], out["reference"])
