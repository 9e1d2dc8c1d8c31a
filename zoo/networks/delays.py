"""Synaptic delays on a ring buffer of past spikes, with one event-driven product per receptor and step.

A network keeps the spikes of its last ``L`` steps in a ring ``[L, n]`` (``L`` = the longest delay in steps);
the spikes emitted in step ``t`` go to slot ``t mod L``. A receptor's synapses are grouped by (delay,
presynaptic neuron): row ``r`` of one `ops.CSR` holds the synapses of neuron ``source[r]`` whose spikes
arrive ``lag[r]`` steps after they were emitted. Each step gathers the ``R`` delayed spikes
``ring[(t − lag[r]) mod L, source[r]]`` into one vector and calls `ops.event_matvec` once.

This is the compact form of stacking the ``G`` delay groups as ``[G·n, n]``: only the (delay, neuron)
pairs that carry synapses become rows, so ``R ≤ min(G·n, nnz)`` and a network without delays (``lag`` 1
everywhere) has exactly one row per presynaptic neuron, like a plain CSR.

Cost per step: the gather of ``R`` spikes and the event kernel's pass over ``R`` rows, whatever the firing
rate — negligible with one delay per projection (``R ≤ n``), dominant with many distinct per-synapse delays
(measured, loaded 2-core machine: COBA 4,000 neurons with delays uniform in 0.1–5 ms, ``R`` = 127k, 9 s per
biological second against 0.4 s with one-step delays). A kernel that scatters each spike's synapses into a
postsynaptic arrival ring would make it event-driven (work ∝ synaptic events); the `ops` kernels do not
offer that yet.

Timing convention (the one of `EINetwork`): a spike emitted in step ``t`` with a delay of ``d`` steps is
added to the receptor in step ``t + d``, so ``d = 1`` means that last step's spikes reach the synapses.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Shaped

from ...ops import CSR, event_matvec


class DelayedCSR(eqx.Module):
    """One receptor's synapses with per-synapse delays, rows grouped by (delay, presynaptic neuron).

    Attributes:
        W: ``[R, n]`` weights; row ``r`` holds the synapses of neuron ``source[r]`` with delay ``lag[r]``
            (unit of the receptor: nS for conductance-based, pA for current-based).
        source: ``[R]`` presynaptic neuron of each row.
        lag: ``[R]`` delay of each row, in steps (≥ 1).
    """

    W: CSR
    source: Int[Array, " R"]
    lag: Int[Array, " R"]

    @classmethod
    def from_edges(
        cls,
        pre: Int[np.ndarray, " nnz"],
        post: Int[np.ndarray, " nnz"],
        weight: Float[np.ndarray, "*nnz"],
        lag: Int[np.ndarray, " nnz"],
        n: int,
        dtype,
    ) -> tuple[DelayedCSR, np.ndarray]:
        """Group concrete, validated edges ``pre → post`` with delays ``lag`` (steps) among ``n`` neurons.

        Synapses that repeat (pre, post, lag) are merged into one with the summed weight (identical for any
        receptor linear in its input). One shared scalar ``weight`` stays shared when nothing is merged.

        Returns:
            The `DelayedCSR` and, for each input edge, the index of its synapse in ``W.data``.
        """
        pre, post, lag = (np.asarray(a, np.int64) for a in (pre, post, lag))
        row_key = lag * n + pre
        rows, row_of_edge = np.unique(row_key, return_inverse=True)
        synapse_key = row_of_edge * n + post
        synapses, slot = np.unique(synapse_key, return_inverse=True)
        row_of_synapse, columns = np.divmod(synapses, n)
        weight = np.asarray(weight)
        if weight.ndim == 0 and synapses.size == pre.size:
            data = jnp.asarray(weight, dtype)
        else:
            data = jnp.asarray(np.bincount(slot, np.broadcast_to(weight, pre.shape), synapses.size), dtype)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(row_of_synapse, minlength=rows.size))])
        index_dtype = np.int32 if max(synapses.size, n, rows.size) < 2**31 else np.int64
        W = CSR(indptr.astype(index_dtype), columns.astype(index_dtype), data, (rows.size, n))
        lags, sources = np.divmod(rows, n)
        delayed = cls(W, jnp.asarray(sources, index_dtype), jnp.asarray(lags, jnp.int32))
        return delayed, slot

    @property
    def max_lag(self) -> int:
        """The longest delay, steps (0 without synapses)."""
        return int(np.max(np.asarray(self.lag), initial=0))

    def __call__(
        self, ring: Shaped[Array, "L n"] | Bool[Array, "L n"], step: Int[Array, ""]
    ) -> Float[Array, " n"]:
        """The input arriving in ``step`` (the number of steps simulated before it): ``Σ_r W[r]·s_r`` with
        ``s_r`` the spike of ``source[r]`` emitted ``lag[r]`` steps earlier."""
        length, n = ring.shape
        # flat ring index of (t − lag) mod L, source; a conditional add instead of an elementwise modulo and
        # a 1-D gather (measured ~20 % faster than `ring[(t − lag) % L, source]` at 128k rows)
        flat = (step % length) * n + self.source - self.lag * n
        flat = jnp.where(flat < 0, flat + length * n, flat)
        return event_matvec(ring.reshape(-1).at[flat].get(mode="promise_in_bounds"), self.W)
