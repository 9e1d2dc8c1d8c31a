"""The ``reference`` backend: the event-CSR contract in pure `jax.numpy`, correct on every platform.

Every function here touches all ``nnz`` stored synapses whatever the firing rate (O(nnz) work, gathers and
a `jax.ops.segment_sum`): it is the portable fallback and the ground truth that the compiled backends are
tested against, not a fast path.

Shared arguments: ``indptr [n_pre + 1]`` and ``indices [nnz]`` (integers) are the CSR structure, rows
presynaptic; ``data`` is ``[nnz]`` (one weight per synapse) or ``[]`` (one weight shared by all synapses).
A spike vector ``s`` is bool, integer or floating; only rows with ``s[i] != 0`` contribute.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, Shaped


def available() -> bool:
    """The reference backend runs wherever JAX does."""
    return True


def row_ids(indptr: Int[Array, " n_pre+1"], nnz: int) -> Int[Array, " nnz"]:
    """The row (presynaptic neuron) of every stored synapse, ``[nnz]``, from the row pointers."""
    n_pre = indptr.shape[0] - 1
    return jnp.repeat(jnp.arange(n_pre, dtype=indptr.dtype), jnp.diff(indptr), total_repeat_length=nnz)


def event_matvec(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    data: Float[Array, "*nnz"],
    spikes: Shaped[Array, " n_pre"],
    n_post: int,
) -> Float[Array, " n_post"]:
    """``y[j] = Σ_i s[i]·W[i, j]``, summing only rows with ``s[i] != 0`` (so ``inf`` weights of silent
    rows do not leak NaN). Result dtype: ``data``'s."""
    s = spikes[row_ids(indptr, indices.shape[0])]
    weights = jnp.broadcast_to(data, indices.shape)
    contributions = jnp.where(s != 0, weights * s.astype(data.dtype), 0)
    return jax.ops.segment_sum(contributions, indices, num_segments=n_post)


def csr_matmat(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    data: Float[Array, "*nnz"],
    x: Float[Array, "b n_pre"],
    n_post: int,
) -> Float[Array, "b n_post"]:
    """The plain product ``y = x W`` of each row of ``x`` over all rows of ``W``, without skipping
    ``x[i] == 0`` (``0·inf`` gives NaN, as in a dense product)."""

    def one(x):
        weights = jnp.broadcast_to(data, indices.shape) * x[row_ids(indptr, indices.shape[0])].astype(
            data.dtype
        )
        return jax.ops.segment_sum(weights, indices, num_segments=n_post)

    return jax.vmap(one)(x)


def csr_matvec(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    data: Float[Array, "*nnz"],
    x: Float[Array, " n_pre"],
    n_post: int,
) -> Float[Array, " n_post"]:
    """`csr_matmat` of one vector."""
    return csr_matmat(indptr, indices, data, x[None], n_post)[0]


def event_matmat(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    data: Float[Array, "*nnz"],
    spikes: Shaped[Array, "b n_pre"],
    n_post: int,
) -> Float[Array, "b n_post"]:
    """`event_matvec` of each row of ``spikes``."""
    return jax.vmap(event_matvec, in_axes=(None, None, None, 0, None))(indptr, indices, data, spikes, n_post)


def row_dot(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    data: Float[Array, "*nnz"],
    cotangent: Float[Array, " n_post"],
) -> Float[Array, " n_pre"]:
    """``(W @ ȳ)[i] = Σ_{k in row i} data[k]·ȳ[indices[k]]``: the gradient of `event_matvec` w.r.t. spikes."""
    n_pre = indptr.shape[0] - 1
    products = jnp.broadcast_to(data, indices.shape) * cotangent[indices]
    return jax.ops.segment_sum(
        products, row_ids(indptr, indices.shape[0]), num_segments=n_pre, indices_are_sorted=True
    )


def row_dot_batch(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    data: Float[Array, "*nnz"],
    cotangent: Float[Array, "b n_post"],
) -> Float[Array, "b n_pre"]:
    """`row_dot` of each row of ``cotangent``."""
    return jax.vmap(row_dot, in_axes=(None, None, None, 0))(indptr, indices, data, cotangent)


def data_grad(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    spikes: Shaped[Array, " n_pre"],
    cotangent: Float[Array, " n_post"],
    nnz: int,
) -> Float[Array, " nnz"]:
    """``g[k] = s[row(k)]·ȳ[indices[k]]``, zero on rows with ``s = 0``: the gradient w.r.t. ``data``."""
    s = spikes[row_ids(indptr, nnz)]
    return jnp.where(s != 0, s.astype(cotangent.dtype) * cotangent[indices], 0)


def data_grad_batch(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    spikes: Shaped[Array, "b n_pre"],
    cotangent: Float[Array, "b n_post"],
    nnz: int,
) -> Float[Array, " nnz"]:
    """`data_grad` summed over the batch (the weights are shared by all rows of ``spikes``)."""
    per_row = jax.vmap(data_grad, in_axes=(None, None, 0, 0, None))(indptr, indices, spikes, cotangent, nnz)
    return per_row.sum(axis=0)


