"""The ``pallas`` backend: event-driven CSR kernels in Pallas, lowered through Triton on GPU.

Same contract as `diffbrain.ops.kernels.reference` (rows presynaptic; ``data`` ``[nnz]`` or ``[]`` for one
shared weight, never broadcast to ``[nnz]``; ``indptr``/``indices`` int32 or int64). Design:

* `event_matvec` / `event_matmat` / `csr_matvec`: a grid of ``(row blocks, batch)`` programs. A program
  takes ``ROWS`` presynaptic rows; a row whose spike is 0 is skipped (one scalar load; `csr_matvec` walks
  every row, so ``0·inf`` gives NaN as in a dense product), a spiking row walks
  its synapses in fixed ``CHUNK``-wide masked loads (``pl.ds``) of columns and weights and scatters
  ``s·w`` into the output with a masked atomic add. The output is a zero array aliased into the kernel
  (in interpret mode, whose atomics cannot be masked, with one spare slot per batch row where the masked
  lanes add 0, sliced off after).
* `row_dot` / `row_dot_batch`: one program per ``(row block, batch row)``; each row is a masked gather-dot
  over its chunks, written once — no atomics, every row visited (the spike gradient is dense).
* `data_grad` / `data_grad_batch`: ``g[k] = Σ_b s_b[row k]·ȳ_b[col k]``; the output is a zero ``[nnz]``
  array aliased into the kernel and one program per row block writes only rows where some ``s_b`` is
  nonzero (silent rows keep their zeros; no gather touches them). Deterministic: no atomics.
* `arrival_scatter` (delayed synapses into a ring ``[L, n_post]``): one program per block of ``ROWS``
  presynaptic neurons; a spiking neuron walks its rows (``row_ptr``) and their synapses in ``CHUNK``-wide
  steps, atomically adding into the flattened ring (aliased) at ``((step + lag) mod L)·n_post + column``;
  ``pop`` slices the next slot out after the kernel. Its transposes `arrival_data_grad` (writes the synapses
  of spiking neurons into an aliased zero ``[nnz]``) and `arrival_row_dot` (a gather-dot per neuron over
  its rows' slots) loop the same way, without atomics.

Every function is a Pallas kernel; none falls back to the reference. Only the empty matrix (``nnz = 0``)
and empty grids are answered with zeros without a kernel.

``interpret``: None (the default) means True when JAX's default backend is not a GPU, so the backend runs
(slowly, as an interpreter of the kernels) on CPU for tests; pass ``interpret=False``/``True`` to force it.
On CPU the automatic backend choice never picks ``pallas`` (it prefers ``cpu``, then ``reference``); it
runs there only when asked for with ``backend="pallas"`` (`diffbrain.ops.backends` does not list it: see
`INTERPRETED`).

Repeated synapses (a row naming one column twice, which `diffbrain.ops.CSR(...)` accepts though its
builders never make one) are summed, as by the other backends: on GPU by the atomics; in interpret mode,
where the atomic add is emulated by a gather-add-scatter that would keep only one of the lanes sharing a
target, each chunk first sums its lanes' values per target into the first of them (`_sum_repeats`).
Limitations: float64 needs a GPU with native 64-bit atomics (sm_60 and later).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Int, Shaped

from . import reference

try:
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt
except ImportError as _error:  # pragma: no cover - an old or stripped jax
    pl = plt = None
    _IMPORT_ERROR: ImportError | None = _error
else:
    _IMPORT_ERROR = None

CHUNK = 256
"""Synapses handled per vector step (a power of two, as Triton requires). CHUNK, ROWS and NUM_WARPS are the
fastest of 12 settings (`diffbrain.bench.gpu.tune`: CHUNK 128/256 × ROWS 1/4/16 × NUM_WARPS 4/8) for the
forward kernel on an H200 (jax 0.11.2) at n = 10⁶ × 400, 2% firing: 0.37 ms per call, against 0.40 ms at
(128, 4, 4), 0.51 ms with 8 warps and 0.90 ms with one row per program."""

ROWS = 4
"""Presynaptic rows per program."""

NUM_WARPS = 4
"""Triton warps per program."""

_TUNING = (CHUNK, ROWS, NUM_WARPS)


def _tuning() -> tuple[int, int, int]:
    """The module's tuning constants as they are now: a GPU session may set them between calls (each
    combination compiles once)."""
    return CHUNK, ROWS, NUM_WARPS


INTERPRETED = jax.default_backend() != "gpu"
"""True where the kernels would only be interpreted (no GPU): `diffbrain.ops.backends` then leaves ``pallas``
out (benchmarks and backend-parametrized tests skip it), though ``backend="pallas"`` still runs it."""


def available() -> bool:
    """True wherever Pallas imports: compiled for a GPU, interpreted elsewhere (only used when requested)."""
    if _IMPORT_ERROR is not None:
        raise ImportError(f"jax.experimental.pallas is unavailable: {_IMPORT_ERROR}")
    return True


def _interpret(interpret: bool | None) -> bool:
    return jax.default_backend() != "gpu" if interpret is None else bool(interpret)


def _call(kernel, out_shape, grid, interpret: bool, aliases: dict[int, int], num_warps: int):
    return pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=grid,
        input_output_aliases=aliases,
        interpret=interpret,
        compiler_params=None if interpret else plt.CompilerParams(num_warps=num_warps, num_stages=1),
    )


def _chunks(start, end, chunk: int):
    """The number of ``chunk``-wide steps covering ``[start, end)``."""
    return (end - start + chunk - 1) // chunk


def _lanes(start, c, chunk: int):
    """Positions ``start + c·chunk + [0, chunk)`` in ``start``'s dtype."""
    return start + c * chunk + lax.iota(start.dtype, chunk)


