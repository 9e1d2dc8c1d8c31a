"""The `pallas` backend against a NumPy dense reference, run by the Pallas interpreter on CPU (compiled on a
GPU: the same file is the first check a GPU session runs).

The kernels are also lowered for CUDA (Pallas → Triton IR, no GPU needed) so a kernel using a feature
the GPU lowering lacks fails here rather than on the first GPU machine.
"""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from jax import lax

from diffbrain import ops
from diffbrain.ops import _backend
from diffbrain.ops.kernels import pallas, reference

from .conftest import random_csr, random_spikes

CASES = [
    ((1, 7, 0.5), False, jnp.float64),  # one row
    ((13, 9, 0.3), False, jnp.float32),  # small, dense-ish
    ((13, 9, 0.3), True, jnp.float64),
    ((20, 30, 0.0), False, jnp.float64),  # nnz = 0
    ((40, 25, 0.12), False, jnp.float64),  # many empty rows, n_pre > n_post
    ((40, 25, 0.12), True, jnp.float32),
    ((3, 300, 0.9), False, jnp.float32),  # rows longer than one 128-synapse chunk
    ((3, 300, 0.9), True, jnp.float64),
]
"""(n_pre, n_post, p), homogeneous, dtype: each shape once per weight kind, both dtypes in turn."""


def tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == jnp.float32 else {"rtol": 1e-12, "atol": 1e-12}


def structure(W):
    return W.indptr, W.indices, W.data


def dense(W) -> np.ndarray:
    return np.asarray(W.to_dense())


@pytest.mark.parametrize(("shape", "homogeneous", "dtype"), CASES)
def test_every_kernel_matches_dense(shape, homogeneous, dtype):
    n_pre, n_post, p = shape
    W = random_csr(n_pre, n_pre, n_post, p, dtype, homogeneous)
    A, nnz = dense(W), W.indices.shape[0]
    tol = tolerance(dtype)
    spikes = random_spikes(1, (n_pre,), "bool")
    batch = random_spikes(2, (3, n_pre), "float", dtype)
    cotangent = jnp.asarray(np.random.default_rng(3).normal(size=(2, n_post)), dtype)

    y = pallas.event_matvec(*structure(W), spikes, n_post)
    assert y.dtype == dtype and y.shape == (n_post,)
    np.testing.assert_allclose(y, np.asarray(spikes, dtype) @ A, **tol)
    np.testing.assert_allclose(
        pallas.event_matmat(*structure(W), batch, n_post), np.asarray(batch) @ A, **tol
    )
    np.testing.assert_allclose(
        pallas.csr_matvec(*structure(W), batch[0], n_post), np.asarray(batch[0]) @ A, **tol
    )

    np.testing.assert_allclose(
        pallas.row_dot(*structure(W), cotangent[0]), A @ np.asarray(cotangent[0]), **tol
    )
    np.testing.assert_allclose(
        pallas.row_dot_batch(*structure(W), cotangent), np.asarray(cotangent) @ A.T, **tol
    )

    rows = np.repeat(np.arange(n_pre), np.diff(np.asarray(W.indptr)))
    cols = np.asarray(W.indices)
    s = np.asarray(batch)
    ct = np.asarray(cotangent)
    g = pallas.data_grad(W.indptr, W.indices, spikes, cotangent[0], nnz)
    np.testing.assert_allclose(g, np.asarray(spikes, dtype)[rows] * ct[0, cols], **tol)
    g_batch = pallas.data_grad_batch(W.indptr, W.indices, batch[:2], cotangent, nnz)
    np.testing.assert_allclose(g_batch, (s[:2, rows] * ct[:, cols]).sum(axis=0), **tol)
    assert g.shape == g_batch.shape == (nnz,) and g.dtype == dtype


def test_silent_rows_never_read_their_weights():
    """Rows with s = 0 are skipped: their inf weights do not turn the output into NaN, nor the gradient."""
    W = ops.CSR.from_dense(jnp.array([[1.0, 1.0, 0.0], [2.0, 0.0, 3.0]]))
    W = W.with_data(jnp.array([jnp.inf, 1.0, 2.0, 3.0]))  # the builders refuse inf; a JAX array is not read
    y = pallas.event_matvec(*structure(W), jnp.array([False, True]), 3)
    np.testing.assert_array_equal(y, [2.0, 0.0, 3.0])
    g = pallas.data_grad(W.indptr, W.indices, jnp.array([0.0, 0.5]), jnp.array([1.0, jnp.inf, 4.0]), 4)
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.5, 2.0])


