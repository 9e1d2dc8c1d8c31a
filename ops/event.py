"""Event-driven products of spike vectors with a CSR weight matrix, as JAX primitives with their own autodiff.

Three primitives, each linear in its two last operands (the weights and a vector), close the algebra of
derivatives, so every JAX transformation stays event-driven and sparse:

* ``csr_spmv``: ``y = sᵀW`` — `event_matvec`, `event_matmat`, `csr_matvec`;
* ``csr_row_dot``: ``r = W ȳ`` — the gradient w.r.t. the spikes;
* ``csr_data_grad``: ``g[k] = s[row(k)]·ȳ[col(k)]`` — the gradient w.r.t. the weights, in CSR layout
  (``(nnz,)``), computed on spiking rows only; for one shared weight its sum ``()``, computed as
  ``ȳ·(sᵀ1)`` by the event kernel without any ``[nnz]`` array.

Each transposes into the others (e.g. ``csr_spmv`` w.r.t. ``s`` is ``csr_row_dot``, w.r.t. ``data`` is
``csr_data_grad``), and their JVPs follow from bilinearity. ``vmap`` over the vector operand adds a batch
axis that the backends compute in one call (``event_matmat``); ``vmap`` over the weights or the structure
falls back to a sequential `lax.map`. The structure arrays ``indptr``/``indices`` are not differentiable.
Each primitive lowers through the backend chosen at call time (see `diffbrain.ops._backend`).

The arrival ring (`arrival_scatter`) is a fourth primitive, ``arrival_scatter``, with the same design: its
tangent is itself, and its transposes ``arrival_data_grad`` (the weights) and ``arrival_row_dot`` (the
spikes) are primitives, bilinear and transposing into one another and the ring.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir
from jaxtyping import Array, Bool, Float, Int, Shaped

from . import _backend, _carried
from .csr import CSR, _concrete, equinox_on_error
from .kernels import reference

__all__ = ["arrival_scatter", "csr_matvec", "event_matmat", "event_matvec"]

spmv_p = Primitive("csr_spmv")
row_dot_p = Primitive("csr_row_dot")
data_grad_p = Primitive("csr_data_grad")


def _flat_batch(vector: Array) -> Array:
    """``[*batch, n]`` → ``[prod(batch), n]`` for the backends' batched kernels."""
    return vector.reshape(math.prod(vector.shape[:-1]), vector.shape[-1])


# --- forward computations: the backend's kernels, batch axes flattened -------------------------------------


def _spmv(indptr, indices, data, x, *, n_post: int, event: bool, backend: str):
    kernels = _backend.kernels(backend)
    if x.ndim == 1:
        return (kernels.event_matvec if event else kernels.csr_matvec)(indptr, indices, data, x, n_post)
    y = (kernels.event_matmat if event else kernels.csr_matmat)(indptr, indices, data, _flat_batch(x), n_post)
    return y.reshape(*x.shape[:-1], n_post)


def _row_dot(indptr, indices, data, cotangent, *, backend: str):
    kernels = _backend.kernels(backend)
    if cotangent.ndim == 1:
        return kernels.row_dot(indptr, indices, data, cotangent)
    r = kernels.row_dot_batch(indptr, indices, data, _flat_batch(cotangent))
    return r.reshape(*cotangent.shape[:-1], indptr.shape[0] - 1)


def _data_grad(indptr, indices, spikes, cotangent, *, data_shape: tuple[int, ...], backend: str):
    if not data_shape:  # one shared weight: Σ_k s[row k]·ȳ[col k] = ȳ · (sᵀ·1), event-driven, no [nnz] array
        ones = jnp.ones((), cotangent.dtype)
        n_post = cotangent.shape[-1]
        return jnp.sum(
            cotangent * _spmv(indptr, indices, ones, spikes, n_post=n_post, event=True, backend=backend)
        )
    kernels = _backend.kernels(backend)
    nnz = indices.shape[0]
    if spikes.ndim == 1:
        return kernels.data_grad(indptr, indices, spikes, cotangent, nnz)
    return kernels.data_grad_batch(indptr, indices, _flat_batch(spikes), _flat_batch(cotangent), nnz)


def _spmv_abstract(indptr, indices, data, x, *, n_post, event, backend):
    return jax.core.ShapedArray((*x.shape[:-1], n_post), data.dtype)


def _row_dot_abstract(indptr, indices, data, cotangent, *, backend):
    return jax.core.ShapedArray((*cotangent.shape[:-1], indptr.shape[0] - 1), data.dtype)


def _data_grad_abstract(indptr, indices, spikes, cotangent, *, data_shape, backend):
    return jax.core.ShapedArray(data_shape, cotangent.dtype)


# --- autodiff: all three are bilinear in (operand 2, operand 3) --------------------------------------------


def _is_zero(tangent) -> bool:
    return type(tangent) is ad.Zero or tangent.dtype == jax.dtypes.float0


def _bilinear_tangent(primitive: Primitive, primals, tangents, **params) -> Array | None:
    """The product rule's tangent ``f(da, b) + f(a, db)`` of ``f(structure, a, b)``, None when both are zero;
    the structure operands must have no tangent."""
    for name, tangent in zip(("indptr", "indices"), tangents[:2], strict=True):
        if not _is_zero(tangent):
            raise TypeError(
                f"`W.{name}` is not differentiable: it is the CSR structure (integer indices). "
                "Differentiate w.r.t. `W.data` (the weights) or the spikes instead."
            )
    structure, (a, b), (da, db) = primals[:2], primals[2:], tangents[2:]
    terms = [primitive.bind(*structure, da, b, **params)] if not _is_zero(da) else []
    terms += [primitive.bind(*structure, a, db, **params)] if not _is_zero(db) else []
    return sum(terms[1:], terms[0]) if terms else None


def _zero_like(x) -> ad.Zero:
    return ad.Zero(jax.typeof(x).to_tangent_aval())


def _bilinear_jvp(primitive: Primitive) -> Callable:
    """The product rule: d f(a, b) = f(da, b) + f(a, db)."""

    def jvp(primals, tangents, **params):
        tangent = _bilinear_tangent(primitive, primals, tangents, **params)  # checks the structure first
        out = primitive.bind(*primals, **params)
        return out, _zero_like(out) if tangent is None else tangent

    return jvp


def _check_structure_defined(indptr, indices) -> None:
    if ad.is_undefined_primal(indptr) or ad.is_undefined_primal(indices):
        raise TypeError("`W.indptr` and `W.indices` are the CSR structure and cannot be transposed against.")


