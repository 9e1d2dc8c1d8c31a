"""`from_adjacency`: any connectome — a matrix of synapse counts — as a spiking `Network`.

Chemical synapses become conductance-based (by default) exponential synapses whose weight is the synapse
count times ``weight_per_synapse``; presynaptic neurons marked ``inhibitory`` act through the inhibitory
receptor (with negative weights when it is current-based). Gap junctions become conductances,
``I_gap,j = Σ_i g_ij (V_i − V_j)`` with ``g_ij`` the count of junctions i → j (``orientation="pre_post"``)
times ``conductance_per_junction`` (`GapJunctions`, two `ops.csr_matvec` per step; a symmetric matrix
conducts both ways). Works on dense arrays, SciPy sparse matrices (never densified) and labelled tables
(pandas ``DataFrame``: rows and columns must carry the same labels).

Examples:
    >>> import numpy as np
    >>> from diffbrain.zoo import networks
    >>> counts = np.array([[0, 3, 0], [0, 0, 5], [1, 0, 0]])  # counts[pre, post]
    >>> net = networks.from_adjacency(counts, labels=["A", "B", "B"], weight_per_synapse=2.0)
    >>> net.names, net.sizes, net.weights("exc").tolist()
    (('A', 'B'), (1, 2), [6.0, 10.0, 2.0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from jaxtyping import ArrayLike, Bool, Float

from ..neurons._base import AbstractSpikingNeuron
from ..neurons.lif import LIF
from ..synapses._base import AbstractSynapse
from ..synapses.expon import Expon
from .network import Background, Edges, GapJunctions, Network

ORIENTATIONS = ("pre_post", "post_pre")


def from_adjacency(
    matrix: Float[ArrayLike, "n n"],
    *,
    orientation: str = "pre_post",
    labels: Sequence[str] | None = None,
    weight_per_synapse: float = 1.0,
    inhibitory: Bool[ArrayLike, " n"] | None = None,
    gap_junctions: Float[ArrayLike, "n n"] | None = None,
    conductance_per_junction: float = 1.0,
    neuron: AbstractSpikingNeuron | None = None,
    receptors: Mapping[str, AbstractSynapse] | None = None,
    delay: float | None = None,
    dt: float = 0.1,
    I_ext: Float[ArrayLike, "*n"] | float = 0.0,
    background: Background | Sequence[Background] | None = None,
) -> Network:
    """A `Network` from a connectome's synapse counts.

    Args:
        matrix: ``[n, n]`` synapse counts (≥ 0, finite; a bool matrix counts each True as one synapse): a
            NumPy-like array, a SciPy sparse matrix or a labelled table (``.index``/``.columns``/
            ``.to_numpy()``, whose labels become ``labels``). A table numbered 0..n−1 in order on both
            axes (pandas' default, e.g. ``pd.read_csv(path, header=None)``), or on its rows with the
            columns "0".."n−1" as text (such a table written ``to_csv`` and read back with
            ``index_col=0``), is unlabelled, as an array; likewise ``gap_junctions``.
        orientation: ``"pre_post"`` when ``matrix[i, j]`` counts synapses i → j, ``"post_pre"`` when it
            counts j → i. The same for ``gap_junctions``.
        labels: one label per neuron (cell type or name); neurons with equal labels must be consecutive
            and form one population named by the label. None: one population ``"neurons"``.
        weight_per_synapse: the size of one synapse's weight, ≥ 0, in the receptors' unit (nS for the
            default conductance-based ones; for current-based ones the neuron's input unit); a
            connection's weight is its count times this, negated for inhibitory synapses onto a
            current-based ``"inh"`` receptor with ``g_max > 0`` (one with ``g_max < 0`` is inhibitory
            already; a conductance-based one takes it as it is: its reversal potential makes it
            inhibitory).
        inhibitory: ``[n]`` bool, True for neurons whose synapses are inhibitory (receptor ``"inh"``);
            None: all excitatory (receptor ``"exc"``).
        gap_junctions: ``[n, n]`` gap-junction counts, or None. Give a symmetric matrix for junctions that
            conduct both ways. A labelled table must follow the neurons' labels (``matrix``'s, else
            ``labels``) in order; one labelled by neuron names while those are cell types is taken in
            ``matrix``'s order. Their currents are in pA: the neuron must take pA (`LIF`, `AdEx`).
        conductance_per_junction: nS per gap junction.
        neuron: the neuron model (default `LIF` with its defaults).
        receptors: ``{"exc": …, "inh": …}`` (default: the COBA benchmark's conductance-based `Expon`,
            τ 5 ms and E 0 mV, τ 10 ms and E −80 mV).
        delay: synaptic latency, ms (default 0: a spike acts in the next step).
        dt, I_ext, background: as in `Network.build`.

    Raises:
        ValueError: naming the argument — a non-square matrix, NaN or negative counts, labels that do not
            match the matrix (count, row/column labels, non-consecutive), a labelled ``gap_junctions`` out
            of the neurons' order, a bad ``orientation``, a negative ``weight_per_synapse``, synapses of
            (non-)``inhibitory`` neurons without their ``receptors`` entry, gap junctions for a neuron whose
            input is not in pA (`Network.build`).
    """
    if orientation not in ORIENTATIONS:
        raise ValueError(f"`orientation` must be one of {ORIENTATIONS}, got {orientation!r}.")
    matrix, table_labels = _labelled(matrix, "matrix")
    pre, post, count, n = _entries("matrix", matrix, orientation)
    names, sizes = _populations(labels if labels is not None else table_labels, n)
    if inhibitory is None:
        inhibitory = np.zeros(n, bool)
    inhibitory = np.asarray(inhibitory)
    if inhibitory.shape != (n,) or inhibitory.dtype != bool:
        raise ValueError(
            f"`inhibitory` must be a bool array of shape ({n},), got "
            f"{inhibitory.dtype}{list(inhibitory.shape)}."
        )
    _real_number(
        "weight_per_synapse",
        weight_per_synapse,
        'finite and ≥ 0 (inhibitory synapses take their sign from the receptor "inh")',
    )
    _real_number("conductance_per_junction", conductance_per_junction, "finite and ≥ 0 nS")
    delay = 0.0 if delay is None else delay
    _real_number("delay", delay, "a finite latency ≥ 0 ms")
    if receptors is None:
        receptors = {"exc": Expon(tau=5.0, E=0.0), "inh": Expon(tau=10.0, E=-80.0)}
    from_inh = inhibitory[pre]
    # a current carries its sign; a conductance is ≥ 0 and its reversal potential makes it inhibitory. A
    # current-based receptor with a negative g_max (the zoo's inhibitory convention) is negative already.
    inh = receptors.get("inh")
    positive_current = getattr(inh, "mode", None) == "cuba" and np.all(np.asarray(inh.g_max) > 0)
    inh_sign = -1.0 if positive_current else 1.0
    edges = {
        name: Edges(pre[mask], post[mask], count[mask] * (sign * weight_per_synapse), delay)
        for name, mask, sign in (("exc", ~from_inh, 1.0), ("inh", from_inh, inh_sign))
        if mask.any()
    }
    for name, neurons, example in (
        ("exc", "neurons not marked `inhibitory`", "Expon(tau=5.0, E=0.0)"),
        ("inh", "neurons marked `inhibitory`", "Expon(tau=10.0, E=-80.0)"),
    ):
        if name in edges and name not in receptors:
            raise ValueError(
                f"{neurons} have synapses, which act through the receptor {name!r}, but `receptors` has "
                f"none (it has {sorted(receptors)}); add one, e.g. {name!r}: {example}."
            )
    gap = None
    if gap_junctions is not None:
        gap_matrix, gap_labels = _labelled(gap_junctions, "gap_junctions")
        g_pre, g_post, g_count, g_n = _entries("gap_junctions", gap_matrix, orientation)
        if g_n != n:
            raise ValueError(f"`gap_junctions` must be [{n}, {n}] like `matrix`, got [{g_n}, {g_n}].")
        # the neurons' labels: the matrix's own, else those given (an unlabelled matrix is in their order).
        # Labels that several neurons share (cell types) say nothing of the order of a table that names
        # each neuron: such a table is taken in the matrix's order.
        known, source = (table_labels, "`matrix`") if table_labels is not None else (labels, "`labels`")
        if gap_labels is not None and known is not None:
            known = [str(x) for x in known]
            comparable = len(set(known)) == n or len(set(gap_labels)) < n
            if comparable and gap_labels != known:
                raise ValueError(_gap_label_mismatch(gap_labels, known, source))
        gap = GapJunctions(g_pre, g_post, g_count * conductance_per_junction)
    return Network.build(
        sizes=dict(zip(names, sizes, strict=True)),
        neuron=LIF() if neuron is None else neuron,
        receptors=receptors,
        edges=edges,
        dt=dt,
        background=background,
        I_ext=I_ext,
        gap_junctions=gap,
    )


def _labelled(matrix, name: str):
    """The matrix, and its labels when it is a labelled table (rows and columns labelled alike). A table
    numbered as pandas numbers an unlabelled one (`_numbered`) has no labels: on both axes, or on its rows
    with the columns "0".."n−1" as text, as such a table reads back from a CSV file (its header is text)."""
    if hasattr(matrix, "index") and hasattr(matrix, "columns") and hasattr(matrix, "to_numpy"):
        text_numbers = [str(i) for i in range(len(matrix.columns))]
        if _numbered(matrix.index) and (_numbered(matrix.columns) or list(matrix.columns) == text_numbers):
            return matrix.to_numpy(), None
        rows, columns = [str(x) for x in matrix.index], [str(x) for x in matrix.columns]
        if rows != columns:
            first = next((i for i, (r, c) in enumerate(zip(rows, columns, strict=False)) if r != c), None)
            where = f"row {rows[first]!r} vs column {columns[first]!r}" if first is not None else "lengths"
            raise ValueError(
                f"`{name}` rows and columns must carry the same labels in one order (they differ: {where})."
            )
        return matrix.to_numpy(), rows
    return matrix, None


def _numbered(axis) -> bool:
    """Whether a table's axis (``.index``, ``.columns``) holds pandas' default numbering, no labels: the
    integers 0..n−1 in order, as the RangeIndex of ``pd.DataFrame(array)`` or ``pd.read_csv(path,
    header=None)``. Integers in another order (rows reordered) and strings such as "0" are labels."""
    numbers = np.asarray(axis)
    return numbers.dtype.kind in "iu" and np.array_equal(numbers, np.arange(len(numbers)))


def _gap_label_mismatch(gap_labels: list[str], known: list[str], source: str) -> str:
    """The message for a gap-junction table whose labels are not ``known`` (the neurons' labels, from
    ``source``, as many) in order: reorder it when it holds the same labels, else it names other neurons."""
    first = next(i for i, (g, k) in enumerate(zip(gap_labels, known, strict=True)) if g != k)
    where = f"position {first}: {gap_labels[first]!r}, {source} has {known[first]!r}"
    if sorted(gap_labels) == sorted(known):
        return (
            f"`gap_junctions` is labelled differently from {source} ({where}): its rows and columns must "
            "follow the neurons' order; reorder it, e.g. gap_junctions.loc[order, order] with order the "
            f"labels of {source}."
        )
    return (
        f"`gap_junctions` is labelled differently from {source} ({where}): it names other neurons; label "
        f"it as {source} is."
    )


def _entries(name: str, matrix, orientation: str):
    """(pre, post, count, n) of the nonzero entries; a sparse matrix is never densified."""
    if hasattr(matrix, "tocoo"):
        coo = matrix.tocoo()
        shape, rows, columns, values = (
            coo.shape,
            np.asarray(coo.row),
            np.asarray(coo.col),
            np.asarray(coo.data),
        )
        _check_real_counts(name, values.dtype)
    else:
        dense = np.asarray(matrix)
        if dense.ndim != 2:
            raise ValueError(f"`{name}` must be a 2-D [n, n] matrix, got shape {dense.shape}.")
        shape = dense.shape
        if dense.dtype == bool:  # a binary connectome: each True is one synapse
            dense = dense.astype(np.int8)
        _check_real_counts(name, dense.dtype)
        rows, columns = np.nonzero(dense)
        values = dense[rows, columns]
        if not np.all(np.isfinite(dense)):
            raise ValueError(
                f"`{name}` must be finite; it has {int(np.sum(~np.isfinite(dense)))} NaN/inf entries."
            )
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(
            f"`{name}` must be square [n, n] (one row and column per neuron), got shape {tuple(shape)}."
        )
    values = values.astype(float)
    if not np.all(np.isfinite(values)):
        raise ValueError(
            f"`{name}` must be finite; it has {int(np.sum(~np.isfinite(values)))} NaN/inf entries."
        )
    if np.any(values < 0):
        raise ValueError(
            f"`{name}` holds synapse counts, which must be ≥ 0; it has {int(np.sum(values < 0))} negative."
        )
    keep = values != 0
    rows, columns, values = rows[keep], columns[keep], values[keep]
    pre, post = (rows, columns) if orientation == "pre_post" else (columns, rows)
    return pre.astype(np.int64), post.astype(np.int64), values, shape[0]


def _real_dtype(dtype) -> bool:
    """A dtype of real numbers: bool, integer or floating, not complex (nor str or object)."""
    return np.issubdtype(dtype, np.bool_) or (
        np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)
    )


def _check_real_counts(name: str, dtype) -> None:
    """A dense or sparse matrix's entries must be real numbers (bool: one synapse each): a complex count
    would lose its imaginary part, a string or object is no count."""
    if not _real_dtype(dtype):
        raise ValueError(
            f"`{name}` must hold real synapse counts, got dtype {dtype}; pass a real (or bool) matrix, "
            "e.g. its real part (np.real) or magnitude (abs) if that is what it counts."
        )


def _real_number(name: str, value, what: str) -> None:
    """``value`` is one real number (a bool counts as 0 or 1) that is ``what``, else a ``ValueError``
    naming ``name``."""
    array = np.asarray(value)
    if not (array.ndim == 0 and _real_dtype(array.dtype) and np.isfinite(array) and array >= 0):
        raise ValueError(f"`{name}` must be {what} (one real number), got {value!r}.")


def _populations(labels, n: int) -> tuple[list[str], list[int]]:
    if labels is None:
        return ["neurons"], [n]
    labels = [str(x) for x in labels]
    if len(labels) != n:
        raise ValueError(
            f"`labels` must hold one label per neuron ({n}, the matrix's size), got {len(labels)}."
        )
    names, sizes = [], []
    for label in labels:
        if names and label == names[-1]:
            sizes[-1] += 1
        elif label in names:
            raise ValueError(
                f"`labels`: the neurons labelled {label!r} are not consecutive; populations must be "
                "contiguous. Reorder the matrix (rows and columns) by label first, e.g. with a stable "
                "argsort of the labels."
            )
        else:
            names.append(label)
            sizes.append(1)
    return names, sizes