def _sum_repeats(targets, values, spare):
    """Interpret mode's atomic add is a gather-add-scatter: of lanes sharing a target only one add lands
    (a repeated synapse, or a row's chunk of the ring hitting one slot twice). Sums each target's values
    into its first lane and sends the others to ``spare`` (a slot sliced off after) with 0. O(chunk²) per
    chunk, in interpret mode only: the GPU atomics add every lane."""
    same = targets[:, None] == targets[None, :]
    total = jnp.sum(jnp.where(same, values[None, :], 0), axis=1).astype(values.dtype)
    first = jnp.argmax(same, axis=1) == lax.iota(jnp.int32, targets.shape[0])
    return jnp.where(first, targets, spare), jnp.where(first, total, 0).astype(values.dtype)


# --- forward: event scatter ---------------------------------------------------------------------------------


def _scatter_kernel(
    indptr_ref,
    indices_ref,
    data_ref,
    s_ref,
    y_in_ref,
    y_ref,
    *,
    n_pre,
    n_post,
    homogeneous,
    event,
    interpret,
    chunk,
    rows,
):
    del y_in_ref  # aliased to y_ref: the zeros we accumulate into
    block, b = pl.program_id(0), pl.program_id(1)
    # interpret mode: one spare slot at the end of each batch row takes the masked lanes' zeros
    width = n_post + 1 if interpret else n_post
    spare = n_post if interpret else 0  # on GPU masked lanes issue no atomic: any in-range index will do
    base = b * width

    def row_body(r, carry):
        row = block * rows + r
        safe_row = jnp.minimum(row, n_pre - 1)
        s = s_ref[b * n_pre + safe_row]

        @pl.when(jnp.logical_and(row < n_pre, s != 0) if event else row < n_pre)
        def _():
            start, end = indptr_ref[safe_row], indptr_ref[safe_row + 1]

            def chunk_body(c, carry):
                positions = _lanes(start, c, chunk)
                mask = positions < end
                window = pl.ds(start + c * chunk, chunk)
                cols = plt.load(indices_ref.at[window], mask=mask, other=0)
                if homogeneous:
                    w = jnp.full((chunk,), data_ref[0], y_ref.dtype)
                else:
                    w = plt.load(data_ref.at[window], mask=mask, other=0)
                values = jnp.where(mask, w * s, 0).astype(y_ref.dtype)
                targets = base.astype(cols.dtype) + jnp.where(mask, cols, spare)
                # interpret mode cannot mask atomics: its masked lanes add 0 into the spare slot instead
                if interpret:
                    targets, values = _sum_repeats(targets, values, base.astype(cols.dtype) + spare)
                plt.atomic_add(y_ref, (targets,), values, mask=None if interpret else mask)
                return carry

            lax.fori_loop(0, _chunks(start, end, chunk), chunk_body, 0)

        return carry

    lax.fori_loop(0, rows, row_body, 0)