def _spmv_transpose(ct, indptr, indices, data, x, *, n_post, event, backend):
    _check_structure_defined(indptr, indices)
    if ad.is_undefined_primal(x):
        ct_x = None if type(ct) is ad.Zero else row_dot_p.bind(indptr, indices, data, ct, backend=backend)
        return None, None, None, ct_x
    data_shape = data.aval.shape
    ct_data = None if type(ct) is ad.Zero else _bind_data_grad(indptr, indices, x, ct, data_shape, backend)
    return None, None, ct_data, None


def _row_dot_transpose(ct, indptr, indices, data, cotangent, *, backend):
    _check_structure_defined(indptr, indices)
    if type(ct) is ad.Zero:
        return None, None, None, None
    if ad.is_undefined_primal(cotangent):
        n_post = cotangent.aval.shape[-1]
        return None, None, None, _bind_spmv(indptr, indices, data, ct, n_post, False, backend)
    return None, None, _bind_data_grad(indptr, indices, ct, cotangent, data.aval.shape, backend), None


def _data_grad_transpose(ct, indptr, indices, spikes, cotangent, *, data_shape, backend):
    _check_structure_defined(indptr, indices)
    if type(ct) is ad.Zero:
        return None, None, None, None
    if ad.is_undefined_primal(spikes):
        return None, None, row_dot_p.bind(indptr, indices, ct, cotangent, backend=backend), None
    n_post = cotangent.aval.shape[-1]
    return None, None, None, _bind_spmv(indptr, indices, ct, spikes, n_post, True, backend)


# --- batching ----------------------------------------------------------------------------------------------


def _batch_by_map(primitive: Primitive, args, dims, **params):
    """Any batching: one primitive call per batch element, in sequence (`lax.map`)."""
    batched = [jnp.moveaxis(arg, dim, 0) for arg, dim in zip(args, dims, strict=True) if dim is not None]

    def one(slices):
        slices = iter(slices)
        out = primitive.bind(
            *(next(slices) if dim is not None else a for a, dim in zip(args, dims, strict=True)), **params
        )
        return tuple(out) if primitive.multiple_results else out

    out = lax.map(one, batched)
    return (list(out), [0] * len(out)) if primitive.multiple_results else (out, 0)


def _vector_batching(primitive: Primitive, summed: bool) -> Callable:
    """Batch the vector operands natively (a leading batch axis), anything else by `_batch_by_map`.

    ``summed``: the primitive sums over its batch axes (the weight gradient), so a vmapped call needs one
    result per batch element and is mapped instead.
    """

    def rule(args, dims, **params):
        if summed or dims[0] is not None or dims[1] is not None or dims[2] is not None:
            return _batch_by_map(primitive, args, dims, **params)
        return primitive.bind(*args[:3], jnp.moveaxis(args[3], dims[3], 0), **params), 0

    return rule


def _spmv_carried_abstract(acc, *operands, **params):
    return [_spmv_abstract(*operands, **params), acc]


def _spmv_link_abstract(d_acc, indptr, indices, x, *, n_post, event, backend):
    return [jax.core.ShapedArray((*x.shape[:-1], n_post), d_acc.dtype), d_acc]


def _arrival_carried_abstract(acc, *operands, **params):
    return [*_arrival_abstract(*operands, **params), acc]


def _arrival_link_abstract(d_acc, *operands, backend):
    return [operands[-1], d_acc]


for _primitive, _impl, _abstract, _transpose, _summed, _params in (
    (spmv_p, _spmv, _spmv_abstract, _spmv_transpose, False, ("n_post", "event", "backend")),
    (row_dot_p, _row_dot, _row_dot_abstract, _row_dot_transpose, False, ("backend",)),
    (data_grad_p, _data_grad, _data_grad_abstract, _data_grad_transpose, True, ("data_shape", "backend")),
):
    # eager calls run one compiled computation per shape, not the backend's operations one by one
    _primitive.def_impl(jax.jit(_impl, static_argnames=_params))
    _primitive.def_abstract_eval(_abstract)
    mlir.register_lowering(_primitive, mlir.lower_fun(_impl, multiple_results=False))
    ad.primitive_jvps[_primitive] = _bilinear_jvp(_primitive)
    ad.primitive_transposes[_primitive] = _transpose
    batching.primitive_batchers[_primitive] = _vector_batching(_primitive, _summed)


def _bind_spmv(indptr, indices, data, x, n_post: int, event: bool, backend: str):
    return spmv_p.bind(indptr, indices, data, x, n_post=n_post, event=event, backend=backend)


def _bind_data_grad(indptr, indices, spikes, cotangent, data_shape, backend: str):
    return data_grad_p.bind(indptr, indices, spikes, cotangent, data_shape=tuple(data_shape), backend=backend)


# --- public API --------------------------------------------------------------------------------------------


def _check_csr(W: CSR) -> None:
    """``W``'s type and the dtypes and shape of its arrays, checked again at every operator: `eqx.tree_at`
    replaces a CSR's arrays without `CSR`'s validation, and the cpu and pallas kernels read ``W.data``
    unchecked (a short one past its end)."""
    if not isinstance(W, CSR):
        raise TypeError(f"`W` must be a diffbrain.ops.CSR, got {type(W).__name__}.")
    for field in ("indptr", "indices"):
        if not jnp.issubdtype(getattr(W, field).dtype, jnp.integer):
            raise ValueError(f"`W.{field}` must be integer (the CSR structure is not differentiable).")
    shape, dtype = getattr(W.data, "shape", None), getattr(W.data, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating) or shape not in ((), (W.nnz,)):
        got = type(W.data).__name__ if dtype is None else f"{dtype}{list(shape)}"
        raise ValueError(
            f"`W.data` must be floating with shape ({W.nnz},) (one weight per synapse, nnz = {W.nnz}) or () "
            f"(one shared weight), got {got}; set the weights with `W.with_data(data)`, which checks them "
            "(`eqx.tree_at` does not)."
        )


def _checked_vector(x, W: CSR, name: str, ndim: int, events: bool) -> Array:
    """``x`` as a JAX array after checking its type, rank, length and dtype against ``W`` (and ``W``,
    `_check_csr`)."""
    _check_csr(W)
    x = jnp.asarray(x)
    if x.ndim != ndim or x.shape[-1] != W.shape[0]:
        want = "[n_pre]" if ndim == 1 else "[batch, n_pre]"
        raise ValueError(f"`{name}` must have shape {want} with n_pre = {W.shape[0]}, got shape {x.shape}.")
    floating = jnp.issubdtype(x.dtype, jnp.floating)
    if events and not (floating or x.dtype == jnp.bool_ or jnp.issubdtype(x.dtype, jnp.integer)):
        raise ValueError(f"`{name}` must be bool, integer or floating, got dtype {x.dtype}.")
    if not events and not floating:
        raise ValueError(f"`{name}` must be floating, got dtype {x.dtype}; for spikes use `event_matvec`.")
    if floating and x.dtype != W.data.dtype:
        raise ValueError(
            f"`{name}` has dtype {x.dtype} but `W.data` has dtype {W.data.dtype}; cast one of them, e.g. "
            f"`{name}.astype(W.data.dtype)`."
        )
    # the kernels take bool or floating vectors: spike counts become weights' floats (not differentiable)
    return x.astype(W.data.dtype) if jnp.issubdtype(x.dtype, jnp.integer) else x


