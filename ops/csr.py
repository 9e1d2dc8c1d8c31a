"""`CSR`: a sparse synaptic weight matrix (rows presynaptic) as an Equinox PyTree, and its builders.

The structure arrays ``indptr`` and ``indices`` are ordinary array leaves, not static metadata: a CSR can
be built or changed inside ``jit``, and two matrices of equal shapes reuse one compilation (static index
arrays would be compile-time constants that XLA folds into every computation).

The random builders sample on the host with NumPy, row by row without replacement, and never allocate a
dense ``n_pre × n_post`` matrix (except for rows more than half full, where the dense row mask is smaller
than the CSR itself).
"""

from __future__ import annotations

import contextlib
import contextvars
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from .kernels.reference import row_ids

INT32_LIMIT = 2**31 - 1

_DERIVED = contextvars.ContextVar("diffbrain_csr_derived", default=None)
"""While `derived` builds CSRs whose structure comes from a checked one (no traced check then): a 1-tuple
holding the flag of a bad structure that they inherit (see `CSR`), or None in it for none."""


@contextlib.contextmanager
def derived(source: CSR | None = None):
    """Build CSRs whose ``indptr``/``indices`` come from a checked CSR (the same arrays, a transpose, a
    shift into a wider matrix) without `CSR`'s traced check of them: O(nnz) saved per construction.

    Pass that CSR as ``source``: if its structure was found bad inside ``jit`` under ``EQX_ON_ERROR=nan``
    or ``off``, the weights of the CSRs built here are made NaN as its were (and they keep the flag)."""
    token = _DERIVED.set((None if source is None else source._bad,))
    try:
        yield
    finally:
        _DERIVED.reset(token)


def equinox_on_error() -> str:
    """What `eqx.error_if` does on a failed check: ``EQX_ON_ERROR`` as equinox read it at import ("raise",
    "nan", "off" or "breakpoint")."""
    try:
        from equinox._config import EQX_ON_ERROR
    except ImportError:  # another equinox layout: the variable it reads
        return os.environ.get("EQX_ON_ERROR", "raise")
    return EQX_ON_ERROR


def _traced_structure_check(
    indptr: Array, indices: Array, data: Array, n_pre: int, n_post: int
) -> tuple[Array, Array, Array, Array | None]:
    """``(indptr, indices, data, bad)`` with `eqx.error_if` on the structure's invariants, for index arrays
    traced inside ``jit``; this check runs once where the CSR is built, not per operation.

    Unless equinox raises (``EQX_ON_ERROR=nan`` fills the index arrays with their largest value, ``off``
    leaves them), the compiled kernels would index their arrays with a bad structure. So there it is
    replaced by its indices clipped into ``[0, n_post)`` and its ``indptr`` made non-decreasing in
    ``[0, nnz]``: no kernel then reads or writes outside its arrays; and its weights are NaN, so every
    current it reaches is NaN rather than silently wrong. ``bad`` is then that finding, a scalar bool,
    which the CSR keeps so that weights set later are NaN too; None under ``raise`` (where clipping would
    be an O(nnz) pass for nothing: the error comes first).
    """
    shapes_fit = indptr.ndim == indices.ndim == 1 and indptr.shape[0] == n_pre + 1
    integer = jnp.issubdtype(indptr.dtype, jnp.integer) and jnp.issubdtype(indices.dtype, jnp.integer)
    if not (shapes_fit and integer and jnp.issubdtype(data.dtype, jnp.floating)):
        return indptr, indices, data, None  # __check_init__ names what is wrong
    nnz = indices.shape[0]
    bad_indptr = (indptr[0] != 0) | (indptr[-1] != nnz) | jnp.any(indptr[1:] < indptr[:-1])
    message = f"`indptr` must be non-decreasing from 0 to nnz = {nnz}."
    checked_indptr = eqx.error_if(indptr, bad_indptr, message)
    bad_indices = jnp.any((indices < 0) | (indices >= n_post))
    checked_indices = eqx.error_if(indices, bad_indices, f"`indices` must lie in [0, n_post = {n_post}).")
    on_error = equinox_on_error()
    if on_error == "raise":
        return checked_indptr, checked_indices, data, None
    # A bad structure: each row keeps the synapses it can (with no column to clip into, none), all of them
    # NaN. A good one keeps the arrays given: under vmap `nan` fills those of the whole batch when one
    # structure is bad (their largest value, out of range), and `off` returns them as given anyway.
    bad = bad_indptr | bad_indices
    if on_error not in ("nan", "off"):  # e.g. a breakpoint: keep equinox's check in the computation
        indptr, indices = checked_indptr, checked_indices
    safe_indptr = jnp.clip(jax.lax.cummax(indptr), 0, nnz) if n_post > 0 else jnp.zeros_like(indptr)
    indptr = jnp.where(bad, safe_indptr, indptr)
    indices = jnp.where(bad, jnp.clip(indices, 0, max(n_post - 1, 0)), indices)
    return indptr, indices, _nan_where(bad, data), bad