@functools.partial(jax.jit, static_argnames=("n_post", "interpret", "tuning", "event"))
def _event_matmat(
    indptr,
    indices,
    data,
    spikes,
    n_post: int,
    interpret: bool | None = None,
    tuning=_TUNING,
    event: bool = True,
):
    """The scatter of every row of ``spikes``: only rows with ``s != 0`` (``event``), or all of them."""
    batch, n_pre = spikes.shape
    dtype = data.dtype
    if indices.shape[0] == 0 or n_pre == 0 or batch == 0 or n_post == 0:
        return jnp.zeros((batch, n_post), dtype)
    interpret = _interpret(interpret)
    homogeneous = data.ndim == 0
    kernel = functools.partial(
        _scatter_kernel,
        n_pre=n_pre,
        n_post=n_post,
        homogeneous=homogeneous,
        event=event,
        interpret=interpret,
        chunk=tuning[0],
        rows=tuning[1],
    )
    width = n_post + 1 if interpret else n_post
    zeros = jnp.zeros((batch * width,), dtype)
    call = _call(
        kernel,
        jax.ShapeDtypeStruct(zeros.shape, dtype),
        (pl.cdiv(n_pre, tuning[1]), batch),
        interpret,
        {4: 0},
        tuning[2],
    )
    flat = call(indptr, indices, data.reshape(-1), spikes.astype(dtype).reshape(-1), zeros)
    return flat.reshape(batch, width)[:, :n_post]


def event_matmat(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    data: Float[Array, "*nnz"],
    spikes: Shaped[Array, "b n_pre"],
    n_post: int,
    *,
    interpret: bool | None = None,
) -> Float[Array, "b n_post"]:
    """`event_matvec` of each row of ``spikes`` in one kernel (grid axis 1 is the batch)."""
    return _event_matmat(indptr, indices, data, spikes, n_post, interpret, _tuning())


def event_matvec(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    data: Float[Array, "*nnz"],
    spikes: Shaped[Array, " n_pre"],
    n_post: int,
    *,
    interpret: bool | None = None,
) -> Float[Array, " n_post"]:
    """``y[j] = Σ_i s[i]·W[i, j]`` over rows with ``s[i] != 0`` only (atomic scatter of spiking rows)."""
    return _event_matmat(indptr, indices, data, spikes[None], n_post, interpret, _tuning())[0]


def csr_matmat(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    data: Float[Array, "*nnz"],
    x: Float[Array, "b n_pre"],
    n_post: int,
    *,
    interpret: bool | None = None,
) -> Float[Array, "b n_post"]:
    """The plain product ``y = x W`` of each row of ``x`` over all rows (``0·inf`` gives NaN, as dense)."""
    return _event_matmat(indptr, indices, data, x, n_post, interpret, _tuning(), event=False)


def csr_matvec(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    data: Float[Array, "*nnz"],
    x: Float[Array, " n_pre"],
    n_post: int,
    *,
    interpret: bool | None = None,
) -> Float[Array, " n_post"]:
    """`csr_matmat` of one vector."""
    return csr_matmat(indptr, indices, data, x[None], n_post, interpret=interpret)[0]


# --- gradient w.r.t. spikes: row gather-dot -----------------------------------------------------------------


