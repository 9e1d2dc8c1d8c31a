"""Synaptic delays on an arrival ring: each step's spikes are scattered, event by event, into the input of the
steps in which they arrive.

Each receptor keeps the input of its next ``L`` steps in a ring ``[L, n]`` (``L`` = the longest delay in
steps): slot ``t mod L`` holds what arrives in step ``t``. A receptor's synapses are grouped by
(presynaptic neuron, delay): row ``r`` of one `ops.CSR` holds the synapses of neuron ``source[r]`` whose
spikes arrive ``lag[r]`` steps after they were emitted, and the rows of a neuron are consecutive
(``row_ptr``). Each step a network reads and clears slot ``t mod L`` and adds its spikes' synapses at
``(t + lag) mod L`` with one `ops.arrival_scatter` (`DelayedCSR.scatter`).

Only the (neuron, delay) pairs that carry synapses become rows, so ``R ≤ min(n·L, nnz)``, and a network
without delays (``lag`` 1 everywhere) has exactly one row per presynaptic neuron, like a plain CSR.

Cost per step with the ``cpu`` backend (the automatic one on CPU): the synaptic events (the spiking
neurons' synapses) plus one pass over the ``n`` spikes and the read and clear of one slot — not the ``R``
rows. The ``pallas`` backend on a GPU has the same event-driven cost (its kernel skips silent neurons and
adds their synapses atomically into the ring); the ``reference`` backend touches all ``nnz`` synapses
every step. The previous form kept a ring of past spikes and
gathered the ``R`` delayed spikes for one `ops.event_matvec` each step (COBA with 4,000 neurons and delays
uniform in 0.1–5 ms, ``R`` = 127k: 9 s per biological second against 0.4 s with one-step delays). Measured
on the Potjans–Diesmann microcircuit at scale 0.1 (7,717 neurons, ``R`` = 279k rows; 2-core machine at
load ~12, wall time per biological second): 17.0 s with the spike ring, 7.0 s with the arrival ring, same
rates.

Timing convention (the one of `EINetwork`): a spike emitted in step ``t`` with a delay of ``d`` steps is
added to the receptor in step ``t + d``, so ``d = 1`` means that last step's spikes reach the synapses.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Shaped

from ...ops import CSR, arrival_scatter


class DelayedCSR(eqx.Module):
    """One receptor's synapses with per-synapse delays, rows grouped by (presynaptic neuron, delay).

    Attributes:
        W: ``[R, n]`` weights; row ``r`` holds the synapses of neuron ``source[r]`` with delay ``lag[r]``
            (unit of the receptor: nS for conductance-based, pA for current-based).
        source: ``[R]`` presynaptic neuron of each row, non-decreasing.
        lag: ``[R]`` delay of each row, in steps (≥ 1).
        row_ptr: ``[n + 1]``: the rows of neuron ``i`` are ``row_ptr[i] … row_ptr[i + 1] − 1``.
    """

    W: CSR
    source: Int[Array, " R"]
    lag: Int[Array, " R"]
    row_ptr: Int[Array, " n+1"]

    @classmethod
    def from_edges(
        cls,
        pre: Int[np.ndarray, " nnz"],
        post: Int[np.ndarray, " nnz"],
        weight: Float[np.ndarray, "*nnz"],
        lag: Int[np.ndarray, "*nnz"],
        n: int,
        dtype,
    ) -> tuple[DelayedCSR, np.ndarray]:
        """Group concrete, validated edges ``pre → post`` with delays ``lag`` (steps ≥ 1, one per edge or
        shared) among ``n`` neurons.

        Synapses that repeat (pre, post, lag) are merged into one with the summed weight (identical for any
        receptor linear in its input; summed in float64 in the order given, then cast to ``dtype``). One
        shared scalar ``weight`` stays shared when nothing is merged.

        Cost: the edges are sorted by ``(pre·(L + 1) + lag)·n + post`` (``L`` the longest lag) with
        one or two in-place `numpy.sort` s of 64-bit words that pack the key with the edge's position
        (`_sorting_order`); the rest is one pass over the sorted edges in chunks of `_CHUNK`, which
        reads the keys from the sorted words after one sorting pass and gathers them after several.
        Memory beyond the inputs: ~20 bytes per edge at the peak (the sorted words, or the int32
        order, with the int32 slot, column and weight), 12 in the result (int32 column, weight, slot).

        Measured with `Network.build` on the Potjans–Diesmann microcircuit (int32/float32 edges, 16 bytes
        per synapse; loaded 2-core machine): scale 0.1 (3.0·10⁷ synapses) 11 s with a peak of 27 bytes per
        synapse above the edges (the previous build with two `numpy.unique`: ~56 s, ~104 bytes in all;
        side by side on its 2.2·10⁷ excitatory edges alone, 6.3 s against 27 s, identical output); scale
        0.3 (9.0·10⁷) 31 s, 25 bytes at the peak and 13 kept. The full scale (3·10⁸ synapses) thus needs
        ~41 bytes per synapse with its edges, ~12 GiB (extrapolated, not run here).

        Returns:
            The `DelayedCSR` and, for each input edge, the index of its synapse in ``W.data`` (int32, or
            int64 beyond 2³¹ synapses).
        """
        pre, post = np.asarray(pre), np.asarray(post)
        size = pre.size
        dtype = jax.dtypes.canonicalize_dtype(dtype)  # float32 unless JAX's x64 mode is on
        lag = np.broadcast_to(np.asarray(lag), pre.shape)
        shared = np.asarray(weight)
        weight = np.broadcast_to(shared, pre.shape)
        lag_max = int(lag.max(initial=1))
        index_dtype = _index_dtype(size, n * lag_max)
        order, position_bits = _sorting_order(((pre, n), (lag, lag_max + 1), (post, n)), size)
        slot = np.empty(size, index_dtype)
        columns = np.empty(size, index_dtype)
        data = np.empty(size, np.dtype(dtype))
        rows, row_starts = [], []
        n_synapses, last_key, carry = 0, -1, 0.0  # carry: the float64 sum of the last synapse so far
        for part in _chunks(size):
            # the sorted keys of this chunk, (pre·(lag_max + 1) + lag)·n + post, and the edges they come from
            if position_bits is None:
                at = order[part]
                key = pre[at].astype(np.int64)
                key *= lag_max + 1
                key += lag[at]
                key *= n
                key += post[at]
            else:  # one sorting pass: the words hold both
                key = order[part]
                at = key & ((1 << position_bits) - 1)
                key >>= position_bits
            first = np.empty(key.size, bool)  # the edge opens a synapse
            first[0] = key[0] != last_key
            np.not_equal(key[1:], key[:-1], out=first[1:])
            local = np.cumsum(first, dtype=index_dtype)  # synapse index within the chunk, from 1 if continued
            local -= first[0]
            base = n_synapses - 1 + first[0]  # the synapse of the chunk's first edge
            slot[at] = local + base
            # weights summed in float64 in the given order (the stable sort keeps it within a synapse); a
            # synapse continued from the last chunk goes on from that chunk's float64 sum, one by one
            sums = np.bincount(local, weight[at].astype(np.float64))
            if not first[0]:
                run = int(np.searchsorted(local, 1))
                head = np.array([carry])
                np.add.at(head, np.zeros(run, np.intp), weight[at[:run]])
                sums[0] = head[0]
            data[base : base + sums.size] = sums
            carry = sums[-1]
            row_key, column = np.divmod(key[first], n)  # row key pre·(lag_max + 1) + lag of each new synapse
            columns[n_synapses : n_synapses + column.size] = column
            if row_key.size:
                opens = np.empty(row_key.size, bool)  # the synapse opens a row
                opens[0] = row_key[0] != last_key // n
                np.not_equal(row_key[1:], row_key[:-1], out=opens[1:])
                rows.append(row_key[opens])
                row_starts.append(n_synapses + np.flatnonzero(opens))
            n_synapses += column.size
            last_key = int(key[-1])
        del order
        rows = np.concatenate([np.zeros(0, np.int64), *rows])
        indptr = np.concatenate([*row_starts, [n_synapses]]).astype(index_dtype)
        columns = jnp.asarray(columns[:n_synapses])  # each copy made after the last one's source is freed
        data = jnp.asarray(shared if shared.ndim == 0 and n_synapses == size else data[:n_synapses], dtype)
        W = CSR(indptr, columns, data, (rows.size, n))
        sources, lags = np.divmod(rows, lag_max + 1)
        row_ptr = np.searchsorted(sources, np.arange(n + 1)).astype(index_dtype)
        sources, lags = jnp.asarray(sources.astype(index_dtype)), jnp.asarray(lags.astype(np.int32))
        return cls(W, sources, lags, jnp.asarray(row_ptr)), slot

    @classmethod
    def concatenate(
        cls, parts: list[tuple[DelayedCSR, Int[np.ndarray, " e"]]]
    ) -> tuple[DelayedCSR, np.ndarray]:
        """Join `from_edges` results whose presynaptic neurons ascend from part to part (every source of a
        part above those of the parts before it) into `from_edges` of all their edges, concatenated in order:
        the same rows, synapses, weights and index dtype, each part's edge slots shifted past the synapses of
        the parts before it. A part's rows are its neurons', so none merges with another part's.

        ``parts`` (``(DelayedCSR, edge slots)`` pairs) is emptied as it is copied: the joined arrays are
        assembled one at a time, each part's piece freed once copied (unless the caller keeps the parts), so
        the peak is the parts' ~12 bytes per synapse plus one joined array and its device copy.

        Raises:
            ValueError: no parts, parts over different numbers of neurons, or sources that do not ascend.
        """
        if not parts:
            raise ValueError("`parts` must hold at least one (DelayedCSR, slots) pair.")
        n, last = parts[0][0].W.shape[1], -1
        for i, (part, _) in enumerate(parts):
            if part.W.shape[1] != n:
                raise ValueError(f"`parts[{i}]` has {part.W.shape[1]} neurons, `parts[0]` {n}.")
            source = np.asarray(part.source)
            if source.size and source[0] <= last:
                raise ValueError(
                    f"`parts[{i}]` starts at presynaptic neuron {source[0]}, not above the last one of the "
                    f"parts before it ({last}); group edges whose presynaptic neurons interleave together."
                )
            last = source[-1] if source.size else last
        nnz = [part.W.nnz for part, _ in parts]
        n_edges = sum(slot.size for _, slot in parts)
        lag_max = max(part.max_lag for part, _ in parts)
        index_dtype = _index_dtype(n_edges, n * lag_max)
        starts = np.cumsum([0, *nnz])  # each part's first synapse
        rows = np.cumsum([0, *(part.W.shape[0] for part, _ in parts)])
        indptr = np.empty(rows[-1] + 1, index_dtype)
        for (part, _), start, stop, offset in zip(parts, rows[:-1], rows[1:], starts[:-1], strict=True):
            indptr[start:stop] = np.asarray(part.W.indptr)[:-1] + offset
        indptr[-1] = starts[-1]
        sources = np.concatenate([np.asarray(part.source) for part, _ in parts]).astype(index_dtype)
        lags = np.concatenate([np.asarray(part.lag) for part, _ in parts]).astype(np.int32)
        row_ptr = sum(np.asarray(part.row_ptr, index_dtype) for part, _ in parts)  # each counts its own rows
        columns = [np.asarray(part.W.indices) for part, _ in parts]
        data = [
            np.broadcast_to(np.asarray(part.W.data), (size,))
            for (part, _), size in zip(parts, nnz, strict=True)
        ]
        slots = [slot for _, slot in parts]
        dtype = data[0].dtype
        parts.clear()
        columns = jnp.asarray(_joined(columns, index_dtype))
        data = jnp.asarray(_joined(data, dtype))
        W = CSR(indptr, columns, data, (int(rows[-1]), n))
        delayed = cls(W, jnp.asarray(sources), jnp.asarray(lags), jnp.asarray(row_ptr))
        return delayed, _joined(slots, index_dtype, starts)

    @property
    def max_lag(self) -> int:
        """The longest delay, steps (0 without synapses)."""
        return int(np.max(np.asarray(self.lag), initial=0))

    def scatter(
        self,
        spikes: Shaped[Array, " n"] | Bool[Array, " n"],
        ring: Float[Array, "L n"],
        step: Int[Array, ""],
    ) -> tuple[Float[Array, "L n"], Float[Array, " n"]]:
        """Add the synapses of the neurons that spiked in ``step`` to ``ring`` (the input of the next ``L``
        steps, slot ``t mod L`` for step ``t``), each at slot ``(step + lag) mod L``, then take out the
        input of step ``step + 1``: ``(ring with that slot cleared, that slot)``, in one
        `ops.arrival_scatter` (differentiable w.r.t. the weights and float spikes)."""
        return arrival_scatter(spikes, self.W, self.row_ptr, self.lag, ring, step, pop=True)


_WORD_BITS = 63
"""Bits of a sorting word (int64, non-negative) for a group of digits and a position."""

_CHUNK = 1 << 20
"""Edges per chunk of the passes over sorted edges (~60 MB of temporaries)."""


def _chunks(size: int):
    return (slice(start, min(start + _CHUNK, size)) for start in range(0, size, _CHUNK))


def _joined(pieces: list[np.ndarray], dtype, shifts=None) -> np.ndarray:
    """The concatenation of ``pieces`` (plus ``shifts[k]`` to piece ``k``), as ``dtype``; ``pieces`` is
    emptied as it is copied, so each piece is freed once copied unless held elsewhere."""
    out = np.empty(sum(piece.size for piece in pieces), dtype)
    stop = 0
    for k in range(len(pieces)):
        piece = pieces.pop(0)
        part = out[stop : stop + piece.size]
        part[...] = piece
        if shifts is not None:
            part += int(shifts[k])
        stop += piece.size
        del piece
    return out


def _index_dtype(*sizes: int) -> np.dtype:
    """int32 when every index and count fits, else int64 (which needs JAX's x64 mode)."""
    if max(sizes, default=0) < 2**31:
        return np.dtype(np.int32)
    if not jax.config.jax_enable_x64:
        raise ValueError(
            f"`edges`: {max(sizes)} synapses or (delay, neuron) rows need int64 indices; enable them with "
            "`jax.config.update('jax_enable_x64', True)` before building."
        )
    return np.dtype(np.int64)


def _sorting_order(digits, size: int) -> tuple[np.ndarray, int | None]:
    """The permutation that sorts ``size`` items by a mixed-radix number, most significant digit first.

    ``digits`` are ``(values [size], radix)`` pairs (``0 ≤ values < radix``). A least-significant-first
    radix sort whose passes are in-place `numpy.sort` s of int64 words ``(group value << b) | position``
    (``b`` bits for a position): the digits are grouped from the least significant while a group's value
    and a position fit in 63 bits, so the key ``(pre·(L + 1) + lag)·n + post`` of a network of 7,717 neurons
    and 3·10⁷ edges takes one pass and the full-scale microcircuit (77,169 neurons, 3·10⁸ edges) two. The
    packed position breaks ties, so every pass is stable. Sorting the words in place measured ~3× faster
    than `numpy.argsort` of the keys and needs 8 bytes per item plus the permutation.

    Returns:
        After one pass, the sorted words and ``b``: the permutation is ``words & (2**b − 1)`` and the sorted
        numbers ``words >> b`` (no gather needed to read them). After several, the permutation and None.
    """
    position_bits = max(1, (size - 1).bit_length())
    groups, group, span = [], [], 1
    for values, radix in reversed(digits):
        if group and (span * radix - 1).bit_length() + position_bits > _WORD_BITS:
            groups.append(group)
            group, span = [], 1
        group.insert(0, (values, radix))
        span *= radix
    groups.append(group)
    order_dtype = _index_dtype(size)
    order = None
    for group in groups:  # least significant first
        words = np.empty(size, np.int64)
        for part in _chunks(size):
            at = part if order is None else order[part]
            word = np.zeros(part.stop - part.start, np.int64)
            for values, radix in group:
                word *= radix
                word += values[at]
            word <<= position_bits
            word |= np.arange(part.start, part.stop)
            words[part] = word
        words.sort()
        if len(groups) == 1:
            return words, position_bits
        words &= (1 << position_bits) - 1  # the positions, in sorted order
        order = words.astype(order_dtype) if order is None else order[words]
        del words
    return order, None