def _nan_where(bad: Array, data: Array) -> Array:
    """``data``, all NaN where ``bad`` (a bad structure), with NaN gradients too; other dtypes unchanged
    (`CSR.__check_init__` names them)."""
    if not jnp.issubdtype(data.dtype, jnp.floating):
        return data
    return data * jnp.where(bad, jnp.asarray(jnp.nan, data.dtype), 1)


def _concrete(value) -> np.ndarray | None:
    return None if isinstance(value, jax.core.Tracer) else np.asarray(value)


def _check_indices(indices: np.ndarray | None, n_post: int) -> None:
    """Concrete column indices must lie in [0, n_post) (traced ones are checked at run time)."""
    if indices is not None and indices.size and (indices.min() < 0 or indices.max() >= n_post):
        raise ValueError(
            f"`indices` must lie in [0, n_post = {n_post}), got values in [{indices.min()}, {indices.max()}]."
        )


def _check_not_nan(name: str, weight) -> None:
    """Refuse NaN and infinite weights where that is cheap: NumPy or Python weights and a shared scalar. A
    JAX array of per-synapse weights is not read back (a device sync), nor a traced value inside ``jit``.

    Python numbers become float32, and so does float64 without ``jax_enable_x64``: a weight beyond
    float32's range (|w| > 3.4e38) would become infinite, so it is refused too."""
    if isinstance(weight, jax.core.Tracer) or (isinstance(weight, jax.Array) and weight.size > 1):
        return
    array = np.asarray(weight)
    if not jnp.issubdtype(array.dtype, jnp.floating):  # NumPy's own test misses bfloat16
        return
    python = not hasattr(weight, "dtype")
    narrowed = python or (array.dtype == np.float64 and not jax.config.jax_enable_x64)
    bad = np.count_nonzero(~np.isfinite(array) | (narrowed & (np.abs(array) > np.finfo(np.float32).max)))
    if bad:
        became = "Python numbers become" if python else "float64 becomes without jax_enable_x64"
        raise ValueError(
            f"`{name}` must be finite, got {bad} NaN or infinite weight(s)"
            + (f" in float32, which {became} (|w| ≤ 3.4e38)" if narrowed else "")
            + "; one such weight makes every current it reaches NaN or infinite."
        )


def _check_weight_dtype(weight) -> None:
    """A builder's ``weight`` is a Python number (cast to float32) or a floating array, never a bool,
    string or integer array (which `CSR` would refuse as ``data``)."""
    python_number = isinstance(weight, int | float) and not isinstance(weight, bool)
    dtype = np.asarray(weight).dtype if isinstance(weight, list | tuple) else getattr(weight, "dtype", None)
    if python_number or (dtype is not None and jnp.issubdtype(dtype, jnp.floating)):
        return
    got = dtype if dtype is not None else type(weight).__name__
    raise ValueError(
        f"`weight` must be a number or a floating array, got {got}; pass e.g. a float or "
        "weight.astype(np.float32)."
    )


def _check_weight(weight, nnz: int) -> None:
    """The weight of the random builders: one shared scalar or ``[nnz]`` per-synapse weights, not NaN."""
    _check_weight_dtype(weight)
    if np.shape(weight) not in ((), (nnz,)):
        raise ValueError(
            f"`weight` must be one shared scalar (or {nnz} per-synapse weights), got shape "
            f"{np.shape(weight)}; set per-synapse weights afterwards with `with_data`."
        )
    _check_not_nan("weight", weight)