def _row_dot_kernel(
    indptr_ref, indices_ref, data_ref, ct_ref, r_ref, *, n_pre, n_post, homogeneous, chunk, rows
):
    block, b = pl.program_id(0), pl.program_id(1)

    def row_body(r, carry):
        row = block * rows + r

        @pl.when(row < n_pre)
        def _():
            start, end = indptr_ref[row], indptr_ref[row + 1]

            def chunk_body(c, acc):
                mask = _lanes(start, c, chunk) < end
                window = pl.ds(start + c * chunk, chunk)
                cols = plt.load(indices_ref.at[window], mask=mask, other=0)
                cols = jnp.where(mask, cols, 0)
                ct = plt.load(ct_ref.at[b * n_post + cols], mask=mask, other=0)
                if homogeneous:
                    return acc + jnp.sum(jnp.where(mask, ct, 0))
                w = plt.load(data_ref.at[window], mask=mask, other=0)
                return acc + jnp.sum(jnp.where(mask, w * ct, 0))

            total = lax.fori_loop(0, _chunks(start, end, chunk), chunk_body, jnp.zeros((), r_ref.dtype))
            if homogeneous:
                total = total * data_ref[0]
            r_ref[b * n_pre + row] = total.astype(r_ref.dtype)

        return carry

    lax.fori_loop(0, rows, row_body, 0)


@functools.partial(jax.jit, static_argnames=("interpret", "tuning"))
def _row_dot_batch(indptr, indices, data, cotangent, interpret: bool | None = None, tuning=_TUNING):
    batch, n_post = cotangent.shape
    n_pre = indptr.shape[0] - 1
    dtype = data.dtype
    if indices.shape[0] == 0 or n_pre == 0 or batch == 0:
        return jnp.zeros((batch, n_pre), dtype)
    interpret = _interpret(interpret)
    kernel = functools.partial(
        _row_dot_kernel,
        n_pre=n_pre,
        n_post=n_post,
        homogeneous=data.ndim == 0,
        chunk=tuning[0],
        rows=tuning[1],
    )
    call = _call(
        kernel,
        jax.ShapeDtypeStruct((batch * n_pre,), dtype),
        (pl.cdiv(n_pre, tuning[1]), batch),
        interpret,
        {},
        tuning[2],
    )
    return call(indptr, indices, data.reshape(-1), cotangent.astype(dtype).reshape(-1)).reshape(batch, n_pre)


def row_dot_batch(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    data: Float[Array, "*nnz"],
    cotangent: Float[Array, "b n_post"],
    *,
    interpret: bool | None = None,
) -> Float[Array, "b n_pre"]:
    """`row_dot` of each row of ``cotangent`` in one kernel (grid axis 1 is the batch)."""
    return _row_dot_batch(indptr, indices, data, cotangent, interpret, _tuning())


def row_dot(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    data: Float[Array, "*nnz"],
    cotangent: Float[Array, " n_post"],
    *,
    interpret: bool | None = None,
) -> Float[Array, " n_pre"]:
    """``(W @ ȳ)[i] = Σ_{k in row i} data[k]·ȳ[indices[k]]``: a masked gather-dot per row, no atomics."""
    return _row_dot_batch(indptr, indices, data, cotangent[None], interpret, _tuning())[0]


# --- gradient w.r.t. the weights: per-synapse products on spiking rows --------------------------------------


def _data_grad_kernel(
    indptr_ref, indices_ref, s_ref, ct_ref, g_in_ref, g_ref, *, n_pre, n_post, batch, chunk, rows
):
    del g_in_ref  # aliased to g_ref: zeros, kept on silent rows
    block = pl.program_id(0)

    def row_body(r, carry):
        row = block * rows + r
        safe_row = jnp.minimum(row, n_pre - 1)
        active = lax.fori_loop(
            0, batch, lambda b, n: n + (s_ref[b * n_pre + safe_row] != 0).astype(jnp.int32), jnp.int32(0)
        )

        @pl.when(jnp.logical_and(row < n_pre, active > 0))
        def _():
            start, end = indptr_ref[safe_row], indptr_ref[safe_row + 1]

            def chunk_body(c, carry):
                mask = _lanes(start, c, chunk) < end
                window = pl.ds(start + c * chunk, chunk)
                cols = plt.load(indices_ref.at[window], mask=mask, other=0)
                cols = jnp.where(mask, cols, 0)

                def batch_body(b, acc):
                    s = s_ref[b * n_pre + safe_row]
                    ct = plt.load(ct_ref.at[b * n_post + cols], mask=jnp.logical_and(mask, s != 0), other=0)
                    return acc + jnp.where(s != 0, s * ct, 0)

                g = lax.fori_loop(0, batch, batch_body, jnp.zeros((chunk,), g_ref.dtype))
                plt.store(g_ref.at[window], g.astype(g_ref.dtype), mask=mask)
                return carry

            lax.fori_loop(0, _chunks(start, end, chunk), chunk_body, 0)

        return carry

    lax.fori_loop(0, rows, row_body, 0)


