"""`event_scan`: a `lax.scan` through a network whose reverse pass accumulates the weight gradients in place.

Through an ordinary `lax.scan`, JAX's reverse pass gives every step its own ``[nnz]`` weight cotangent and
adds it to a running sum: two passes over every synapse per step, although only the synapses of the neurons
that fired carry a nonzero gradient (at n = 100,000 × 400, 2 % firing, 100 steps: 17–22× the forward step).
`event_scan` is the same `lax.scan` with each ``[nnz]`` weight array of its ``params`` also carried through
the loop: the operators (`event_matvec`, `event_matmat`, `csr_matvec`, `arrival_scatter`) find their
``W.data`` among the carried weights (`diffbrain.ops._carried`), multiply by the loop-invariant
weights and pass the carry on. JAX's own reverse pass of the scan then carries the weights' cotangent from
step to step, and each operator adds its step's gradient to it in place, on the synapses of the neurons
that fired (``csr_data_grad_add``, ``arrival_data_grad_add``; `diffbrain.ops.event`). Everything else is
`lax.scan`'s: its residuals, forward mode, `jax.vmap`, `jax.checkpoint`. With ``checkpoint`` the steps run
in segments whose insides the reverse pass recomputes. The networks use it through
``simulate(..., event_scan=True)``.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Callable
from typing import Any, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from ._carried import Carried
from .csr import CSR
from .event import release

__all__ = ["event_scan"]

Carry = TypeVar("Carry")
Params = TypeVar("Params")


def _is_csr(x) -> bool:
    return isinstance(x, CSR)


def _has_weights(W) -> bool:
    """Whether ``W`` is a CSR with one floating weight per synapse (``[nnz]`` data)."""
    return _is_csr(W) and eqx.is_inexact_array(W.data) and W.data.ndim == 1


def _split_weights(tree) -> tuple[Any, list, frozenset[int]]:
    """``tree`` with the ``[nnz]`` data of its CSR matrices set to None, those data in tree order, and the
    positions of those matrices among ``tree``'s CSR matrices (in tree order)."""
    weights, positions, counter = [], [], itertools.count()

    def strip(W):
        if not _is_csr(W):
            return W
        position = next(counter)
        if not _has_weights(W):
            return W
        weights.append(W.data)
        positions.append(position)
        return eqx.tree_at(lambda c: c.data, W, None)

    return jax.tree.map(strip, tree, is_leaf=_is_csr), weights, frozenset(positions)


def _join_weights(tree, weights: list, positions: frozenset[int]) -> Any:
    """The inverse of `_split_weights`: the data of the CSR matrices at ``positions`` set to ``weights``."""
    remaining, counter = iter(weights), itertools.count()

    def join(W):
        if not _is_csr(W) or next(counter) not in positions:
            return W
        return eqx.tree_at(lambda c: c.data, W, next(remaining), is_leaf=lambda x: x is None)

    return jax.tree.map(join, tree, is_leaf=_is_csr)


def _segments(tree, count: int, size: int):
    """The first ``count · size`` steps of ``tree``'s leaves as ``[count, size, …]``."""
    return jax.tree.map(lambda x: x[: count * size].reshape(count, size, *x.shape[1:]), tree)


def _rest(tree, start: int):
    return jax.tree.map(lambda x: x[start:], tree)


def checked_unroll(unroll) -> int | bool:
    """``unroll`` for `lax.scan` (steps per loop iteration, True: all), checked: a positive integer or a
    bool (also for the networks' ``simulate``)."""
    if not isinstance(unroll, numbers.Integral) or (not isinstance(unroll, bool) and unroll < 1):
        raise ValueError(
            f"`unroll` must be a positive integer or a bool (steps per scan iteration; True: all), as for "
            f"lax.scan, got {unroll!r}."
        )
    return unroll if isinstance(unroll, bool) else int(unroll)


