"""Derivatives of the event operators: against the dense product, by finite differences, and sparse."""

import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from diffbrain import ops
from diffbrain.ops import event
from diffbrain.ops.csr import derived
from diffbrain.ops.kernels.reference import row_ids

from .conftest import random_csr, random_spikes


def dense_grads(spikes, W, cotangent):
    """Gradients of ``cotangent · (s @ W)`` w.r.t. the dense matrix (gathered to CSR layout) and ``s``."""
    d_matrix, d_spikes = jax.grad(lambda m, s: cotangent @ (s @ m), argnums=(0, 1))(W.to_dense(), spikes)
    d_data = d_matrix[row_ids(W.indptr, W.nnz), W.indices]
    return (d_data.sum() if W.homogeneous else d_data), d_spikes


TOLERANCE = {jnp.float32: dict(rtol=1e-5, atol=1e-5), jnp.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("homogeneous", [False, True])
def test_gradients_match_dense(backend, homogeneous, dtype):
    W = random_csr(7, 40, 25, 0.12, dtype=dtype, homogeneous=homogeneous)
    spikes = random_spikes(8, (40,), "float", dtype)
    cotangent = jnp.asarray(np.random.default_rng(9).normal(size=25), dtype)
    tol = TOLERANCE[dtype]

    def loss(data, s):
        return cotangent @ ops.event_matvec(s, W.with_data(data), backend=backend)

    d_data, d_spikes = jax.jit(jax.grad(loss, argnums=(0, 1)))(W.data, spikes)
    expected_data, expected_spikes = dense_grads(spikes, W, cotangent)
    assert d_data.shape == W.data.shape and d_data.dtype == d_spikes.dtype == dtype
    np.testing.assert_allclose(d_data, expected_data, **tol)
    np.testing.assert_allclose(d_spikes, expected_spikes, **tol)

    batch = random_spikes(10, (3, 40), "float", dtype)
    per_example = jax.vmap(jax.grad(loss), (None, 0))(W.data, batch)  # one weight gradient per example
    summed = jax.grad(lambda d: jax.vmap(loss, (None, 0))(d, batch).sum())(W.data)
    for row, expected in zip(per_example, batch, strict=True):
        np.testing.assert_allclose(row, dense_grads(expected, W, cotangent)[0], **tol)
    np.testing.assert_allclose(summed, per_example.sum(0), **tol)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_check_grads_fwd_and_rev(backend, dtype):
    W = random_csr(11, 13, 9, 0.3, dtype=dtype)
    spikes = random_spikes(12, (13,), "float", dtype)
    batch = random_spikes(13, (2, 13), "float", dtype)
    x = random_spikes(14, (13,), "float", dtype) - 0.3
    for fn, vector in (
        (lambda d, s: ops.event_matvec(s, W.with_data(d), backend=backend), spikes),
        (lambda d, s: ops.event_matmat(s, W.with_data(d), backend=backend), batch),
        (lambda d, v: ops.csr_matvec(v, W.with_data(d), backend=backend), x),
        (lambda d, s: ops.event_matvec(s, W.with_data(d.sum()), backend=backend), spikes),  # homogeneous
    ):
        check_grads(fn, (W.data, vector), order=1, modes=("fwd", "rev"))


def test_jvp_linear_transpose_and_bool_spikes(backend):
    W = random_csr(15, 20, 12, 0.25)
    dense = W.to_dense()
    spikes = random_spikes(16, (20,), "bool")
    tangent = jnp.asarray(np.random.default_rng(17).normal(size=W.nnz))
    y, dy = jax.jvp(
        lambda d: ops.event_matvec(spikes, W.with_data(d), backend=backend), (W.data,), (tangent,)
    )
    np.testing.assert_allclose(y, spikes @ dense, rtol=1e-12)
    np.testing.assert_allclose(dy, spikes @ W.with_data(tangent).to_dense(), rtol=1e-12, atol=1e-12)

    x = random_spikes(18, (20,), "float")
    (transposed,) = jax.linear_transpose(lambda v: ops.csr_matvec(v, W, backend=backend), x)(jnp.ones(12))
    np.testing.assert_allclose(transposed, dense.sum(1), rtol=1e-12)

    grad_bool = jax.grad(lambda s: ops.event_matvec(s, W, backend=backend).sum(), allow_int=True)(spikes)
    assert grad_bool.dtype == jax.dtypes.float0  # events are not differentiable


def test_weight_gradient_is_zero_on_silent_rows_and_never_dense(backend):
    n = 300
    W = ops.CSR.fixed_out_degree(jax.random.key(0), n, n, 20, 1.0).with_data(jnp.ones(n * 20))
    spikes = jnp.zeros(n, bool).at[jnp.array([3, 77, 150])].set(True)

    def loss(data):
        return ops.event_matvec(spikes, W.with_data(data), backend=backend).sum()

    gradient = jax.grad(loss)(W.data)
    rows = np.asarray(row_ids(W.indptr, W.nnz))
    np.testing.assert_array_equal(gradient[~np.isin(rows, [3, 77, 150])], 0.0)
    np.testing.assert_array_equal(gradient[np.isin(rows, [3, 77, 150])], 1.0)

    jaxpr = jax.make_jaxpr(jax.grad(loss))(W.data)
    shapes = [
        var.aval.shape for eqn in jaxpr.eqns for var in (*eqn.invars, *eqn.outvars) if hasattr(var, "aval")
    ]
    assert all(np.prod(shape, dtype=np.int64) < n * n for shape in shapes), shapes

    # The compiled gradients: nothing of size n_pre × n_post; with an event kernel, nothing of size nnz
    # either except the inputs and the kernel's own output (no zero fill, scatter or add over all synapses).
    # The structure comes in as arguments (W's, already checked: `derived` skips the check of traced ones).
    def weight_vjp(indptr, indices, data, s, cotangent):
        with derived():
            product = lambda d: ops.event_matvec(s, ops.CSR(indptr, indices, d, W.shape), backend=backend)
            return jax.vjp(product, data)[1](cotangent)

    def spike_vjp(indptr, indices, data, s, cotangent):
        with derived():
            product = lambda s: ops.event_matvec(s, ops.CSR(indptr, indices, data, W.shape), backend=backend)
            return jax.vjp(product, s.astype(data.dtype))[1](cotangent)

    for vjp in (weight_vjp, spike_vjp):
        for opcode, size in compiled_ops(jax.jit(vjp), W.indptr, W.indices, W.data, spikes, jnp.ones(n)):
            assert size < n * n, (opcode, size)
            if backend != "reference":
                assert size < W.nnz or opcode in ("parameter", "custom-call"), (opcode, size)


def compiled_ops(fn, *args) -> list[tuple[str, int]]:
    """(opcode, largest array size) of every instruction in the optimised HLO of ``fn(*args)``."""
    text = fn.lower(*args).compile().as_text()
    ops_ = []
    for line in text.splitlines():
        match = re.match(r"\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.+?)\s+([a-z][\w\-]*)\(", line)
        if match:
            sizes = [
                math.prod(int(d) for d in dims.split(",") if d)
                for dims in re.findall(r"\w\[([\d,]*)\]", match[1])
            ]
            ops_.append((match[2], max(sizes, default=0)))
    assert any(opcode == "parameter" for opcode, _ in ops_), text  # the parsing found the instructions
    return ops_


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_gradients_inside_scan(backend, dtype):
    W = random_csr(19, 30, 30, 0.2, dtype=dtype)
    steps = random_spikes(20, (5, 30), "float", dtype)

    def loss(data):
        def body(v, s):
            v = 0.9 * v + ops.event_matvec(s, W.with_data(data), backend=backend)
            return v, None

        return jnp.sum(jax.lax.scan(body, jnp.zeros(30, dtype), steps)[0] ** 2)

    def dense_loss(matrix):
        v = jnp.zeros(30, dtype)
        for s in steps:
            v = 0.9 * v + s @ matrix
        return jnp.sum(v**2)

    expected = jax.grad(dense_loss)(W.to_dense())[row_ids(W.indptr, W.nnz), W.indices]
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == jnp.float32 else dict(rtol=1e-10)  # float32: 5 sums
    np.testing.assert_allclose(jax.jit(jax.grad(loss))(W.data), expected, **tol)


def test_structure_is_not_differentiable():
    W = random_csr(21, 6, 5, 0.5)
    s = jnp.ones(6)
    with pytest.raises(TypeError, match=r"W\.indices"):
        jax.jvp(
            lambda indices: event.spmv_p.bind(
                W.indptr, indices, W.data, s, n_post=5, event=True, backend="reference"
            ),
            (W.indices.astype(jnp.float64),),
            (jnp.ones(W.nnz),),
        )
    float_indices = eqx.tree_at(lambda W: W.indices, W, W.indices.astype(jnp.float64))
    with pytest.raises(ValueError, match=r"W\.indices"):
        ops.event_matvec(s, float_indices)
    # jax.grad(allow_int=True) gives the structure float0 (no) gradients, as for any integer input
    grads = jax.grad(lambda W: ops.event_matvec(s, W, backend="reference").sum(), allow_int=True)(W)
    assert grads.indices.dtype == grads.indptr.dtype == jax.dtypes.float0