@functools.partial(jax.jit, static_argnames=("nnz", "interpret", "tuning"))
def _data_grad_batch(
    indptr, indices, spikes, cotangent, nnz: int, interpret: bool | None = None, tuning=_TUNING
):
    batch, n_pre = spikes.shape
    n_post = cotangent.shape[1]
    dtype = cotangent.dtype
    if nnz == 0 or n_pre == 0 or batch == 0:
        return jnp.zeros((nnz,), dtype)
    interpret = _interpret(interpret)
    kernel = functools.partial(
        _data_grad_kernel, n_pre=n_pre, n_post=n_post, batch=batch, chunk=tuning[0], rows=tuning[1]
    )
    call = _call(
        kernel,
        jax.ShapeDtypeStruct((nnz,), dtype),
        (pl.cdiv(n_pre, tuning[1]),),
        interpret,
        {4: 0},
        tuning[2],
    )
    return call(
        indptr, indices, spikes.astype(dtype).reshape(-1), cotangent.reshape(-1), jnp.zeros(nnz, dtype)
    )


def data_grad_batch(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    spikes: Shaped[Array, "b n_pre"],
    cotangent: Float[Array, "b n_post"],
    nnz: int,
    *,
    interpret: bool | None = None,
) -> Float[Array, " nnz"]:
    """`data_grad` summed over the batch, in one kernel (each row sums its batch; no atomics)."""
    return _data_grad_batch(indptr, indices, spikes, cotangent, nnz, interpret, _tuning())


def data_grad(
    indptr: Int[Array, " n_pre+1"],
    indices: Int[Array, " nnz"],
    spikes: Shaped[Array, " n_pre"],
    cotangent: Float[Array, " n_post"],
    nnz: int,
    *,
    interpret: bool | None = None,
) -> Float[Array, " nnz"]:
    """``g[k] = s[row(k)]·ȳ[indices[k]]``, written only on rows with ``s != 0`` (zeros elsewhere)."""
    return _data_grad_batch(indptr, indices, spikes[None], cotangent[None], nnz, interpret, _tuning())


# --- the arrival ring: delayed rows scattered at slot (step + lag) mod L ------------------------------------
#
# The structure of `reference.arrival_scatter`: presynaptic neuron i owns the CSR rows row_ptr[i] …
# row_ptr[i + 1] − 1, row r arriving lag[r] ∈ [1, L] steps after the spike. One program per block of ``ROWS``
# neurons; a neuron whose spike is 0 is skipped (one scalar load), a spiking one walks its rows and, for each,
# its synapses in ``CHUNK``-wide masked loads, adding into the flattened ring ``[L·n_post]`` at
# ``slot·n_post + column``. ``now = step mod L`` is computed outside the kernel: a slot is one remainder.
# The transposes have the same loops: the weight cotangent gathers ``ȳ[slot, column]`` on the synapses of
# spiking neurons only (into an aliased zero ``[nnz]``), the spike cotangent is a gather-dot per neuron.


def _for_each_ring_row(row_ptr_ref, lag_ref, now_ref, neuron, length: int, n_post: int, body, init):
    """``body(row, base, carry)`` over the rows of ``neuron``; ``base = slot·n_post`` is the flat offset of
    the row's slot ``(now + lag[row]) mod L``. Returns the final carry."""

    def row_body(row, carry):
        slot = lax.rem(now_ref[0] + lag_ref[row], jnp.int32(length))
        return body(row, slot.astype(row_ptr_ref.dtype) * n_post, carry)

    return lax.fori_loop(row_ptr_ref[neuron], row_ptr_ref[neuron + 1], row_body, init)