def _product(x: Array, W: CSR, event: bool, backend: str | None) -> Array:
    """``xᵀW`` for the public products (``x`` already checked); in its carried form when ``W.data`` is one of
    the weights `event_scan` carries."""
    resolved = _backend.resolve(backend, W.data.dtype)
    carried = _carried.find(W.data)
    if carried is None:
        return _bind_spmv(W.indptr, W.indices, W.data, x, W.shape[1], event, resolved)
    context, slot = carried
    y, context.latest[slot] = spmv_carried_p.bind(
        context.latest[slot], W.indptr, W.indices, context.values[slot], x,
        n_post=W.shape[1], event=event, backend=resolved,
    )  # fmt: skip
    return y


def event_matvec(
    spikes: Bool[Array, " n_pre"] | Shaped[Array, " n_pre"], W: CSR, *, backend: str | None = None
) -> Float[Array, " n_post"]:
    """Synaptic input from one step of spikes: ``y[j] = Σ_i s[i]·W[i, j]``, touching only rows with s ≠ 0.

    Args:
        spikes: ``[n_pre]``, bool (events), integer (spike counts) or floating (surrogate spikes, same
            dtype as ``W.data``; differentiable).
        W: the weights, rows presynaptic, shape ``(n_pre, n_post)``.
        backend: ``"reference"``, ``"cpu"`` or ``"pallas"``; None picks the fastest available.

    Returns:
        ``[n_post]`` in ``W.data``'s dtype and units (e.g. nS for conductance weights).

    The gradient w.r.t. ``W.data`` is computed on spiking rows only and has ``W.data``'s shape; the
    gradient w.r.t. float ``spikes`` is the row-dot ``W @ ȳ``. Under `jax.vmap` over ``spikes`` it calls
    the backend's batched kernel (`event_matmat`). A non-finite cotangent ``ȳ`` on a column no spike
    reaches stays out of a per-synapse gradient (its synapses are not read), but makes a shared weight's
    gradient ``Σ_j ȳ_j·(sᵀ·structure)_j`` NaN (``inf·0``), as in dense math.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from diffbrain import ops
        >>> W = ops.CSR.fixed_prob(jax.random.key(0), 100, 50, p=0.1, weight=0.5)
        >>> spikes = jnp.zeros(100, bool).at[3].set(True)
        >>> bool(jnp.allclose(ops.event_matvec(spikes, W), W.to_dense()[3]))
        True
    """
    return _product(_checked_vector(spikes, W, "spikes", ndim=1, events=True), W, True, backend)


def event_matmat(
    spikes: Shaped[Array, "batch n_pre"], W: CSR, *, backend: str | None = None
) -> Float[Array, "batch n_post"]:
    """`event_matvec` of each row of ``spikes`` (``[batch, n_pre]``) in one call → ``[batch, n_post]``."""
    return _product(_checked_vector(spikes, W, "spikes", ndim=2, events=True), W, True, backend)


def csr_matvec(x: Float[Array, " n_pre"], W: CSR, *, backend: str | None = None) -> Float[Array, " n_post"]:
    """The plain product ``y = xᵀW`` of a dense float vector ``x`` (``[n_pre]``, ``W.data``'s dtype) over
    all rows, without testing ``x[i] != 0``; differentiable like `event_matvec`."""
    return _product(_checked_vector(x, W, "x", ndim=1, events=False), W, False, backend)


# --- the arrival ring: delayed synapses scattered into a ring of future inputs --------------------------


arrival_p = Primitive("arrival_scatter")
arrival_p.multiple_results = True


def _arrival_impl(row_ptr, lag, indptr, indices, step, data, spikes, ring, *, pop: bool, backend: str):
    kernels = _backend.kernels(backend)
    return list(kernels.arrival_scatter(row_ptr, lag, indptr, indices, step, data, spikes, ring, pop))


def _arrival_abstract(row_ptr, lag, indptr, indices, step, data, spikes, ring, *, pop, backend):
    arriving = jax.core.ShapedArray((ring.shape[1] if pop else 0,), ring.dtype)
    return [jax.core.ShapedArray(ring.shape, ring.dtype), arriving]


def _ring_tangent(primals, tangents, backend: str) -> Array | None:
    """The ring's tangent before the pop, ``S(ddata, s) + S(data, ds) + dring``, None when it is zero.

    It is written as chained calls of the primitive itself (``pop=False``), linear in the tangents, so
    reverse mode saves only the operands ``spikes [n_pre]``, ``step`` and the loop-invariant ``data`` and
    structure (O(n) per step of a scan, not the per-synapse arrays), and its transpose
    (`_arrival_transpose`) recomputes the rest."""
    for name, tangent in zip(("row_ptr", "lag", "W.indptr", "W.indices", "step"), tangents[:5], strict=True):
        if not _is_zero(tangent):
            raise TypeError(f"`{name}` is an integer index array and not differentiable.")
    structure, (data, spikes, ring) = primals[:5], primals[5:]
    d_data, d_spikes, d_ring = tangents[5:]
    if _is_zero(d_data) and _is_zero(d_spikes) and _is_zero(d_ring):
        return None
    tangent = jnp.zeros_like(ring) if _is_zero(d_ring) else d_ring
    if not _is_zero(d_spikes):
        tangent = _scatter(structure, data, d_spikes, tangent, backend)
    if not _is_zero(d_data):
        tangent = _scatter(structure, d_data, spikes, tangent, backend)
    return tangent


def _arrival_jvp(primals, tangents, *, pop: bool, backend: str):
    """``ring + S(data, s)`` is affine in ``ring`` and bilinear in ``(data, s)``: the tangent is
    ``S(ddata, s) + S(data, ds) + dring`` (`_ring_tangent`), popped like the primal."""
    out = arrival_p.bind(*primals, pop=pop, backend=backend)
    tangent = _ring_tangent(primals, tangents, backend)
    if tangent is None:
        return out, [_zero_like(x) for x in out]
    return out, list(reference.pop_slot(tangent, primals[4], pop))