def _length(xs, length: int | None) -> int:
    leaves = jax.tree.leaves(xs)
    lengths = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
    if None in lengths:
        raise ValueError("every leaf of `xs` must have a leading time axis; scalars cannot be scanned over.")
    if length is not None:
        if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 0:
            raise ValueError(f"`length` must be a non-negative integer number of steps, got {length!r}.")
        lengths.add(int(length))
    if not lengths:
        raise ValueError("pass `length` (the number of steps) when `xs` is None or has no arrays.")
    if len(lengths) > 1:
        if length is None:
            raise ValueError(f"the leaves of `xs` have different leading lengths: {sorted(lengths)}.")
        raise ValueError(f"`xs` and `length` disagree on the number of steps: {sorted(lengths)}.")
    return lengths.pop()


def event_scan(
    step: Callable[[Params, Carry, Any], tuple[Carry, Any]],
    params: Params,
    init: Carry,
    xs: Any = None,
    *,
    length: int | None = None,
    unroll: int | bool = 1,
    checkpoint: int | None = None,
) -> tuple[Carry, Any]:
    """`lax.scan` of ``step(params, carry, x) → (carry, y)`` whose gradient w.r.t. the CSR weights in
    ``params`` accumulates in place, on the synapses of the neurons that fired.

    Equivalent to ``lax.scan(lambda c, x: step(params, c, x), init, xs, length=length)``, with the same
    values and gradients: it is that scan, with every `ops.CSR` of ``params`` that has one weight per
    synapse (``[nnz]`` data) also carried through the loop (see the module doc). Reverse mode is
    event-driven on the ``cpu`` backend: each `event_matvec`, `event_matmat`, `csr_matvec` or
    `arrival_scatter` of such a matrix inside ``step`` adds its weight gradient to the running ``[nnz]``
    total in place, so a step of the reverse pass touches the synapses of the rows that fired, not all
    ``nnz`` twice. (The other backends have no in-place add: they add a fresh ``[nnz]`` gradient per step,
    as `lax.scan` does.) Everything else is `lax.scan`'s own: the residuals its reverse mode stores (for an
    arrival ring, the spikes of each step, not the ring), forward mode (`jax.jvp`, `jax.jacfwd`),
    `jax.vmap`, higher orders. Measured on 2 cores at n = 100,000 × 400 synapses per row, 2 % firing, 100
    steps of a synapse driven by given spikes (a loss linear in its conductance, so the gradient needs no
    forward value and XLA drops the forward products: the reverse pass alone), the weight gradient cost
    17–22× the forward step through `lax.scan`, and through `event_scan` 1.1–1.6× timed alone and 2.2–2.8×
    amid the leaderboard's other methods, whose memory churn spreads its repeats from 1.5× to 5.5×
    (``scan_grad_time``, `diffbrain.bench.ops`). Each reverse step reads and writes the fired rows' slice
    of the ``[nnz]`` total where the forward only reads their weights: ~1.5× its memory traffic.

    Args:
        step: ``(params, carry, x) → (new carry, y)``, pure. Use the CSR matrices of ``params`` directly
            (``event_matvec(s, params.W)``): a matrix rebuilt inside ``step`` (e.g.
            ``W.with_data(jnp.abs(W.data))``), or one closed over, is differentiated the ordinary way (a
            fresh ``[nnz]`` gradient per step) — apply such a parametrization before the scan instead.
            Other uses of ``W.data`` in ``step`` (e.g. a penalty) are differentiated as in `lax.scan`.
        params: a PyTree (e.g. an `equinox.Module`) holding the weights and other parameters.
        init: the initial carry.
        xs: per-step inputs with a leading time axis, or None.
        length: the number of steps (a non-negative integer), needed when ``xs`` is None.
        unroll: steps per loop iteration (True: all), as in `lax.scan`. There is no ``reverse=``: scan
            over reversed ``xs`` instead.
        checkpoint: for long runs: run the steps in segments of ``checkpoint`` steps under
            `jax.checkpoint`, so reverse mode stores each segment's starting carry and, while it runs back
            through a segment, that segment's residuals: ``T/checkpoint`` carries plus ``checkpoint``
            steps' residuals instead of ``T`` steps' residuals, at the price of one more forward step per
            step and of a second ``[nnz]`` total per weight array (each segment's, added to the run's). The
            fewest bytes are near ``checkpoint ≈ √(T · carry bytes / one step's residual bytes)``: √T when
            the two are alike, larger when the carry is bigger (an arrival ring ``[L, n]``), where a small
            ``checkpoint`` can cost more than None (measured: n = 2,000, a 101-step ring, T = 1,000:
            None 65 MiB, 10 → 83 MiB, 32 → 29 MiB, 100 → 16 MiB). When ``checkpoint`` does not divide T,
            the last ``T mod checkpoint`` steps run unsegmented and the other steps of ``xs`` are copied
            into segments (a slice): pick a divisor to avoid the copy. None: keep every step's residuals.

    Returns:
        ``(final carry, stacked y)``, as `lax.scan`.

    Only what is differentiated is: weights held fixed accumulate no gradient. Under `jax.vmap` with the
    weights shared, a batch of spikes (``step``'s `event_matvec` batched into `event_matmat`) accumulates
    one total; batched weights get one total per batch element, not in place (one kernel call each). An
    operator called inside a nested trace of ``step`` (a `lax.cond` branch, an inner `jax.jit`, `jax.vmap`
    or `jax.checkpoint`) takes the ordinary path: the same gradient, as a fresh ``[nnz]`` array per step.

    Examples:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> from diffbrain import ops
        >>> W = ops.CSR.fixed_in_degree(jax.random.key(0), 50, 50, k=10, weight=jnp.full(500, 0.1))
        >>> spikes = jax.random.bernoulli(jax.random.key(1), 0.1, (20, 50))
        >>> def step(W, g, s):  # an exponential synapse driven by given spikes
        ...     g = 0.9 * g + ops.event_matvec(s, W)
        ...     return g, jnp.sum(g)
        >>> def loss(W, scan):
        ...     return jnp.sum(scan(step, W, jnp.zeros(50), spikes)[1])
        >>> fast = eqx.filter_grad(loss)(W, ops.event_scan).data
        >>> def plain_scan(step, W, g, xs):
        ...     return jax.lax.scan(lambda g, x: step(W, g, x), g, xs)
        >>> plain = eqx.filter_grad(loss)(W, plain_scan).data
        >>> bool(jnp.allclose(fast, plain, rtol=1e-5))
        True
    """
    if not callable(step):
        raise TypeError(
            f"`step` must be callable (params, carry, x) → (carry, y), got {type(step).__name__}."
        )
    unroll = checked_unroll(unroll)
    length = _length(xs, length)
    if checkpoint is not None and (
        isinstance(checkpoint, bool) or not isinstance(checkpoint, numbers.Integral) or checkpoint < 1
    ):
        raise ValueError(
            f"`checkpoint` must be a positive integer number of steps or None, got {checkpoint!r}."
        )
    arrays, others = eqx.partition(params, eqx.is_array)  # e.g. an activation function in a Module
    stripped, weights, positions = _split_weights(arrays)
    values = list(weights)  # what the products multiply by (first-order tangents come through the carry)

    def body(carry, x):
        carried_weights, carry = carry
        with Carried(carried_weights, values) as carried:
            p = eqx.combine(_join_weights(stripped, list(carried_weights), positions), others)
            carry, y = step(p, carry, x)
        return (tuple(carried.latest), carry), y

    def steps(carry, xs, count: int):  # the weights carried from their own value at the start
        (carried, carry), ys = lax.scan(body, (tuple(weights), carry), xs, length=count, unroll=unroll)
        outputs, rebuild = eqx.partition((carry, ys), eqx.is_inexact_array)
        leaves, structure = jax.tree.flatten(outputs)
        for final in carried:  # where the reverse pass starts each running total (`event.release`)
            leaves = release(final, leaves)
        return eqx.combine(jax.tree.unflatten(structure, leaves), rebuild)

    if checkpoint is None or checkpoint >= length:
        return steps(init, xs, length)
    size = int(checkpoint)
    count, rest = divmod(length, size)
    segment = jax.checkpoint(lambda carry, xs: steps(carry, xs, size))
    final, ys = lax.scan(segment, init, _segments(xs, count, size), length=count)
    ys = jax.tree.map(lambda y: y.reshape(count * size, *y.shape[2:]), ys)
    if rest == 0:
        return final, ys
    final, tail = steps(final, _rest(xs, count * size), rest)
    return final, jax.tree.map(lambda a, b: jnp.concatenate([a, b]), ys, tail)