def _index_dtype(*sizes: int) -> np.dtype:
    """int32 when every index and count fits, else int64 (which JAX keeps only with x64 enabled)."""
    if max(sizes, default=0) <= INT32_LIMIT:
        return np.dtype(np.int32)
    if not jax.config.jax_enable_x64:
        raise ValueError(
            f"a CSR with sizes {sizes} needs int64 indices: enable them with "
            "`jax.config.update('jax_enable_x64', True)` before building it."
        )
    return np.dtype(np.int64)


def _narrowed_host_integers(index) -> np.ndarray | None:
    """``index`` as a NumPy array if it is a host (NumPy or Python) integer array that JAX casts to a
    narrower dtype (int64 or uint64 without ``jax_enable_x64``), which may wrap its values; else None."""
    if isinstance(index, jax.Array):  # tracers too
        return None
    array = np.asarray(index)
    narrowed = jax.dtypes.canonicalize_dtype(array.dtype) != array.dtype
    return array if narrowed and np.issubdtype(array.dtype, np.integer) else None


def _check_host_structure(indptr, indices, n_post: int) -> None:
    """Check host integer ``indptr``/``indices`` that JAX would narrow against their ranges before the cast
    (which may wrap them: without x64, int64 2³² + 2 becomes int32 2), reporting the values given."""
    given = {"indptr": _narrowed_host_integers(indptr), "indices": _narrowed_host_integers(indices)}
    if given["indices"] is not None and given["indices"].ndim == 1:
        _check_indices(given["indices"], n_post)
    if given["indptr"] is not None and given["indptr"].size and np.ndim(indices) == 1:
        nnz, low, high = np.shape(indices)[0], given["indptr"].min(), given["indptr"].max()
        if low < 0 or high > nnz:
            raise ValueError(
                f"`indptr` must be non-decreasing from 0 to nnz = {nnz} (the length of `indices`), got "
                f"values in [{low}, {high}]."
            )
    for name, array in given.items():
        if array is not None and array.size and array.max() > INT32_LIMIT:
            raise ValueError(
                f"`{name}` holds values up to {array.max()}, beyond int32: int64 indices need "
                "`jax.config.update('jax_enable_x64', True)` before building the CSR."
            )


def _index_list(index) -> Array:
    """An index array as a JAX array; an empty Python list or tuple (no synapses) is an int32 one."""
    if not hasattr(index, "dtype") and np.size(index) == 0:
        return jnp.asarray(index, jnp.int32)
    return jnp.asarray(index)


def _weight_array(weight) -> Array:
    """A weight as a JAX array; Python numbers become float32 (the library's default precision)."""
    return jnp.asarray(weight, dtype=None if hasattr(weight, "dtype") else jnp.float32)


def check_key(key: PRNGKeyArray, hint: str = "") -> bool:
    """Raise ``ValueError`` naming ``key`` unless it is one JAX key: a typed ``jax.random.key(seed)`` (then
    return True) or a legacy uint32[2] / uint32[4] ``jax.random.PRNGKey(seed)`` (then False). ``hint`` ends
    the message."""
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
    legacy = dtype == jnp.uint32 and jnp.ndim(key) == 1 and jnp.shape(key)[0] in (2, 4)
    if not (typed and jnp.ndim(key) == 0) and not legacy:
        got = f"{dtype}{list(jnp.shape(key))}" if dtype is not None else type(key).__name__
        raise ValueError(
            f"`key` must be one JAX key, e.g. jax.random.key(0), got {got}{'; ' + hint if hint else ''}."
        )
    return typed


def numpy_generator(key: PRNGKeyArray) -> np.random.Generator:
    """A NumPy generator seeded by a JAX key: the same key gives the same matrix.

    Raises:
        ValueError: ``key`` is not one concrete JAX key (``jax.random.key(seed)`` or a legacy
            ``jax.random.PRNGKey(seed)``): an integer, a batch of keys, or a key traced inside ``jit`` or
            ``vmap`` (the structure is drawn in NumPy: build the matrix outside them).
    """
    typed = check_key(key, "for several matrices call the builder once per key")
    if isinstance(key, jax.core.Tracer):
        raise ValueError(
            "`key` must be concrete: the synapses are drawn in NumPy, so build the matrix outside "
            "jit/vmap (its weights may then be traced, e.g. with `with_data`)."
        )
    if typed:
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key).ravel())