def test_multi_chunk_rows_with_a_small_chunk():
    """Other tuning: 4-lane chunks make every row span several masked chunks; 3 rows per program."""
    W = random_csr(7, 11, 17, 0.6, jnp.float64)
    A, nnz = dense(W), W.indices.shape[0]
    s = random_spikes(8, (2, 11), "float")
    ct = jnp.asarray(np.random.default_rng(9).normal(size=(2, 17)))
    np.testing.assert_allclose(
        pallas._event_matmat(*structure(W), s, 17, tuning=(4, 3, 1)), np.asarray(s) @ A
    )
    np.testing.assert_allclose(
        pallas._row_dot_batch(*structure(W), ct, tuning=(4, 3, 1)), np.asarray(ct) @ A.T
    )
    want = reference.data_grad_batch(W.indptr, W.indices, s, ct, nnz)
    np.testing.assert_allclose(
        pallas._data_grad_batch(W.indptr, W.indices, s, ct, nnz, tuning=(4, 3, 1)), want
    )


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks the CPU (interpreted) behaviour")
def test_interpret_mode_and_selection_on_cpu():
    assert pallas._interpret(None) and not pallas._interpret(False)
    assert pallas.available()
    assert _backend.resolve("pallas") == "pallas"
    assert _backend.default() != "pallas"  # on CPU the automatic choice stays cpu (or reference)
    assert pallas.INTERPRETED and "pallas" not in ops.backends()  # so benchmarks never time the interpreter


def test_public_primitive_forward_and_gradients_match_reference():
    W = random_csr(21, 30, 24, 0.2, jnp.float64)
    spikes = random_spikes(22, (30,), "float")
    cotangent = jnp.asarray(np.random.default_rng(23).normal(size=24))

    def loss(data, s, backend):
        return cotangent @ ops.event_matvec(s, W.with_data(data), backend=backend)

    for events in (spikes, spikes != 0):
        np.testing.assert_allclose(
            ops.event_matvec(events, W, backend="pallas"), ops.event_matvec(events, W, backend="reference")
        )
    got = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(W.data, spikes, "pallas")
    want = jax.grad(loss, argnums=(0, 1))(W.data, spikes, "reference")
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    # homogeneous weight: its gradient is a scalar, computed without any [nnz] array
    shared = jnp.asarray(0.3)
    got = jax.grad(loss)(shared, spikes, "pallas")
    np.testing.assert_allclose(got, jax.grad(loss)(shared, spikes, "reference"), rtol=1e-12)
    # batched spikes (vmap → event_matmat, data_grad_batch)
    batch = random_spikes(24, (3, 30), "float")
    batched = lambda d, b: jax.vmap(lambda s: loss(d, s, b))(batch).sum()
    np.testing.assert_allclose(
        jax.grad(batched)(W.data, "pallas"), jax.grad(batched)(W.data, "reference"), rtol=1e-12, atol=1e-12
    )


def test_check_grads_and_scan():
    """What the backend-parametrized suite checks, which leaves ``pallas`` out on CPU: check_grads, scan."""
    W = random_csr(41, 8, 6, 0.4)
    spikes = random_spikes(42, (8,), "float")
    jax.test_util.check_grads(
        lambda d, s: ops.event_matvec(s, W.with_data(d), backend="pallas"),
        (W.data, spikes),
        order=1,
        modes=("fwd", "rev"),
    )
    steps = random_spikes(43, (4, 8), "float")

    def run(data, backend):
        def step(v, s):
            v = 0.9 * v + ops.event_matvec(s, W.with_data(data), backend=backend)
            return v, v.sum()

        return lax.scan(step, jnp.zeros(6), steps)[1].sum()

    np.testing.assert_allclose(
        jax.grad(run)(W.data, "pallas"), jax.grad(run)(W.data, "reference"), rtol=1e-12
    )


def test_kernels_lower_for_gpu():
    """Each kernel lowers through Pallas' Triton path for CUDA (compiling to PTX needs a GPU: not here)."""
    W = random_csr(31, 50, 40, 0.1, jnp.float32)
    s, ct = jnp.zeros(50, bool), jnp.zeros(40, jnp.float32)
    shared = jnp.asarray(0.5, jnp.float32)
    nnz = W.indices.shape[0]
    calls = [
        (lambda d, s: pallas.event_matvec(W.indptr, W.indices, d, s, 40, interpret=False), (W.data, s)),
        (lambda d, s: pallas.event_matvec(W.indptr, W.indices, d, s, 40, interpret=False), (shared, s)),
        (lambda d, c: pallas.row_dot_batch(W.indptr, W.indices, d, c, interpret=False), (W.data, ct[None])),
        (
            lambda s, c: pallas.data_grad_batch(W.indptr, W.indices, s, c, nnz, interpret=False),
            (s[None], ct[None]),
        ),
    ]
    for f, args in calls:
        lowered = jax.jit(f).trace(*args).lower(lowering_platforms=("cuda",)).as_text()
        assert "triton" in lowered.lower()