def arrival_scatter(
    row_ptr: Int[Array, " n_pre+1"],
    lag: Int[Array, " R"],
    indptr: Int[Array, " R+1"],
    indices: Int[Array, " nnz"],
    step: Int[Array, ""],
    data: Float[Array, "*nnz"],
    spikes: Shaped[Array, " n_pre"],
    ring: Float[Array, "L n_post"],
    pop: bool = False,
) -> tuple[Float[Array, "L n_post"], Float[Array, " n_pop"]]:
    """``ring`` plus, for every neuron ``i`` with ``s[i] != 0`` and every row ``r`` of its rows
    ``row_ptr[i] … row_ptr[i + 1] − 1``, ``s[i]·W[r, j]`` added at ``ring[(step + lag[r]) mod L, j]``; with
    ``pop``, slot ``(step + 1) mod L`` of that sum is also returned (``[n_post]``) and cleared in the ring
    (without, an empty ``[0]``).

    ``indptr``/``indices``/``data`` are the CSR of the rows (``[R, n_post]``); ``row_ptr`` groups them by
    presynaptic neuron and ``lag`` gives each row's delay in steps. Result dtype: ``ring``'s."""
    source, target = _arrival_synapses(row_ptr, lag, indptr, indices, step, ring.shape)
    s = spikes[source]
    contributions = jnp.where(s != 0, jnp.broadcast_to(data, indices.shape) * s.astype(ring.dtype), 0)
    flat = ring.reshape(-1).at[target].add(contributions.astype(ring.dtype))
    return pop_slot(flat.reshape(ring.shape), step, pop)


def _arrival_synapses(row_ptr, lag, indptr, indices, step, ring_shape: tuple[int, int]):
    """Per stored synapse: its presynaptic neuron and its flat index ``slot·n_post + j`` in the ring, in the
    indices' dtype or, for a ring of more entries than that addresses, int64 (`_ring_offset_dtype`)."""
    length, n_post = ring_shape
    offset = _ring_offset_dtype(indices.dtype, length, n_post)
    row = row_ids(indptr, indices.shape[0])
    source = row_ids(row_ptr, indptr.shape[0] - 1)[row]
    slot = (jnp.asarray(step).astype(offset) + lag.astype(offset)) % length
    return source, slot[row] * n_post + indices.astype(offset)


def _ring_offset_dtype(index_dtype, length: int, n_post: int) -> jnp.dtype:
    """The dtype of flat offsets into a ring ``[length, n_post]``: ``index_dtype`` when it holds them all,
    else int64 (which needs x64: without it a ValueError)."""
    if length * n_post - 1 <= jnp.iinfo(index_dtype).max:
        return jnp.dtype(index_dtype)
    if not jax.config.jax_enable_x64:
        raise ValueError(
            f"the ring [L = {length}, n_post = {n_post}] has more entries than {jnp.dtype(index_dtype)} "
            "offsets address; enable int64 (`jax.config.update('jax_enable_x64', True)`) or use a shorter "
            "ring."
        )
    return jnp.dtype(jnp.int64)


def arrival_data_grad(
    row_ptr: Int[Array, " n_pre+1"],
    lag: Int[Array, " R"],
    indptr: Int[Array, " R+1"],
    indices: Int[Array, " nnz"],
    step: Int[Array, ""],
    spikes: Shaped[Array, " n_pre"],
    cotangent: Float[Array, "L n_post"],
) -> Float[Array, " nnz"]:
    """The transpose of `arrival_scatter` w.r.t. ``data`` (one weight per synapse): ``g[k] =
    s[src(k)]·ȳ[(step + lag[r(k)]) mod L, indices[k]]``, zero where ``s = 0``."""
    source, target = _arrival_synapses(row_ptr, lag, indptr, indices, step, cotangent.shape)
    s = spikes[source]
    return jnp.where(s != 0, s.astype(cotangent.dtype) * cotangent.reshape(-1)[target], 0)


def arrival_row_dot(
    row_ptr: Int[Array, " n_pre+1"],
    lag: Int[Array, " R"],
    indptr: Int[Array, " R+1"],
    indices: Int[Array, " nnz"],
    step: Int[Array, ""],
    data: Float[Array, "*nnz"],
    cotangent: Float[Array, "L n_post"],
) -> Float[Array, " n_pre"]:
    """The transpose of `arrival_scatter` w.r.t. the spikes: ``Σ_{k of neuron i} data[k]·ȳ[(step +
    lag[r(k)]) mod L, indices[k]]`` per presynaptic neuron ``i``."""
    source, target = _arrival_synapses(row_ptr, lag, indptr, indices, step, cotangent.shape)
    products = jnp.broadcast_to(data, indices.shape) * cotangent.reshape(-1)[target]
    n_pre = row_ptr.shape[0] - 1
    return jax.ops.segment_sum(products, source, num_segments=n_pre, indices_are_sorted=True)


def pop_slot(ring: Float[Array, "L n"], step: Int[Array, ""], pop: bool):
    """``(ring with slot (step + 1) mod L cleared, that slot)`` with ``pop``, else ``(ring, [0] empty)``."""
    if not pop:
        return ring, jnp.zeros((0,), ring.dtype)
    slot = (step + 1) % ring.shape[0]
    arriving = jax.lax.dynamic_index_in_dim(ring, slot, keepdims=False)
    return jax.lax.dynamic_update_index_in_dim(ring, jnp.zeros_like(arriving), slot, 0), arriving