def _edge_indices(value) -> np.ndarray:
    """``value`` as a NumPy array; an empty one (e.g. ``[]``, float64 to NumPy) as integers."""
    array = np.asarray(value)
    return array.astype(np.int32) if array.size == 0 else array


def _check_shape(shape) -> tuple[int, int]:
    """``shape`` as ``(n_pre, n_post)``, two non-negative integers."""
    try:
        n_pre, n_post = shape
    except (TypeError, ValueError):
        raise ValueError(f"`shape` must be (n_pre, n_post), got {shape!r}.") from None
    return _check_size("shape[0] (n_pre)", n_pre), _check_size("shape[1] (n_post)", n_post)


def _check_size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")
    return int(value)


def _distinct_sorted(rng: np.random.Generator, counts: np.ndarray, n: int) -> np.ndarray:
    """Row i holds ``counts[i]`` distinct integers from ``[0, n)``, sorted, in a
    ``[len(counts), max(counts)]`` array padded with ``n, n + 1, …`` (distinct: never taken for a repeat).

    Rejection: draw with replacement, sort each row, redraw the repeats, and repeat on the rows that had
    any. With ``counts ≤ n/2`` about ``k²/2n`` repeats per row remain after each round, so a few rounds do;
    the first round works in place on all rows, later ones on the few rows left.
    """
    width = int(counts.max(initial=0))
    dtype = _index_dtype(n + width)
    columns = rng.integers(0, n, (len(counts), width), dtype=dtype)
    padding = np.arange(width) >= counts[:, None]
    if padding.any():
        columns[padding] = np.broadcast_to(n + np.arange(width, dtype=dtype), columns.shape)[padding]
    block, rows = columns, None  # rows None: the block is all of `columns`
    while width > 1:
        block.sort(axis=1)
        repeats = block[:, 1:] == block[:, :-1]
        again = np.flatnonzero(repeats.any(axis=1))
        if rows is not None:
            columns[rows] = block
        if not again.size:
            break
        block[:, 1:][repeats] = rng.integers(0, n, int(repeats.sum()), dtype=dtype)
        block, rows = block[again], again if rows is None else rows[again]
    return columns


def _sample_columns(
    rng: np.random.Generator, counts: np.ndarray, n_post: int, allow_self: bool
) -> np.ndarray:
    """For each row i, ``counts[i]`` distinct sorted columns from ``[0, n_post)`` (without ``i`` itself
    unless ``allow_self``), concatenated row after row: the ``indices`` of a CSR."""
    n_rows, n_choices = len(counts), n_post if allow_self else n_post - 1
    if np.any(2 * counts > n_choices):  # rows more than half full: draw the columns left out instead
        left_out = _distinct_sorted(rng, n_choices - counts, n_choices)
        keep = np.ones((n_rows, n_choices + left_out.shape[1]), bool)
        keep[np.arange(n_rows)[:, None], left_out] = False
        rows, columns = np.nonzero(keep[:, :n_choices])
        columns = columns.astype(_index_dtype(n_post))
    else:
        columns = _distinct_sorted(rng, counts, n_choices)
        rows = np.arange(n_rows)[:, None]
    if not allow_self:  # skip the diagonal: choices at or after the row's own index shift up by one
        columns += columns >= rows
    if columns.ndim == 2 and np.all(counts == columns.shape[1]):  # no padding
        return columns.ravel()
    return columns[columns < n_post]