def _arrival_transpose(cts, row_ptr, lag, indptr, indices, step, data, spikes, ring, *, pop, backend):
    """The cotangent ``ȳ`` of the ring goes to ``ring`` unchanged, to the weights as
    ``g[k] = s[src(k)]·ȳ[slot(r(k)), idx(k)]`` (event-driven on ``cpu`` and ``pallas``; for one shared weight
    ``Σ ȳ ⊙ S(1, s)``, the scatter itself) and to the spikes as a per-neuron row dot."""
    structure = (row_ptr, lag, indptr, indices, step)
    if pop or any(ad.is_undefined_primal(x) for x in structure):
        raise TypeError("arrival_scatter is transposed only in its tangent form (no pop, structure known).")
    if ad.is_undefined_primal(data) and ad.is_undefined_primal(spikes):
        raise TypeError("arrival_scatter is bilinear in (W.data, spikes): it is linear in one of them only.")
    ct = cts[0]
    if type(ct) is ad.Zero:
        return [None] * 8
    ct_data = ct_spikes = None
    if ad.is_undefined_primal(data):
        ct_data = _weight_cotangent(structure, spikes, ct, data.aval.shape, backend)
    if ad.is_undefined_primal(spikes):
        ct_spikes = arrival_row_dot_p.bind(*structure, data, ct, backend=backend).astype(spikes.aval.dtype)
    return [None] * 5 + [ct_data, ct_spikes, ct if ad.is_undefined_primal(ring) else None]


arrival_p.def_impl(jax.jit(_arrival_impl, static_argnames=("pop", "backend")))
arrival_p.def_abstract_eval(_arrival_abstract)
mlir.register_lowering(arrival_p, mlir.lower_fun(_arrival_impl, multiple_results=True))
ad.primitive_jvps[arrival_p] = _arrival_jvp
ad.primitive_transposes[arrival_p] = _arrival_transpose
# any batching: one call per batch element, in sequence, as the kernel takes one ring
batching.primitive_batchers[arrival_p] = functools.partial(_batch_by_map, arrival_p)

# The transposes of the ring w.r.t. the weights (``[nnz]``) and the spikes (``[n_pre]``), through the
# backend's kernels. Each is bilinear in its last two operands, and each transposes into the ring
# or the other, so derivatives of any order stay within these three primitives.
arrival_data_grad_p = Primitive("arrival_data_grad")  # (structure…, spikes, ring cotangent) → [nnz]
arrival_row_dot_p = Primitive("arrival_row_dot")  # (structure…, data, ring cotangent) → [n_pre]


def _scatter(structure, data, spikes, ring, backend: str):
    """The ring plus ``S(data, spikes)``, without pop (the tangent form)."""
    return arrival_p.bind(*structure, data, spikes, ring, pop=False, backend=backend)[0]


def _weight_cotangent(structure, spikes, ct, data_shape: tuple[int, ...], backend: str):
    """The cotangent of ``W.data`` from the ring's ``ct``; for one shared weight ``Σ ct ⊙ S(1, s)``, the
    scatter itself (event-driven on cpu and pallas, no ``[nnz]`` array)."""
    if data_shape:
        return arrival_data_grad_p.bind(*structure, spikes, ct, backend=backend)
    return jnp.sum(ct * _scatter(structure, jnp.ones((), ct.dtype), spikes, jnp.zeros_like(ct), backend))


def _scatter_linear(structure, data, spikes, ring_aval, backend: str):
    """``S(data, s)`` into an empty ring: the transpose of both row dot and weight cotangent w.r.t. the
    ring's cotangent."""
    return _scatter(structure, data, spikes, jnp.zeros(ring_aval.shape, ring_aval.dtype), backend)


def _data_grad_transpose(ct, *operands, backend):
    structure, spikes, ring_ct = operands[:5], operands[5], operands[6]
    if type(ct) is ad.Zero:
        return [None] * 7
    if ad.is_undefined_primal(spikes):
        ct_spikes = arrival_row_dot_p.bind(*structure, ct, ring_ct, backend=backend)
        return [None] * 5 + [ct_spikes.astype(spikes.aval.dtype), None]
    return [None] * 6 + [_scatter_linear(structure, ct, spikes, ring_ct.aval, backend)]


def _row_dot_transpose(ct, *operands, backend):
    structure, data, ring_ct = operands[:5], operands[5], operands[6]
    if type(ct) is ad.Zero:
        return [None] * 7
    if ad.is_undefined_primal(data):
        return [None] * 5 + [_weight_cotangent(structure, ct, ring_ct, data.aval.shape, backend), None]
    return [None] * 6 + [_scatter_linear(structure, data, ct, ring_ct.aval, backend)]


for _primitive, _name, _shape, _transpose in (
    (arrival_data_grad_p, "arrival_data_grad", lambda indices, row_ptr: indices.shape, _data_grad_transpose),
    (
        arrival_row_dot_p,
        "arrival_row_dot",
        lambda indices, row_ptr: (row_ptr.shape[0] - 1,),
        _row_dot_transpose,
    ),
):

    def _transpose_impl(*args, backend: str, name: str = _name):
        return getattr(_backend.kernels(backend), name)(*args)

    def _transpose_abstract(*args, backend, shape=_shape):
        return jax.core.ShapedArray(shape(args[3], args[0]), args[6].dtype)

    def _transpose_jvp(primals, tangents, *, backend, primitive: Primitive = _primitive):
        """Bilinear in the last two operands (the structure and step are integers, without tangents)."""
        structure, (a, b), (da, db) = primals[:5], primals[5:], tangents[5:]
        out = primitive.bind(*primals, backend=backend)
        terms = [primitive.bind(*structure, da, b, backend=backend)] if not _is_zero(da) else []
        terms += [primitive.bind(*structure, a, db, backend=backend)] if not _is_zero(db) else []
        if not terms:
            return out, ad.Zero(jax.typeof(out).to_tangent_aval())
        return out, sum(terms[1:], terms[0])

    _primitive.def_impl(jax.jit(_transpose_impl, static_argnames=("backend",)))
    _primitive.def_abstract_eval(_transpose_abstract)
    mlir.register_lowering(_primitive, mlir.lower_fun(_transpose_impl, multiple_results=False))
    ad.primitive_jvps[_primitive] = _transpose_jvp
    ad.primitive_transposes[_primitive] = _transpose
    batching.primitive_batchers[_primitive] = functools.partial(_batch_by_map, _primitive)


# --- weight gradients added to a running total (event_scan's reverse pass) ------------------------------

data_grad_add_p = Primitive("csr_data_grad_add")  # (total, indptr, indices, spikes, cotangent) → [nnz]
arrival_data_grad_add_p = Primitive("arrival_data_grad_add")  # (total, ring structure…, spikes, ring ct)


