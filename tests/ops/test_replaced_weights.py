"""Weights put into a CSR past its checks (`eqx.tree_at`) are checked again by every operator: the cpu and
pallas kernels read ``W.data`` unchecked, so a short one was read past its end (review s22 #1: garbage like
-2.2e38 or NaN, varying between runs, with no error)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from diffbrain import ops
from diffbrain.ops import _backend

W = ops.CSR.fixed_in_degree(jax.random.key(0), 6, 5, k=2, weight=jnp.ones(10, jnp.float32))  # nnz = 10
SHARED = ops.CSR.fixed_in_degree(jax.random.key(0), 6, 5, k=2, weight=jnp.float32(0.5))

BAD_WEIGHTS = {
    "short": (W, jnp.ones(3, jnp.float32), r"float32\[3\]"),  # another matrix's weights
    "shared weight as [1]": (
        SHARED,
        jnp.array([0.7], jnp.float32),
        r"float32\[1\]",
    ),  # taken as per-synapse weights
    "extra axis": (W, jnp.ones((10, 1), jnp.float32), r"float32\[10, 1\]"),
    "integer": (W, jnp.arange(10, dtype=jnp.int32), r"int32\[10\]"),
}


def operators(chosen):
    """Every public operator that reaches a kernel, called on spikes of a 6 × 5 matrix."""
    spikes = jnp.ones(6, bool)
    row_ptr, lag = jnp.arange(7, dtype=W.indices.dtype), jnp.ones(6, jnp.int32)
    return {
        "event_matvec": lambda W: ops.event_matvec(spikes, W, backend=chosen),
        "event_matmat": lambda W: ops.event_matmat(jnp.ones((2, 6), bool), W, backend=chosen),
        "csr_matvec": lambda W: ops.csr_matvec(jnp.ones(6, W.data.dtype), W, backend=chosen),
        "arrival_scatter": lambda W: ops.arrival_scatter(
            spikes, W, row_ptr, lag, jnp.zeros((2, 5), W.data.dtype), 0, backend=chosen
        ),
    }


@pytest.mark.parametrize("case", BAD_WEIGHTS)
@pytest.mark.parametrize("operator", ["event_matvec", "event_matmat", "csr_matvec", "arrival_scatter"])
@pytest.mark.parametrize("chosen", [None, "reference", "cpu", "pallas"])
def test_weights_of_the_wrong_shape_or_dtype_are_refused(chosen, operator, case):
    if chosen is not None and _backend.probe(chosen)[0] is None:
        pytest.skip(f"the {chosen} backend is unavailable here")
    matrix, data, got = BAD_WEIGHTS[case]
    bad = eqx.tree_at(lambda w: w.data, matrix, data)
    product = operators(chosen)[operator]
    message = rf"`W\.data` must be floating with shape \(10,\) .* or \(\) .*, got {got}.*`W\.with_data"
    with pytest.raises(ValueError, match=message):
        product(bad)
    with pytest.raises(ValueError, match=message):  # a check of shapes: raised when traced, too
        jax.jit(product)(bad)


def test_weights_of_the_right_shape_still_pass_through_tree_at():
    """Per-synapse ``[nnz]`` and shared ``[]`` weights are what the kernels take, however they were set."""
    spikes = jnp.zeros(6, bool).at[2].set(True)
    per_synapse = eqx.tree_at(lambda w: w.data, W, jnp.full(10, 2.0, jnp.float32))
    shared = eqx.tree_at(lambda w: w.data, SHARED, jnp.asarray(0.7, jnp.float32))
    for matrix in (per_synapse, shared):
        assert jnp.allclose(ops.event_matvec(spikes, matrix), matrix.to_dense()[2])