def _indptr(counts: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.concatenate([np.zeros(1, dtype), np.cumsum(counts, dtype=dtype)])


def _from_coo(pre: np.ndarray, post: np.ndarray, data: np.ndarray | None, shape: tuple[int, int]):
    """CSR arrays ``(indptr, indices, data)`` from edges in any order; repeated edges raise ``ValueError``."""
    n_pre, n_post = shape
    keys = pre.astype(np.int64) * n_post + post.astype(np.int64)  # uint64 with int64 would be float64
    if data is None:
        keys.sort()
    else:
        order = np.argsort(keys)
        keys, data = keys[order], data[order]
    repeated = np.flatnonzero(keys[1:] == keys[:-1])
    if repeated.size:
        first = divmod(int(keys[repeated[0]]), n_post)
        raise ValueError(
            f"`pre`/`post` repeat {repeated.size} edge(s), e.g. {first}; a CSR stores each synapse once. "
            "Sum the weights of repeated edges before building it."
        )
    dtype = _index_dtype(keys.size, n_pre, n_post)
    rows = keys // n_post
    indptr = _indptr(np.bincount(rows, minlength=n_pre), dtype)
    return indptr, (keys - rows * n_post).astype(dtype), data


class CSR(eqx.Module):
    """A sparse weight matrix in compressed sparse row form; rows are presynaptic, columns postsynaptic.

    Row ``i``'s synapses are ``indices[indptr[i]:indptr[i + 1]]`` (postsynaptic neurons) with weights
    ``data[indptr[i]:indptr[i + 1]]``, or the single shared weight ``data`` when it is a scalar
    (homogeneous). Weights carry the unit of what they scale (e.g. nS per spike).

    Attributes:
        indptr: ``[n_pre + 1]`` integer row pointers, non-decreasing from 0 to ``nnz``.
        indices: ``[nnz]`` integer postsynaptic indices in ``[0, n_post)``.
        data: ``[nnz]`` floating weights, or ``[]`` for one weight shared by all synapses.
        shape: ``(n_pre, n_post)``, static.

    Construction checks the arrays and raises ``ValueError`` naming the bad argument; inside ``jit``, where
    their values are traced, the shapes and dtypes are checked the same way and the values with
    `eqx.error_if` (an O(nnz) check where the CSR is built: build it once, outside loops). That check raises
    under equinox's default ``EQX_ON_ERROR=raise``; under ``nan`` or ``off``, a bad structure's indices are
    clipped into range and its weights made NaN, so its products are NaN, also with weights set later by
    `with_data` and on its transpose (weights set with `eqx.tree_at` are not made NaN). A structure set with
    `eqx.tree_at` is not checked: the kernels would index out of bounds with it. Index arrays are int32, or
    int64 once ``nnz`` or a size reaches 2³¹.

    Examples:
        >>> import jax
        >>> from diffbrain import ops
        >>> W = ops.CSR.fixed_in_degree(jax.random.key(0), 1000, 800, k=40, weight=0.6)
        >>> W.shape, W.nnz, W.data.shape
        ((1000, 800), 32000, ())
    """

    indptr: Int[Array, " n_pre+1"]
    indices: Int[Array, " nnz"]
    data: Float[Array, "*nnz"]
    shape: tuple[int, int] = eqx.field(static=True)
    _bad: Bool[Array, ""] | None = eqx.field(default=None, repr=False)
    """Whether the structure was found bad inside ``jit`` under ``EQX_ON_ERROR=nan``/``off`` (then clipped
    into range): weights set later with `with_data`, and those of the transpose, are made NaN. None (no
    leaf, no cost) for a structure checked on the host or under ``raise``."""

    def __init__(
        self,
        indptr: Int[ArrayLike, " n_pre+1"],
        indices: Int[ArrayLike, " nnz"],
        data: Float[ArrayLike, "*nnz"],
        shape: tuple[int, int],
    ):
        self.shape = _check_shape(shape)
        _check_host_structure(indptr, indices, self.shape[1])
        indptr, indices = _index_list(indptr), _index_list(indices)
        if jnp.issubdtype(indptr.dtype, jnp.integer) and jnp.issubdtype(indices.dtype, jnp.integer):
            # the kernels take both index arrays in one dtype, int32 or int64
            common = jnp.promote_types(indptr.dtype, indices.dtype)
            if common not in (jnp.int32, jnp.int64):
                fits = common.itemsize <= 4 and max(indices.shape[0], *self.shape) < 2**31
                common = jnp.dtype(jnp.int32 if fits else jnp.int64)
            if common != indices.dtype:  # the cast may wrap (uint32 ≥ 2³¹): check the values given first
                _check_indices(_concrete(indices), self.shape[1])
            indptr, indices = indptr.astype(common), indices.astype(common)
        _check_not_nan("data", data)
        data = _weight_array(data)
        derivation, bad = _DERIVED.get(), None
        if derivation is not None:  # a checked structure, maybe found bad: then so are the new weights
            (bad,) = derivation
            if bad is not None:
                data = _nan_where(bad, data)
        elif isinstance(indptr, jax.core.Tracer) or isinstance(indices, jax.core.Tracer):
            indptr, indices, data, bad = _traced_structure_check(indptr, indices, data, *self.shape)
        self.indptr, self.indices, self.data, self._bad = indptr, indices, data, bad

    def __check_init__(self):
        n_pre, n_post = self.shape
        for name, array in (("indptr", self.indptr), ("indices", self.indices)):
            if array.ndim != 1 or not jnp.issubdtype(array.dtype, jnp.integer):
                raise ValueError(
                    f"`{name}` must be a 1-D integer array, got {array.dtype}{list(array.shape)}."
                )
        if self.indptr.shape[0] != n_pre + 1:
            raise ValueError(
                f"`indptr` must have n_pre + 1 = {n_pre + 1} entries, got {self.indptr.shape[0]}."
            )
        if not jnp.issubdtype(self.data.dtype, jnp.floating) or self.data.shape not in ((), (self.nnz,)):
            raise ValueError(
                f"`data` must be floating with shape ({self.nnz},) (one weight per synapse) or () (shared), "
                f"got {self.data.dtype}{list(self.data.shape)}."
            )
        for name, array in (("indptr", self.indptr), ("indices", self.indices)):
            if jnp.iinfo(array.dtype).max < max(self.nnz, n_pre, n_post):
                raise ValueError(
                    f"`{name}` of dtype {array.dtype} cannot hold nnz = {self.nnz} and shape {self.shape}; "
                    "use int32, or int64 from 2³¹ on."
                )
        indptr = _concrete(self.indptr)
        if indptr is not None:
            rule = f"`indptr` must be non-decreasing from 0 to nnz = {self.nnz} (the length of `indices`)"
            if indptr[0] != 0 or indptr[-1] != self.nnz:
                raise ValueError(f"{rule}, got first {indptr[0]}, last {indptr[-1]}.")
            steps = np.diff(indptr)
            if np.any(steps < 0):
                i = int(np.argmax(steps < 0))  # the first decrease
                raise ValueError(
                    f"{rule}, but it decreases at position {i + 1}: indptr[{i}] = {indptr[i]}, "
                    f"indptr[{i + 1}] = {indptr[i + 1]}."
                )
        _check_indices(_concrete(self.indices), n_post)

    @property
    def nnz(self) -> int:
        """Number of stored synapses."""
        return self.indices.shape[0]

    @property
    def homogeneous(self) -> bool:
        """Whether all synapses share one weight (``data`` is a scalar)."""
        return self.data.ndim == 0

    def with_data(self, data: Float[ArrayLike, "*nnz"]) -> CSR:
        """The same synapses with new weights, ``[nnz]`` or a shared scalar."""
        with derived(self):
            return CSR(self.indptr, self.indices, data, self.shape)

    @eqx.filter_jit  # one compilation instead of one per eager operation
    def to_dense(self) -> Float[Array, "n_pre n_post"]:
        """The dense ``[n_pre, n_post]`` matrix — for tests and small networks only."""
        rows = row_ids(self.indptr, self.nnz)
        weights = jnp.broadcast_to(self.data, self.indices.shape)
        return jnp.zeros(self.shape, self.data.dtype).at[rows, self.indices].add(weights)

    @property
    def T(self) -> CSR:
        """The transpose ``(n_post, n_pre)`` as a CSR (rows postsynaptic); works inside ``jit``."""
        return self._transpose()

    @eqx.filter_jit
    def _transpose(self) -> CSR:
        rows = row_ids(self.indptr, self.nnz)
        order = jnp.argsort(self.indices, stable=True)
        counts = jnp.bincount(self.indices, length=self.shape[1]).astype(self.indptr.dtype)
        indptr = jnp.concatenate([jnp.zeros(1, self.indptr.dtype), jnp.cumsum(counts)])
        data = self.data if self.homogeneous else self.data[order]
        with derived(self):
            return CSR(indptr, rows[order].astype(self.indices.dtype), data, self.shape[::-1])

    @classmethod
    def from_dense(cls, matrix: Float[ArrayLike, "n_pre n_post"]) -> CSR:
        """The nonzero entries of a concrete 2-D floating ``matrix`` (outside ``jit``), one synapse each.

        Raises:
            ValueError: ``matrix`` is traced (inside ``jit``), not 2-D, not floating, or has NaN entries.
        """
        dense = _concrete(matrix)
        if dense is None:
            raise ValueError("`matrix` must be concrete: build the CSR outside jit.")
        if dense.ndim != 2:
            raise ValueError(f"`matrix` must be 2-D [n_pre, n_post], got shape {dense.shape}.")
        if not jnp.issubdtype(dense.dtype, jnp.floating):  # bfloat16 too
            raise ValueError(
                f"`matrix` must be floating, got {dense.dtype}; pass e.g. matrix.astype(np.float32)."
            )
        rows, columns = np.nonzero(dense)
        data = dense[rows, columns]
        _check_not_nan("matrix", data)
        dtype = _index_dtype(rows.size, *dense.shape)
        indptr = _indptr(np.bincount(rows, minlength=dense.shape[0]), dtype)
        return cls(indptr, columns.astype(dtype), data, dense.shape)

    @classmethod
    def from_edges(
        cls,
        pre: Int[ArrayLike, " nnz"],
        post: Int[ArrayLike, " nnz"],
        weight: Float[ArrayLike, "*nnz"],
        shape: tuple[int, int],
    ) -> CSR:
        """Synapses ``pre[k] → post[k]`` in any order, with per-edge weights ``[nnz]`` or one shared scalar.

        ``pre`` and ``post`` (the structure) must be concrete; ``weight`` may be traced (inside ``jit``,
        ``grad`` or ``vmap``), so a loss can be differentiated through per-edge weights.

        Raises:
            ValueError: ``pre`` or ``post`` traced, lengths differ, an index is out of range, an edge is
                repeated (repeats are rejected, not summed: sum their weights first), ``shape`` is not
                two sizes, or ``weight`` is not floating (a Python number is cast to float32) or NaN.
        """
        n_pre, n_post = _check_shape(shape)
        for name, value in (("pre", pre), ("post", post)):
            if isinstance(value, jax.core.Tracer):
                raise ValueError(
                    f"`{name}` must be concrete: the synapses' structure is fixed, so build the CSR from "
                    "concrete edges outside jit/grad/vmap (only `weight` may be traced)."
                )
        edges = {"pre": _edge_indices(pre), "post": _edge_indices(post)}
        for (name, array), size in zip(edges.items(), (n_pre, n_post), strict=True):
            if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
                raise ValueError(
                    f"`{name}` must be a 1-D integer array, got {array.dtype}{list(array.shape)}."
                )
            if array.size and (array.min() < 0 or array.max() >= size):
                raise ValueError(
                    f"`{name}` must lie in [0, {size}), got values in [{array.min()}, {array.max()}]."
                )
        if edges["pre"].shape != edges["post"].shape:
            raise ValueError(
                f"`pre` and `post` must have equal lengths, got {edges['pre'].size} and {edges['post'].size}."
            )
        weights = weight if isinstance(weight, jax.core.Tracer) else np.asarray(weight)
        if weights.shape not in ((), edges["pre"].shape):
            raise ValueError(
                f"`weight` must be a scalar or have shape {edges['pre'].shape}, got {weights.shape}."
            )
        _check_weight_dtype(weight if isinstance(weight, int | float) else weights)
        _check_not_nan("weight", weights if hasattr(weight, "dtype") else weight)
        if not hasattr(weight, "dtype"):  # Python numbers become float32, as everywhere else
            weights = weights.astype(np.float32)
        indptr, indices, data = _from_coo(
            edges["pre"], edges["post"], weights if weights.ndim else None, (n_pre, n_post)
        )
        return cls(indptr, indices, weight if data is None else data, (n_pre, n_post))

    @classmethod
    def fixed_prob(
        cls,
        key: PRNGKeyArray,
        n_pre: int,
        n_post: int,
        p: float,
        weight: float | Float[ArrayLike, ""] = 1.0,
        allow_self: bool = True,
    ) -> CSR:
        """Each of the ``n_pre × n_post`` possible synapses exists independently with probability ``p``.

        Args:
            key: JAX PRNG key; the same key gives the same matrix.
            n_pre, n_post: numbers of presynaptic and postsynaptic neurons.
            p: connection probability in [0, 1].
            weight: the shared weight, or one weight per synapse ``[nnz]`` in the CSR's order (row by
                row, i.e. grouped by presynaptic neuron, columns ascending); usually per-synapse weights
                are set afterwards with `with_data`.
            allow_self: if False, no synapse ``i → i`` (needs ``n_pre == n_post``).
        """
        n_pre, n_post = _check_size("n_pre", n_pre), _check_size("n_post", n_post)
        real = not isinstance(p, bool) and np.ndim(p) == 0 and np.issubdtype(np.asarray(p).dtype, np.number)
        if not (real and 0.0 <= float(p) <= 1.0):
            raise ValueError(f"`p` must be one probability in [0, 1] (a scalar), got {p!r}.")
        rng = numpy_generator(key)
        n_choices = _choices(n_pre, n_post, allow_self)
        return cls._from_counts(rng, rng.binomial(n_choices, p, n_pre), n_post, weight, allow_self)

    @classmethod
    def fixed_out_degree(
        cls,
        key: PRNGKeyArray,
        n_pre: int,
        n_post: int,
        k: int,
        weight: float | Float[ArrayLike, ""] = 1.0,
        allow_self: bool = True,
    ) -> CSR:
        """Every presynaptic neuron projects to exactly ``k`` distinct postsynaptic neurons, chosen uniformly.

        Arguments as in `fixed_prob`, with ``k`` the number of synapses per row (out-degree).
        """
        n_pre, n_post, k = _check_size("n_pre", n_pre), _check_size("n_post", n_post), _check_size("k", k)
        _check_degree(k, _choices(n_pre, n_post, allow_self), "n_post")
        return cls._from_counts(numpy_generator(key), np.full(n_pre, k), n_post, weight, allow_self)

    @classmethod
    def fixed_in_degree(
        cls,
        key: PRNGKeyArray,
        n_pre: int,
        n_post: int,
        k: int,
        weight: float | Float[ArrayLike, ""] = 1.0,
        allow_self: bool = True,
    ) -> CSR:
        """Every postsynaptic neuron receives exactly ``k`` synapses from distinct presynaptic neurons.

        Arguments as in `fixed_prob`, with ``k`` the number of synapses per column (in-degree).
        """
        n_pre, n_post, k = _check_size("n_pre", n_pre), _check_size("n_post", n_post), _check_size("k", k)
        _check_degree(k, _choices(n_post, n_pre, allow_self), "n_pre")
        _check_weight(weight, n_post * k)
        pre = _sample_columns(numpy_generator(key), np.full(n_post, k), n_pre, allow_self)
        post = np.repeat(np.arange(n_post, dtype=pre.dtype), k)
        indptr, indices, _ = _from_coo(pre, post, None, (n_pre, n_post))
        return cls(indptr, indices, weight, (n_pre, n_post))

    @classmethod
    def _from_counts(cls, rng, counts: np.ndarray, n_post: int, weight, allow_self: bool) -> CSR:
        """``counts[i]`` random distinct columns in row i."""
        indices = _sample_columns(rng, counts, n_post, allow_self)
        _check_weight(weight, indices.size)
        indptr = _indptr(counts, _index_dtype(indices.size, counts.size, n_post))
        return cls(indptr, indices.astype(indptr.dtype, copy=False), weight, (counts.size, n_post))


def _choices(n_rows: int, n_columns: int, allow_self: bool) -> int:
    """How many columns a row may choose from."""
    if allow_self:
        return n_columns
    if n_rows != n_columns:
        raise ValueError(
            f"`allow_self=False` excludes synapses i → i of a population onto itself; it needs n_pre == "
            f"n_post, got {n_rows} and {n_columns}."
        )
    return n_columns - 1


def _check_degree(k: int, n_choices: int, population: str) -> None:
    if k > n_choices:
        raise ValueError(f"`k` = {k} exceeds the {n_choices} distinct neurons available in `{population}`.")