def _define_running_total(primitive: Primitive, kernel: str, gradient: Callable, bind_gradient: Callable):
    """``total + gradient(spikes, cotangent)``, by the backend's in-place ``kernel`` (the result aliases
    ``total``) where it has one. Affine in ``total`` and bilinear in (spikes, cotangent), its tangent is
    written with ``bind_gradient`` (the weight-gradient primitive), so it needs no transpose of its own."""

    def impl(total, *operands, backend: str):
        kernels = _backend.kernels(backend)
        if hasattr(kernels, kernel):
            return getattr(kernels, kernel)(total, *operands)
        return total + gradient(kernels, *operands)

    def jvp(primals, tangents, *, backend):
        total, structure, (spikes, cotangent) = primals[0], primals[1:-2], primals[-2:]
        d_total, (d_spikes, d_cotangent) = tangents[0], tangents[-2:]
        out = primitive.bind(*primals, backend=backend)
        terms = [] if _is_zero(d_total) else [d_total]
        if not _is_zero(d_spikes):
            terms.append(bind_gradient(structure, d_spikes, cotangent, total.shape, backend))
        if not _is_zero(d_cotangent):
            terms.append(bind_gradient(structure, spikes, d_cotangent, total.shape, backend))
        if not terms:
            return out, ad.Zero(jax.typeof(out).to_tangent_aval())
        return out, sum(terms[1:], terms[0])

    primitive.def_impl(jax.jit(impl, static_argnames=("backend",)))
    primitive.def_abstract_eval(lambda total, *_, backend: jax.core.ShapedArray(total.shape, total.dtype))
    mlir.register_lowering(primitive, mlir.lower_fun(impl, multiple_results=False))
    ad.primitive_jvps[primitive] = jvp
    batching.primitive_batchers[primitive] = functools.partial(_batch_by_map, primitive)


_define_running_total(
    data_grad_add_p,
    "data_grad_add",
    lambda kernels, indptr, indices, spikes, ct: kernels.data_grad_batch(
        indptr, indices, _flat_batch(spikes), _flat_batch(ct), indices.shape[0]
    ),
    lambda structure, spikes, ct, shape, backend: _bind_data_grad(*structure, spikes, ct, shape, backend),
)
_define_running_total(
    arrival_data_grad_add_p,
    "arrival_data_grad_add",
    lambda kernels, *operands: kernels.arrival_data_grad(*operands),
    lambda structure, spikes, ct, shape, backend: arrival_data_grad_p.bind(
        *structure, spikes, ct, backend=backend
    ),
)


running_total_zeros_p = Primitive("running_total_zeros")  # () → zeros(shape, dtype)


def running_total_zeros(like: Array) -> Array:
    """Zeros shaped as ``like``, where `event_scan`'s running weight gradients start. On CPU a large one is
    zeroed by the compiled kernel (`diffbrain.ops.kernels.cpu.zeros`, half the time of XLA's fill at
    4·10⁷ float32), elsewhere (or without the kernel) by XLA."""
    return running_total_zeros_p.bind(shape=tuple(like.shape), dtype=jnp.dtype(like.dtype))


def _xla_zeros(*, shape, dtype):
    return jnp.zeros(shape, dtype)


def _cpu_zeros(*, shape, dtype):
    from .kernels import cpu  # importing it builds nothing: `probe` does, so only for a large total

    if math.prod(shape) * dtype.itemsize < cpu.KERNEL_ZEROS_BYTES:
        return _xla_zeros(shape=shape, dtype=dtype)
    kernels, _ = _backend.probe("cpu")
    return _xla_zeros(shape=shape, dtype=dtype) if kernels is None else kernels.zeros(shape, dtype)


# eagerly XLA's zeros (binding the primitive again from its own impl recursed under `jax.disable_jit`)
running_total_zeros_p.def_impl(_xla_zeros)
running_total_zeros_p.def_abstract_eval(lambda *, shape, dtype: jax.core.ShapedArray(shape, dtype))
mlir.register_lowering(running_total_zeros_p, mlir.lower_fun(_xla_zeros, multiple_results=False))
mlir.register_lowering(
    running_total_zeros_p, mlir.lower_fun(_cpu_zeros, multiple_results=False), platform="cpu"
)


# --- event_scan's carried weights --------------------------------------------------------------------------
# Inside `event_scan` each ``[nnz]`` weight array also rides along the loop's carry (``acc``, equal to the
# weights; `diffbrain.ops._carried`). An operator of a carried weight multiplies by the loop-invariant
# weights (``data``) and passes ``acc`` through. The weights' tangent comes through ``acc`` alone (the one
# of ``data`` is left out, or it would count twice; ``data`` keeps its own for the spikes' terms, which a
# second derivative differentiates w.r.t. the weights). Its tangent w.r.t. ``acc`` is a
# link, linear, that passes ``acc``'s tangent through as well; transposed, the link receives the weights'
# cotangent from the later steps — the running total — and adds its own step's gradient to it in place
# (`data_grad_add_p`, `arrival_data_grad_add_p`). So the reverse pass of an ordinary `lax.scan` touches
# only the synapses of the neurons that fired, and forward mode and `jax.vmap` work as for any scan.

spmv_carried_p = Primitive("csr_spmv_carried")  # (acc, indptr, indices, data, x) → (xᵀW, acc)
spmv_link_p = Primitive("csr_spmv_link")  # (d_acc, indptr, indices, x) → (xᵀ·d_acc, d_acc)
arrival_carried_p = Primitive("arrival_scatter_carried")  # (acc, arrival operands…) → (ring, arriving, acc)
arrival_link_p = Primitive("arrival_scatter_link")  # (d_acc, structure…, spikes, ring) → (ring + S, d_acc)
for _primitive in (spmv_carried_p, spmv_link_p, arrival_carried_p, arrival_link_p):
    _primitive.multiple_results = True


def _running_total(ct_acc, acc) -> Array:
    """The cotangent arriving for the carried weights: the running total (zeros where none arrives)."""
    return running_total_zeros(acc.aval) if type(ct_acc) is ad.Zero else ct_acc


def _spmv_carried(acc, indptr, indices, data, x, **params):
    return [_spmv(indptr, indices, data, x, **params), acc]


def _spmv_carried_jvp(primals, tangents, **params):
    acc, indptr, indices, _, x = primals
    d_acc, *d_operands = tangents
    out = spmv_carried_p.bind(*primals, **params)
    d_operands[2] = _zero_like(primals[3])  # the weights' tangent comes through acc
    t_y = _bilinear_tangent(spmv_p, primals[1:], d_operands, **params)
    if _is_zero(d_acc):
        return out, [_zero_like(out[0]) if t_y is None else t_y, _zero_like(acc)]
    t_link, d_acc_out = spmv_link_p.bind(d_acc, indptr, indices, x, **params)
    return out, [t_link if t_y is None else t_y + t_link, d_acc_out]