def _for_each_neuron(rows: int, n_pre: int, body, s_ref=None):
    """``body(neuron, s)`` for each neuron of this program's block of ``rows`` (block ``pl.program_id(0)``)
    that exists (``neuron < n_pre``) and, given ``s_ref``, spiked (``s = s_ref[neuron] != 0``; without
    ``s_ref``, ``s`` is None and every neuron is visited)."""
    block = pl.program_id(0)

    def neuron_body(r, carry):
        neuron = block * rows + r
        safe = jnp.minimum(neuron, n_pre - 1)  # in range even where `body` is skipped
        if s_ref is None:
            s, active = None, neuron < n_pre
        else:
            s = s_ref[safe]
            active = jnp.logical_and(neuron < n_pre, s != 0)
        pl.when(active)(lambda: body(safe, s))
        return carry

    lax.fori_loop(0, rows, neuron_body, 0)


def _for_each_chunk(start, end, chunk: int, body, init):
    """``body(window, mask, carry)`` over the ``chunk``-wide steps of ``[start, end)``: ``window`` is the
    `pl.ds` of the step, ``mask`` its lanes below ``end``."""

    def chunk_body(c, carry):
        return body(pl.ds(start + c * chunk, chunk), _lanes(start, c, chunk) < end, carry)

    return lax.fori_loop(0, _chunks(start, end, chunk), chunk_body, init)


def _arrival_kernel(
    row_ptr_ref,
    lag_ref,
    indptr_ref,
    indices_ref,
    now_ref,
    data_ref,
    s_ref,
    ring_in_ref,
    ring_ref,
    *,
    n_pre,
    n_post,
    length,
    homogeneous,
    interpret,
    chunk,
    rows,
):
    del ring_in_ref  # aliased to ring_ref: the ring we add into
    spare = length * n_post if interpret else 0  # interpret mode: the masked lanes add 0 into a spare slot

    def neuron_body(neuron, s):
        def row(row, base, carry):
            def synapses(window, mask, carry):
                cols = plt.load(indices_ref.at[window], mask=mask, other=0)
                if homogeneous:
                    w = jnp.full((chunk,), data_ref[0], ring_ref.dtype)
                else:
                    w = plt.load(data_ref.at[window], mask=mask, other=0)
                values = jnp.where(mask, w * s, 0).astype(ring_ref.dtype)
                targets = jnp.where(mask, base + cols, spare)
                if interpret:
                    targets, values = _sum_repeats(targets, values, jnp.asarray(spare, targets.dtype))
                plt.atomic_add(ring_ref, (targets,), values, mask=None if interpret else mask)
                return carry

            return _for_each_chunk(indptr_ref[row], indptr_ref[row + 1], chunk, synapses, carry)

        _for_each_ring_row(row_ptr_ref, lag_ref, now_ref, neuron, length, n_post, row, 0)

    _for_each_neuron(rows, n_pre, neuron_body, s_ref)


def _ring_operands(row_ptr, lag, indices, step, length: int, n_post: int, interpret: bool):
    """``(lag as int32, now = step mod L as int32 [1])``; checks that flat ring offsets fit the indices'
    dtype."""
    flat = length * n_post + (1 if interpret else 0)
    if jnp.iinfo(indices.dtype).max < flat:
        raise ValueError(
            f"the ring [L = {length}, n_post = {n_post}] has more entries than {indices.dtype} indices "
            "address; use int64 indices (`jax.config.update('jax_enable_x64', True)`) or a shorter ring."
        )
    if row_ptr.dtype != indices.dtype:
        raise ValueError(f"`row_ptr` ({row_ptr.dtype}) must have the indices' dtype ({indices.dtype}).")
    now = jnp.remainder(jnp.asarray(step, jnp.int32), length).reshape(1)
    return lag.astype(jnp.int32), now