def _spmv_link(d_acc, indptr, indices, x, **params):
    return [_spmv(indptr, indices, d_acc, x, **params), d_acc]


def _spmv_link_jvp(primals, tangents, **params):
    """Linear in ``d_acc`` and bilinear in (``d_acc``, ``x``) for its product."""
    d_acc, indptr, indices, _ = primals
    t_acc, _, _, t_x = tangents
    out = spmv_link_p.bind(*primals, **params)
    t_y, t_acc_out = (
        (None, _zero_like(d_acc)) if _is_zero(t_acc) else spmv_link_p.bind(t_acc, *primals[1:], **params)
    )
    if not _is_zero(t_x):
        term = spmv_p.bind(indptr, indices, d_acc, t_x, **params)
        t_y = term if t_y is None else t_y + term
    return out, [_zero_like(out[0]) if t_y is None else t_y, t_acc_out]


def _spmv_link_transpose(cts, d_acc, indptr, indices, x, *, n_post, event, backend):
    _check_structure_defined(indptr, indices)
    ct_y, ct_acc = cts
    if ad.is_undefined_primal(x):  # the spikes' side of the product (higher orders)
        ct_x = (
            None if type(ct_y) is ad.Zero else row_dot_p.bind(indptr, indices, d_acc, ct_y, backend=backend)
        )
        return [None, None, None, ct_x]
    total = _running_total(ct_acc, d_acc)
    if type(ct_y) is not ad.Zero:
        total = data_grad_add_p.bind(total, indptr, indices, x, ct_y, backend=backend)
    return [total, None, None, None]


def _spikes_batched(primitive: Primitive, x_index: int) -> Callable:
    """Batch the spikes natively (a leading axis; the carry passes through unbatched), else by map."""

    def rule(args, dims, **params):
        if any(dim is not None for i, dim in enumerate(dims) if i != x_index):
            return _batch_by_map(primitive, args, dims, **params)
        x = jnp.moveaxis(args[x_index], dims[x_index], 0)
        return primitive.bind(*args[:x_index], x, *args[x_index + 1 :], **params), [0, None]

    return rule


def _arrival_carried(acc, *operands, pop, backend):
    return [*_arrival_impl(*operands, pop=pop, backend=backend), acc]


def _arrival_carried_jvp(primals, tangents, *, pop, backend):
    acc, *operands = primals
    d_acc, *d_operands = tangents
    out = arrival_carried_p.bind(*primals, pop=pop, backend=backend)
    d_operands[5] = _zero_like(operands[5])  # the weights' tangent comes through acc
    tangent = _ring_tangent(operands, d_operands, backend)
    d_acc_out = _zero_like(acc)
    if not _is_zero(d_acc):
        ring = jnp.zeros_like(operands[7]) if tangent is None else tangent
        tangent, d_acc_out = arrival_link_p.bind(d_acc, *operands[:5], operands[6], ring, backend=backend)
    if tangent is None:
        return out, [_zero_like(out[0]), _zero_like(out[1]), d_acc_out]
    return out, [*reference.pop_slot(tangent, operands[4], pop), d_acc_out]


def _arrival_link(d_acc, *operands, backend):
    structure, spikes, ring = operands[:5], operands[5], operands[6]
    return [_scatter(structure, d_acc, spikes, ring, backend), d_acc]


def _arrival_link_jvp(primals, tangents, *, backend):
    """Linear in (``d_acc``, ``ring``) and bilinear in (``d_acc``, ``spikes``) for its scatter."""
    d_acc, *structure, spikes, ring = primals
    t_acc, t_spikes, t_ring = tangents[0], tangents[6], tangents[7]
    out = arrival_link_p.bind(*primals, backend=backend)
    if _is_zero(t_acc) and _is_zero(t_spikes) and _is_zero(t_ring):
        return out, [_zero_like(x) for x in out]
    tangent = jnp.zeros_like(ring) if _is_zero(t_ring) else t_ring
    if not _is_zero(t_spikes):
        tangent = _scatter(structure, d_acc, t_spikes, tangent, backend)
    t_acc_out = _zero_like(d_acc)
    if not _is_zero(t_acc):
        tangent, t_acc_out = arrival_link_p.bind(t_acc, *structure, spikes, tangent, backend=backend)
    return out, [tangent, t_acc_out]


def _arrival_link_transpose(cts, d_acc, *operands, backend):
    structure, spikes, ring = operands[:5], operands[5], operands[6]
    ct_ring, ct_acc = cts
    ct_ring_in = None if type(ct_ring) is ad.Zero or not ad.is_undefined_primal(ring) else ct_ring
    if ad.is_undefined_primal(spikes):  # the spikes' side of the scatter (higher orders)
        ct_spikes = None
        if type(ct_ring) is not ad.Zero:
            ct_spikes = arrival_row_dot_p.bind(*structure, d_acc, ct_ring, backend=backend)
            ct_spikes = ct_spikes.astype(spikes.aval.dtype)
        return [None] * 6 + [ct_spikes, ct_ring_in]
    total = _running_total(ct_acc, d_acc)
    if type(ct_ring) is not ad.Zero:
        total = arrival_data_grad_add_p.bind(total, *structure, spikes, ct_ring, backend=backend)
    return [total] + [None] * 6 + [ct_ring_in]


for _primitive, _impl, _abstract, _jvp, _transpose, _batching, _params in (
    (
        spmv_carried_p,
        _spmv_carried,
        _spmv_carried_abstract,
        _spmv_carried_jvp,
        None,
        _spikes_batched(spmv_carried_p, 4),
        ("n_post", "event", "backend"),
    ),
    (
        spmv_link_p,
        _spmv_link,
        _spmv_link_abstract,
        _spmv_link_jvp,
        _spmv_link_transpose,
        _spikes_batched(spmv_link_p, 3),
        ("n_post", "event", "backend"),
    ),
    (
        arrival_carried_p,
        _arrival_carried,
        _arrival_carried_abstract,
        _arrival_carried_jvp,
        None,
        functools.partial(_batch_by_map, arrival_carried_p),
        ("pop", "backend"),
    ),
    (
        arrival_link_p,
        _arrival_link,
        _arrival_link_abstract,
        _arrival_link_jvp,
        _arrival_link_transpose,
        functools.partial(_batch_by_map, arrival_link_p),
        ("backend",),
    ),
):
    _primitive.def_impl(jax.jit(_impl, static_argnames=_params))
    _primitive.def_abstract_eval(_abstract)
    mlir.register_lowering(_primitive, mlir.lower_fun(_impl, multiple_results=True))
    ad.primitive_jvps[_primitive] = _jvp
    if _transpose is not None:
        ad.primitive_transposes[_primitive] = _transpose
    batching.primitive_batchers[_primitive] = _batching


# The running total's start: JAX's reverse pass of a scan fills the cotangent of a carry nothing downstream
# uses with zeros before the loop (an XLA fill of ``[nnz]``). `event_scan` ties the final carried weights
# to its outputs instead (`release`), whose tangent's transpose starts the total from `running_total_zeros`
# (on CPU the kernel's zeroed pages, half the time of XLA's fill at 4·10⁷ float32).
release_p = Primitive("event_scan_release")  # (carried weights, *outputs) → outputs
tie_p = Primitive("event_scan_tie")  # (carried weights' tangent, *output tangents) → output tangents
for _primitive in (release_p, tie_p):
    _primitive.multiple_results = True
    _primitive.def_impl(lambda _, *outputs: list(outputs))
    _primitive.def_abstract_eval(lambda _, *outputs: list(outputs))
    mlir.register_lowering(
        _primitive, mlir.lower_fun(lambda _, *outputs: list(outputs), multiple_results=True)
    )


def release(carried: Array, outputs: Sequence[Array]) -> list[Array]:
    """``outputs``, unchanged, with the final ``carried`` weights tied to them (see above)."""
    return release_p.bind(carried, *outputs)


def _tied(d_carried, d_outputs) -> list:
    """The outputs' tangents, tied to the carried weights' tangent where both are nonzero."""
    moving = [i for i, d in enumerate(d_outputs) if not _is_zero(d)]
    d_outputs = list(d_outputs)
    if _is_zero(d_carried) or not moving:
        return d_outputs
    for i, d in zip(moving, tie_p.bind(d_carried, *(d_outputs[i] for i in moving)), strict=True):
        d_outputs[i] = d
    return d_outputs


def _tie_transpose(cts, d_carried, *d_outputs):
    # an output the loss does not use gets zeros, not a symbolic zero: JAX 0.10's scan transpose fails
    # on a symbolic zero for a scanned output that the tangent program keeps (here, for the tie)
    return [running_total_zeros(d_carried.aval), *map(ad.instantiate_zeros, cts)]


def _untied_batching(primitive: Primitive) -> Callable:
    """Batched carried weights (a `jax.vmap` around the gradient) are not tied: JAX's own zeros then."""

    def rule(args, dims):
        if dims[0] is not None:
            return list(args[1:]), list(dims[1:])
        return primitive.bind(*args), list(dims[1:])

    return rule


for _primitive in (release_p, tie_p):
    ad.primitive_jvps[_primitive] = lambda primals, tangents, _primitive=_primitive: (
        _primitive.bind(*primals),
        _tied(tangents[0], tangents[1:]),
    )
ad.primitive_transposes[tie_p] = _tie_transpose
batching.primitive_batchers[release_p] = _untied_batching(release_p)
batching.primitive_batchers[tie_p] = _untied_batching(tie_p)


def _checked_delays(
    row_ptr: Array, lag: Array, n_rows: int, length: int
) -> tuple[Array, Array, Array | None]:
    """``row_ptr`` and ``lag`` after checking their values: a ValueError when they are concrete, else
    `eqx.error_if` (raised when the computation runs); and, when they are traced and equinox does not raise
    (``EQX_ON_ERROR=nan`` or ``off``), whether they are bad (else None), having clipped them into range:
    the kernels read ``W``'s rows at ``row_ptr`` unchecked."""
    row_ptr_message = (
        f"`row_ptr` must start at 0, be non-decreasing and end at R = {n_rows} (the rows of W); build it "
        "from each row's presynaptic neuron, e.g. `np.searchsorted(source, np.arange(n_pre + 1))`."
    )
    lag_message = (
        f"`lag` must be within 1 … L = {length} steps (the ring's length); use a ring of L ≥ max(lag) slots "
        "and delays of at least one step."
    )
    checks = (
        (
            row_ptr,
            row_ptr_message,
            lambda xp, r: (r[0] != 0) | (r[-1] != n_rows) | xp.any(r[1:] < r[:-1]),
            (0, n_rows),
        ),
        (lag, lag_message, lambda xp, x: xp.any((x < 1) | (x > length)), (1, length)),
    )
    checked, failed = [], []
    raises = equinox_on_error() == "raise"
    for value, message, bad, bounds in checks:
        if isinstance(value, jax.core.Tracer):
            failed.append(bad(jnp, value))
            value = eqx.error_if(value, failed[-1], message)
            value = value if raises else jnp.clip(value, *bounds)
        elif bad(np, np.asarray(value)):
            raise ValueError(message)
        checked.append(value)
    return checked[0], checked[1], None if raises or not failed else functools.reduce(jnp.logical_or, failed)