@functools.partial(jax.jit, static_argnames=("pop", "interpret", "tuning"))
def _arrival_scatter(row_ptr, lag, indptr, indices, step, data, spikes, ring, pop, interpret, tuning):
    length, n_post = ring.shape
    n_pre = row_ptr.shape[0] - 1
    if indices.shape[0] > 0 and n_pre > 0 and n_post > 0:
        interpret = _interpret(interpret)
        lag, now = _ring_operands(row_ptr, lag, indices, step, length, n_post, interpret)
        flat = ring.reshape(-1)
        if interpret:
            flat = jnp.concatenate([flat, jnp.zeros((1,), ring.dtype)])
        kernel = functools.partial(
            _arrival_kernel,
            n_pre=n_pre,
            n_post=n_post,
            length=length,
            homogeneous=data.ndim == 0,
            interpret=interpret,
            chunk=tuning[0],
            rows=tuning[1],
        )
        call = _call(
            kernel,
            jax.ShapeDtypeStruct(flat.shape, ring.dtype),
            (pl.cdiv(n_pre, tuning[1]),),
            interpret,
            {7: 0},
            tuning[2],
        )
        args = (row_ptr, lag, indptr, indices, now, data.reshape(-1), spikes.astype(ring.dtype), flat)
        flat = call(*args)
        ring = (flat[:-1] if interpret else flat).reshape(length, n_post)
    return reference.pop_slot(ring, step, pop)


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
    *,
    interpret: bool | None = None,
) -> tuple[Float[Array, "L n_post"], Float[Array, " n_pop"]]:
    """`reference.arrival_scatter` as an event-driven kernel: only the rows of neurons with ``s != 0`` are
    read, their synapses added atomically into the ring (aliased: updated in place when XLA can reuse its
    buffer, e.g. in a `lax.scan` carry); with ``pop`` the slot is then sliced out and cleared. On GPU the
    float atomics sum in a nondeterministic order: results, and all that follows from them, may differ in the
    last bits between runs."""
    return _arrival_scatter(
        row_ptr, lag, indptr, indices, step, data, spikes, ring, pop, interpret, _tuning()
    )


def _arrival_data_grad_kernel(
    row_ptr_ref,
    lag_ref,
    indptr_ref,
    indices_ref,
    now_ref,
    s_ref,
    ct_ref,
    g_in_ref,
    g_ref,
    *,
    n_pre,
    n_post,
    length,
    chunk,
    rows,
):
    del g_in_ref  # aliased to g_ref: zeros, kept on the synapses of silent neurons

    def neuron_body(neuron, s):
        def row(row, base, carry):
            def synapses(window, mask, carry):
                cols = jnp.where(mask, plt.load(indices_ref.at[window], mask=mask, other=0), 0)
                ct = plt.load(ct_ref.at[base + cols], mask=mask, other=0)
                plt.store(g_ref.at[window], (s * ct).astype(g_ref.dtype), mask=mask)
                return carry

            return _for_each_chunk(indptr_ref[row], indptr_ref[row + 1], chunk, synapses, carry)

        _for_each_ring_row(row_ptr_ref, lag_ref, now_ref, neuron, length, n_post, row, 0)

    _for_each_neuron(rows, n_pre, neuron_body, s_ref)


@functools.partial(jax.jit, static_argnames=("interpret", "tuning"))
def _arrival_data_grad(row_ptr, lag, indptr, indices, step, spikes, cotangent, interpret, tuning):
    length, n_post = cotangent.shape
    n_pre, nnz = row_ptr.shape[0] - 1, indices.shape[0]
    zeros = jnp.zeros((nnz,), cotangent.dtype)
    if nnz == 0 or n_pre == 0 or n_post == 0:
        return zeros
    interpret = _interpret(interpret)
    lag, now = _ring_operands(row_ptr, lag, indices, step, length, n_post, False)
    kernel = functools.partial(
        _arrival_data_grad_kernel, n_pre=n_pre, n_post=n_post, length=length, chunk=tuning[0], rows=tuning[1]
    )
    call = _call(
        kernel,
        jax.ShapeDtypeStruct((nnz,), cotangent.dtype),
        (pl.cdiv(n_pre, tuning[1]),),
        interpret,
        {7: 0},
        tuning[2],
    )
    spikes = spikes.astype(cotangent.dtype)
    return call(row_ptr, lag, indptr, indices, now, spikes, cotangent.reshape(-1), zeros)