def arrival_scatter(
    spikes: Bool[Array, " n_pre"] | Shaped[Array, " n_pre"],
    W: CSR,
    row_ptr: Int[Array, " n_pre+1"],
    lag: Int[Array, " R"],
    ring: Float[Array, "L n_post"],
    step: Int[Array, ""] | int,
    *,
    pop: bool = False,
    backend: str | None = None,
) -> Float[Array, "L n_post"] | tuple[Float[Array, "L n_post"], Float[Array, " n_post"]]:
    """Delayed synapses, event-driven: add each spiking neuron's synapses to a ring of future inputs.

    ``W`` (``[R, n_post]``) holds rows of synapses grouped by presynaptic neuron: neuron ``i`` owns rows
    ``row_ptr[i] … row_ptr[i + 1] − 1``, and row ``r`` arrives ``lag[r]`` steps after the spike. The result
    is ``ring`` with ``s[i]·W[r, j]`` added at ``[(step + lag[r]) mod L, j]`` for every row of every
    neuron with ``s[i] ≠ 0``. With ``pop``, slot ``(step + 1) mod L`` of the result — the input arriving in
    the next step — is also returned and cleared in the ring, in the same call: a network scatters the
    spikes of step ``t − 1`` and pops the input of step ``t``. On the ``cpu`` and ``pallas`` backends the
    work per step is a test of each spike, the synaptic events and one slot, not the rows (a gather of the
    delayed spikes and a pass over all ``R`` rows, as with `event_matvec` over a ring of past spikes). The
    ``reference`` backend computes every stored synapse whatever the spikes: O(nnz) per call, i.e. per step
    of a network.

    Args:
        spikes: ``[n_pre]``, bool, integer (counts) or floating (surrogate spikes, ``W.data``'s dtype).
        W: the synapses' weights, ``[R, n_post]`` (rows sorted by presynaptic neuron).
        row_ptr: ``[n_pre + 1]`` non-decreasing row offsets per presynaptic neuron, from 0 to ``R``; the
            dtype of ``W.indices``.
        lag: ``[R]`` integer delay of each row, steps, within ``1 … L`` (slot ``(step + lag) mod L``).
        ring: ``[L, n_post]`` future inputs, ``W.data``'s dtype and unit.
        step: the step in which ``spikes`` were emitted (integer scalar).
        pop: also return slot ``(step + 1) mod L`` of the result, cleared in the returned ring.
        backend: ``"reference"``, ``"cpu"`` (the compiled kernel) or ``"pallas"`` (atomic adds into the
            ring on a GPU); both kernels update ``ring`` in place when XLA can reuse its buffer, e.g. in a
            `lax.scan` carry. None: the automatic choice.

    Returns:
        The updated ring ``[L, n_post]``; with ``pop``, ``(ring, arriving [n_post])``.

    ``row_ptr`` and ``lag`` are checked: a ValueError when they are concrete, else `equinox.error_if`.
    Under ``EQX_ON_ERROR=nan`` or ``off`` (no error raised) bad traced values are clipped into range and
    the result (with ``pop``, ``arriving``) is NaN.

    Differentiable w.r.t. ``W.data``, floating ``spikes`` and ``ring``, to any order, in forward and
    reverse mode. The tangent is this operator again, linear in the tangents. Its transpose gives the
    weights ``g[k] = s[src(k)]·ȳ[slot(r(k)), j(k)]``, computed on the synapses of the neurons that fired on
    ``cpu`` and ``pallas`` (plus a zero fill of the ``[nnz]`` result; for one shared weight, a scatter of
    ``s``, without any ``[nnz]`` array). The spikes get a per-neuron row dot over all synapses (O(nnz)).
    The ``reference`` backend computes both over every synapse. Reverse mode through a `lax.scan` stores
    only ``spikes`` and ``step`` per step (O(n_pre)), not per-synapse arrays.
    Under `jax.vmap` the kernel runs once per batch element.

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain import ops
        >>> W = ops.CSR.from_edges([0, 1], [2, 0], jnp.asarray([1.0, 2.0]), (2, 3))  # rows: neurons 0, 1
        >>> ring = ops.arrival_scatter(jnp.array([True, True]), W, jnp.array([0, 1, 2]), jnp.array([1, 3]),
        ...                            jnp.zeros((4, 3)), step=2)
        >>> ring[3].tolist(), ring[1].tolist()  # slot (2 + 1) mod 4 and (2 + 3) mod 4
        ([0.0, 0.0, 1.0], [2.0, 0.0, 0.0])
    """
    _check_csr(W)
    known = _concrete(row_ptr)
    if known is not None and np.issubdtype(known.dtype, np.integer) and known.dtype != W.indices.dtype:
        limits = np.iinfo(W.indices.dtype)
        if known.size and limits.min <= known.min() and known.max() <= limits.max:
            row_ptr = known.astype(W.indices.dtype)  # e.g. int64 from jnp.array under x64: exact
    row_ptr, lag, ring = (jnp.asarray(x) for x in (row_ptr, lag, ring))
    known_step = _concrete(step)
    if (
        known_step is not None
        and known_step.shape == ()
        and np.issubdtype(known_step.dtype, np.integer)
        and ring.ndim == 2
        and ring.shape[0] >= 1
    ):  # the slot only matters mod L: a concrete int64 step (or a Python int) past int32 must not wrap first
        step = int(known_step) % ring.shape[0]
    step = jnp.asarray(step)
    if row_ptr.ndim != 1 or row_ptr.shape[0] < 1 or row_ptr.dtype != W.indices.dtype:
        raise ValueError(
            f"`row_ptr` must be [n_pre + 1] of W.indices' dtype {W.indices.dtype}, got "
            f"{row_ptr.dtype}{list(row_ptr.shape)}."
        )
    if lag.shape != (W.shape[0],) or not jnp.issubdtype(lag.dtype, jnp.integer):
        raise ValueError(
            f"`lag` must be integer [R] with R = {W.shape[0]} rows of W, got {lag.dtype}{list(lag.shape)}."
        )
    if ring.ndim != 2 or ring.shape[1] != W.shape[1] or ring.shape[0] < 1 or ring.dtype != W.data.dtype:
        raise ValueError(
            f"`ring` must be [L, {W.shape[1]}] (L ≥ 1) of W.data's dtype {W.data.dtype}, got "
            f"{ring.dtype}{list(ring.shape)}."
        )
    if step.shape != () or not jnp.issubdtype(step.dtype, jnp.integer):
        raise ValueError(f"`step` must be an integer scalar, got {step.dtype}{list(step.shape)}.")
    n_pre = row_ptr.shape[0] - 1
    spikes = jnp.asarray(spikes)
    if spikes.shape != (n_pre,):
        raise ValueError(
            f"`spikes` must have shape [n_pre] = [{n_pre}] (from `row_ptr`), got {spikes.shape}."
        )
    floating = jnp.issubdtype(spikes.dtype, jnp.floating)
    if floating and spikes.dtype != W.data.dtype:
        raise ValueError(
            f"`spikes` has dtype {spikes.dtype} but `W.data` has dtype {W.data.dtype}; cast one of them."
        )
    if jnp.issubdtype(spikes.dtype, jnp.integer):
        spikes = spikes.astype(W.data.dtype)
    elif not floating and spikes.dtype != jnp.bool_:
        raise ValueError(f"`spikes` must be bool, integer or floating, got dtype {spikes.dtype}.")
    row_ptr, lag, failed = _checked_delays(row_ptr, lag, W.shape[0], ring.shape[0])
    backend = _backend.resolve(backend, W.data.dtype)
    # the slot only matters mod L: reduced in the step's own dtype first, so no step wraps in int32
    args = (row_ptr, lag, W.indptr, W.indices, (step % ring.shape[0]).astype(jnp.int32), W.data, spikes, ring)
    carried = _carried.find(W.data)
    if carried is None:
        ring, arriving = arrival_p.bind(*args, pop=bool(pop), backend=backend)
    else:  # one of the weights event_scan carries
        context, slot = carried
        args = (context.latest[slot], *args[:5], context.values[slot], *args[6:])
        ring, arriving, context.latest[slot] = arrival_carried_p.bind(*args, pop=bool(pop), backend=backend)
    if failed is not None:  # bad delays that equinox did not raise on: NaN values and gradients
        if pop:  # O(n_post) a step: what a network reads next
            arriving = arriving * jnp.where(failed, jnp.asarray(jnp.nan, arriving.dtype), 1)
        else:
            ring = ring * jnp.where(failed, jnp.asarray(jnp.nan, ring.dtype), 1)
    return (ring, arriving) if pop else ring