def arrival_data_grad(
    row_ptr: Int[Array, " n_pre+1"],
    lag: Int[Array, " R"],
    indptr: Int[Array, " R+1"],
    indices: Int[Array, " nnz"],
    step: Int[Array, ""],
    spikes: Shaped[Array, " n_pre"],
    cotangent: Float[Array, "L n_post"],
    *,
    interpret: bool | None = None,
) -> Float[Array, " nnz"]:
    """`reference.arrival_data_grad` as a kernel: a zero ``[nnz]`` array aliased into it, written only on the
    synapses of neurons with ``s != 0`` (a gather from the cotangent's slot of each row; no atomics)."""
    return _arrival_data_grad(row_ptr, lag, indptr, indices, step, spikes, cotangent, interpret, _tuning())


def _arrival_row_dot_kernel(
    row_ptr_ref,
    lag_ref,
    indptr_ref,
    indices_ref,
    now_ref,
    data_ref,
    ct_ref,
    out_ref,
    *,
    n_pre,
    n_post,
    length,
    homogeneous,
    chunk,
    rows,
):

    def neuron_body(neuron, _):
        def row(row, base, total):
            def synapses(window, mask, total):
                cols = jnp.where(mask, plt.load(indices_ref.at[window], mask=mask, other=0), 0)
                ct = plt.load(ct_ref.at[base + cols], mask=mask, other=0)
                if homogeneous:
                    return total + jnp.sum(jnp.where(mask, ct, 0))
                w = plt.load(data_ref.at[window], mask=mask, other=0)
                return total + jnp.sum(jnp.where(mask, w * ct, 0))

            return _for_each_chunk(indptr_ref[row], indptr_ref[row + 1], chunk, synapses, total)

        zero = jnp.zeros((), out_ref.dtype)
        total = _for_each_ring_row(row_ptr_ref, lag_ref, now_ref, neuron, length, n_post, row, zero)
        out_ref[neuron] = (total * data_ref[0] if homogeneous else total).astype(out_ref.dtype)

    _for_each_neuron(rows, n_pre, neuron_body)


@functools.partial(jax.jit, static_argnames=("interpret", "tuning"))
def _arrival_row_dot(row_ptr, lag, indptr, indices, step, data, cotangent, interpret, tuning):
    length, n_post = cotangent.shape
    n_pre = row_ptr.shape[0] - 1
    if indices.shape[0] == 0 or n_pre == 0 or n_post == 0:
        return jnp.zeros((n_pre,), data.dtype)
    interpret = _interpret(interpret)
    lag, now = _ring_operands(row_ptr, lag, indices, step, length, n_post, False)
    kernel = functools.partial(
        _arrival_row_dot_kernel,
        n_pre=n_pre,
        n_post=n_post,
        length=length,
        homogeneous=data.ndim == 0,
        chunk=tuning[0],
        rows=tuning[1],
    )
    call = _call(
        kernel,
        jax.ShapeDtypeStruct((n_pre,), data.dtype),
        (pl.cdiv(n_pre, tuning[1]),),
        interpret,
        {},
        tuning[2],
    )
    return call(
        row_ptr, lag, indptr, indices, now, data.reshape(-1), cotangent.astype(data.dtype).reshape(-1)
    )


def arrival_row_dot(
    row_ptr: Int[Array, " n_pre+1"],
    lag: Int[Array, " R"],
    indptr: Int[Array, " R+1"],
    indices: Int[Array, " nnz"],
    step: Int[Array, ""],
    data: Float[Array, "*nnz"],
    cotangent: Float[Array, "L n_post"],
    *,
    interpret: bool | None = None,
) -> Float[Array, " n_pre"]:
    """`reference.arrival_row_dot` as a kernel: per neuron, a masked gather-dot over the synapses of its rows
    from each row's slot of the cotangent, written once (no atomics; every neuron is visited)."""
    return _arrival_row_dot(row_ptr, lag, indptr, indices, step, data, cotangent, interpret, _tuning())
