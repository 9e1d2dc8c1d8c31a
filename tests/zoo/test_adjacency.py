"""`zoo.networks.from_adjacency`: connectomes as spiking networks — a tiny synthetic one against a NumPy
simulation (chemical synapses both signs, gap junctions), orientation, sparse input, real connectomes
(larval Drosophila mushroom body, C. elegans), and input errors."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from diffbrain import zoo
from diffbrain.zoo.networks import from_adjacency

DT = 0.1


def _tiny():
    rng = np.random.default_rng(0)
    n = 6
    counts = rng.integers(0, 4, (n, n)) * (rng.random((n, n)) < 0.6)
    np.fill_diagonal(counts, 0)
    gaps = np.triu(rng.integers(0, 3, (n, n)), 1)
    gaps = gaps + gaps.T
    inhibitory = np.array([False, False, False, False, True, True])
    return counts, gaps, inhibitory, rng.uniform(450.0, 700.0, n), rng.uniform(-65.0, -50.0, n)


def _numpy_reference(counts, gaps, inhibitory, I_ext, V0, n_steps, w=3.0, g_gap=2.0):
    """LIF + conductance-based exponential synapses (one-step delay) + gap junctions, float64 loop."""
    V, refractory = V0.copy(), np.zeros(V0.size)
    g_e, g_i = np.zeros(V0.size), np.zeros(V0.size)
    spike = np.zeros(V0.size, bool)
    W = counts * w
    G = gaps * g_gap  # G[j, i]: conductance between j and i
    lif = zoo.LIF()
    V_rest, V_reset, V_th, tau, g_L, t_ref = (
        float(getattr(lif, k)) for k in ("V_rest", "V_reset", "V_th", "tau", "g_L", "t_ref")
    )
    raster = []
    for _ in range(n_steps):
        g_e = g_e * np.exp(-DT / 5.0) + (spike & ~inhibitory) @ W
        g_i = g_i * np.exp(-DT / 10.0) + (spike & inhibitory) @ W
        current = g_e * (0.0 - V) + g_i * (-80.0 - V) + I_ext + V @ G - V * G.sum(axis=0)
        V_inf = V_rest + current / g_L
        V = np.where(refractory > 0.5 * DT, V_reset, V_inf + (V - V_inf) * np.exp(-DT / tau))
        spike = V >= V_th
        V = np.where(spike, V_reset, V)
        refractory = np.where(spike, t_ref, np.maximum(refractory - DT, 0.0))
        raster.append(spike)
    return np.array(raster), V


def test_tiny_connectome_matches_numpy_reference():
    counts, gaps, inhibitory, I_ext, V0 = _tiny()
    neuron = zoo.astype(zoo.LIF(), jnp.float64)
    receptors = {
        "exc": zoo.astype(zoo.Expon(tau=5.0, E=0.0), jnp.float64),
        "inh": zoo.astype(zoo.Expon(tau=10.0, E=-80.0), jnp.float64),
    }
    kwargs = dict(
        weight_per_synapse=3.0,
        inhibitory=inhibitory,
        conductance_per_junction=2.0,
        neuron=neuron,
        receptors=receptors,
        I_ext=I_ext,
    )
    net = from_adjacency(counts, gap_junctions=gaps, **kwargs)
    result = net.simulate(300.0, None, state=net.init_state(V=V0), record=6)
    raster, V = _numpy_reference(counts, gaps, inhibitory, I_ext, V0, 3000)
    assert raster.sum() > 50
    np.testing.assert_array_equal(np.asarray(result.raster), raster)
    np.testing.assert_allclose(result.final_state.neurons.V, V, rtol=0, atol=1e-9)
    # the gap junctions matter: without them the spikes differ
    alone = from_adjacency(counts, **kwargs).simulate(300.0, None, state=net.init_state(V=V0), record=6)
    assert not np.array_equal(alone.raster, result.raster)
    # the transposed matrix read as post_pre, and a SciPy sparse matrix, give the same network
    for other in (
        from_adjacency(counts.T, orientation="post_pre", gap_junctions=gaps.T, **kwargs),
        from_adjacency(scipy.sparse.csr_array(counts), gap_junctions=scipy.sparse.coo_array(gaps), **kwargs),
    ):
        again = other.simulate(300.0, None, state=other.init_state(V=V0), record=6)
        np.testing.assert_array_equal(again.raster, result.raster)


@pytest.mark.parametrize(("orientation", "affected"), [("pre_post", 1), ("post_pre", 0)])
def test_one_way_gap_junction_acts_on_its_target(orientation, affected):
    """``gap_junctions[0, 1] = 1``: with ``"pre_post"`` (0 → 1) neuron 1 alone receives
    ``g·(V_0 − V_1)`` (the module doc's ``I_gap,j = Σ_i g_ij (V_i − V_j)``); with ``"post_pre"`` (1 → 0)
    neuron 0 alone receives ``g·(V_1 − V_0)``."""
    neuron = zoo.LIF(V_th=1e3, V_rest=-60.0, V_reset=-70.0)
    V0 = np.array([-50.0, -70.0])
    kwargs = dict(orientation=orientation, neuron=neuron, dt=DT)
    net = from_adjacency(np.zeros((2, 2)), gap_junctions=np.array([[0, 1], [0, 0]]), **kwargs)
    alone = from_adjacency(np.zeros((2, 2)), **kwargs)
    step, _ = net.step(net.init_state(V=V0), jnp.zeros(2, jnp.uint32))
    free, _ = alone.step(alone.init_state(V=V0), jnp.zeros(2, jnp.uint32))
    effect = np.asarray(step.neurons.V - free.neurons.V)
    assert effect[1 - affected] == 0.0
    # the current g (V_other − V_self) over one step pushes the target towards the other neuron
    assert np.sign(effect[affected]) == np.sign(V0[1 - affected] - V0[affected])


def test_drosophila_mushroom_body(shared_data):
    folder = shared_data / "conn-drosophila-larva-mb-graspologic"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    counts = np.loadtxt(folder / "left_adjacency.csv", dtype=int)  # A[pre, post] (see PROVENANCE.md)
    labels = np.loadtxt(folder / "left_cell_labels.csv", dtype=str)
    net = from_adjacency(counts, labels=labels, weight_per_synapse=0.5)
    assert net.names == ("K", "I", "O", "P")
    assert net.sizes == tuple(int(np.sum(labels == k)) for k in net.names)
    assert net.projections["exc"].W.nnz == np.count_nonzero(counts)
    assert float(net.weights("exc").sum()) == pytest.approx(0.5 * counts.sum())
    # drive the projection neurons: odour information flows P → Kenyon cells → output neurons
    pulse = zoo.networks.Pulse(np.flatnonzero(labels == "P"), 20.0, 120.0, 400.0)
    result = net.simulate(150.0, jax.random.key(0), record=net.n, pulse=pulse)
    quiet = net.simulate(150.0, jax.random.key(0))
    assert float(quiet.counts.sum()) == 0.0
    times, ids = result.spike_trains()
    first = {k: times[labels[ids] == k].min() for k in ("P", "K", "O")}
    assert first["P"] < first["K"] < first["O"], first
    rates = dict(zip(net.names, np.asarray(result.rates()), strict=True))
    assert rates["K"] > 1.0 and rates["O"] > 1.0, rates


def test_celegans_chemical_and_electrical(shared_data):
    path = shared_data / "conn-celegans-cect" / "aconnectome_white_1986_whole.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    names = sorted({r["pre"] for r in rows} | {r["post"] for r in rows})
    index = {name: i for i, name in enumerate(names)}
    chemical, electrical = np.zeros((len(names),) * 2), np.zeros((len(names),) * 2)
    for r in rows:
        target = chemical if r["type"] == "chemical" else electrical
        target[index[r["pre"]], index[r["post"]]] += float(r["synapses"])
    gaps = np.maximum(electrical, electrical.T)  # each junction conducts both ways
    net = from_adjacency(chemical, labels=names, gap_junctions=gaps, conductance_per_junction=0.5)
    assert net.n == len(names) == 309 and net.names == tuple(names)
    assert net.gap.nnz == np.count_nonzero(gaps) - np.count_nonzero(
        np.diag(gaps)
    )  # self-junctions carry no current
    # a subthreshold current into AVAL spreads through its gap junctions only: its partners depolarise,
    # neurons without any junction stay at rest
    aval = index["AVAL"]
    state = net.init_state(V=np.full(net.n, -65.0))
    pulse = zoo.networks.Pulse([aval], 0.0, 20.0, 200.0)
    result = net.simulate(20.0, None, state=state, pulse=pulse)
    V = np.asarray(result.final_state.neurons.V)
    assert float(result.counts.sum()) == 0 and V[aval] > -64.0
    partners = np.flatnonzero(gaps[aval])
    assert partners.size > 3 and np.all(V[partners] > -65.0 + 1e-3)
    isolated = np.flatnonzero(gaps.sum(axis=0) + gaps.sum(axis=1) == 0)
    assert isolated.size > 10 and np.all(V[isolated] == -65.0)


def test_bool_matrix_counts_one_synapse_per_true_entry():
    counts, gaps, inhibitory, _, _ = _tiny()
    binary = counts > 0
    reference = from_adjacency(binary.astype(int), inhibitory=inhibitory, gap_junctions=gaps > 0)
    labels = list("aabbcc")
    for matrix, gap_junctions in (
        (binary, gaps > 0),
        (scipy.sparse.csr_array(binary), scipy.sparse.coo_array(gaps > 0)),
        (pd.DataFrame(binary, index=labels, columns=labels), gaps > 0),
    ):
        net = from_adjacency(matrix, inhibitory=inhibitory, gap_junctions=gap_junctions)
        for receptor in ("exc", "inh"):
            np.testing.assert_array_equal(net.weights(receptor), reference.weights(receptor))
            W, W_ref = net.projections[receptor].W, reference.projections[receptor].W
            np.testing.assert_array_equal(W.indices, W_ref.indices)
            np.testing.assert_array_equal(W.indptr, W_ref.indptr)
        for field in ("data", "indices", "indptr"):
            np.testing.assert_array_equal(getattr(net.gap, field), getattr(reference.gap, field))
    assert set(np.unique(reference.weights("exc"))) == {1.0}  # one synapse of weight_per_synapse each
    # a bool matrix still gets the clear errors for its shape
    with pytest.raises(ValueError, match="`matrix` must be square"):
        from_adjacency(np.ones((3, 4), bool))


def test_bad_input_names_the_argument():
    good = np.ones((3, 3))
    nan, negative = good.copy(), good.copy()
    nan[0, 1] = np.nan
    negative[2, 0] = -1.0
    cases = [
        (dict(matrix=np.ones((3, 4))), "`matrix` must be square"),
        (dict(matrix=np.ones(3)), "`matrix` must be a 2-D"),
        (dict(matrix=nan), "`matrix` must be finite"),
        (dict(matrix=negative), "≥ 0"),
        (dict(matrix=scipy.sparse.csr_array(negative)), "≥ 0"),
        (dict(labels=["a", "b"]), "`labels` must hold one label per neuron"),
        (dict(labels=["a", "b", "a"]), "not consecutive"),
        (dict(orientation="rows"), "`orientation`"),
        (dict(inhibitory=[True, False]), "`inhibitory`"),
        (dict(gap_junctions=np.ones((2, 2))), "`gap_junctions` must be"),
        (dict(gap_junctions=-good), "`gap_junctions` holds synapse counts"),
        (dict(delay=np.nan), "`delay` must be a finite latency"),
        (dict(delay=-1.0), "`delay` must be a finite latency"),
        (dict(gap_junctions=good, conductance_per_junction=-1.0), "`conductance_per_junction` must be"),
    ]
    for override, message in cases:
        with pytest.raises(ValueError, match=message):
            from_adjacency(override.pop("matrix", good), **override)

    # a labelled table: its labels name the populations, and rows and columns must agree
    table = pd.DataFrame(good, index=["a", "b", "b"], columns=["a", "b", "b"])
    assert from_adjacency(table).names == ("a", "b")
    with pytest.raises(ValueError, match="same labels"):
        from_adjacency(pd.DataFrame(good, index=["a", "b", "c"], columns=["a", "c", "b"]))

    # a labelled gap-junction table must list the neurons in the matrix's order, whether the matrix is
    # labelled itself or its neurons are named by `labels`
    names = ["a", "b", "c"]
    reordered = pd.DataFrame(good, index=names[::-1], columns=names[::-1])
    with pytest.raises(ValueError, match="`gap_junctions` is labelled differently from `matrix`"):
        from_adjacency(pd.DataFrame(good, index=names, columns=names), gap_junctions=reordered)
    with pytest.raises(ValueError, match="`gap_junctions` is labelled differently from `labels`"):
        from_adjacency(good, labels=names, gap_junctions=reordered)
    in_order = pd.DataFrame(good, index=names, columns=names)
    assert from_adjacency(good, labels=names, gap_junctions=in_order).gap.nnz == 6  # no self-junctions


@pytest.mark.parametrize("g_max", [1.0, -1.0])
def test_inhibitory_synapses_of_current_based_receptors_are_negative(g_max):
    """Review: with current-based receptors the inhibitory neurons' weights were positive, so they excited
    their targets; a conductance-based ``"inh"`` keeps them ≥ 0 (its reversal potential gives the sign).
    A current-based ``"inh"`` written with ``g_max = −1`` (the zoo's inhibitory convention) is negative
    already: its weights stay positive (negating them too made it excite, review s16 of the fix)."""
    counts = np.array([[0, 0, 5], [0, 0, 5], [0, 0, 0]])  # 0 → 2 and 1 → 2, five synapses each
    inhibitory = np.array([False, True, False])
    cuba = {"exc": zoo.Expon(tau=5.0, mode="cuba"), "inh": zoo.Expon(tau=10.0, mode="cuba", g_max=g_max)}
    net = from_adjacency(
        counts, inhibitory=inhibitory, receptors=cuba, weight_per_synapse=0.05, neuron=zoo.GIF()
    )
    np.testing.assert_allclose(net.weights("exc"), [0.25])
    np.testing.assert_allclose(net.weights("inh"), [-0.25 * g_max])
    state = net.init_state()
    rest = float(state.neurons.V[2])
    state = state._replace(spikes=jnp.array([False, True, False]))  # the inhibitory neuron fires
    for _ in range(30):
        state, _ = net.step(state, jnp.zeros(2, jnp.uint32))
    assert float(state.neurons.V[2]) < rest - 0.1
    coba = from_adjacency(counts, inhibitory=inhibitory, weight_per_synapse=0.05)
    np.testing.assert_allclose(coba.weights("inh"), [0.25])


@pytest.mark.parametrize("weight_per_synapse", [-1.0, np.nan])
def test_weight_per_synapse_must_be_a_finite_magnitude(weight_per_synapse):
    """Review: a negative ``weight_per_synapse`` silently flipped excitation and inhibition alike."""
    with pytest.raises(ValueError, match="`weight_per_synapse` must be finite and ≥ 0"):
        from_adjacency(np.ones((2, 2)), weight_per_synapse=weight_per_synapse)


def test_gap_junctions_need_a_neuron_that_takes_pA():
    """Review: a GIF neuron (input in nA) took the junctions' nS·mV as nA, 1000× too strong."""
    receptors = {"exc": zoo.Expon(mode="cuba"), "inh": zoo.Expon(mode="cuba")}
    with pytest.raises(ValueError, match="`gap_junctions` carry currents in pA"):
        from_adjacency(np.zeros((2, 2)), gap_junctions=np.ones((2, 2)), neuron=zoo.GIF(), receptors=receptors)


def test_cell_type_labels_with_a_gap_table_that_names_each_neuron():
    """Review s23: ``labels`` naming cell types (``["AVA", "AVA"]``) with a gap-junction table labelled by
    neuron names was refused ("reorder one to match the other", which could not help): cell types say
    nothing of the order of a table naming each neuron, so it is taken in the matrix's order. Labels that
    name each neuron, or a table labelled by the same cell types, are still checked."""
    gaps = np.array([[0.0, 1.0], [1.0, 0.0]])
    by_name = pd.DataFrame(gaps, index=["n0", "n1"], columns=["n0", "n1"])
    matrix = np.array([[0, 2], [1, 0]])
    net = from_adjacency(matrix, labels=["AVA", "AVA"], gap_junctions=by_name)
    assert net.names == ("AVA",) and net.gap.nnz == 2
    # the same when the matrix itself is labelled by cell type
    typed = pd.DataFrame(matrix, index=["AVA", "AVA"], columns=["AVA", "AVA"])
    assert from_adjacency(typed, gap_junctions=by_name).gap.nnz == 2
    # a table labelled by other cell types than `labels` is refused, naming what differs
    by_type = pd.DataFrame(np.ones((3, 3)), index=["a", "b", "b"], columns=["a", "b", "b"])
    with pytest.raises(
        ValueError, match=r"labelled differently from `labels` \(position 0: 'a', `labels` has 'b'"
    ):
        from_adjacency(np.ones((3, 3)), labels=["b", "b", "a"], gap_junctions=by_type)
    names = pd.DataFrame(np.ones((3, 3)), index=["x", "y", "z"], columns=["x", "y", "z"])
    with pytest.raises(ValueError, match=r"labelled differently from `labels` .*: it names other neurons"):
        from_adjacency(np.ones((3, 3)), labels=["a", "b", "c"], gap_junctions=names)
    with pytest.raises(
        ValueError, match=r"labelled differently from `labels` .*reorder it, e.g. gap_junctions\.loc"
    ):
        from_adjacency(np.ones((3, 3)), labels=["z", "y", "x"], gap_junctions=names)


@pytest.mark.parametrize(
    ("receptors", "inhibitory", "message"),
    [
        (
            {"exc": zoo.Expon(tau=5.0, mode="cuba")},
            [False, True, False],
            "neurons marked `inhibitory` .*'inh'",
        ),
        ({"inh": zoo.Expon(tau=5.0, mode="cuba")}, None, "neurons not marked `inhibitory` .*'exc'"),
    ],
)
def test_a_missing_receptor_names_inhibitory_and_receptors(receptors, inhibitory, message):
    """Review s23: inhibitory neurons without an ``"inh"`` receptor were blamed on ``edges``, an argument
    of `Network.build` the caller of `from_adjacency` never passed."""
    counts = np.array([[0, 3, 0], [0, 0, 5], [1, 0, 0]])
    inhibitory = None if inhibitory is None else np.array(inhibitory)
    with pytest.raises(ValueError, match=message + r".* `receptors` has none \(it has \['"):
        from_adjacency(counts, inhibitory=inhibitory, receptors=receptors)
    # inhibitory neurons without synapses need no "inh" receptor
    net = from_adjacency(counts, inhibitory=np.array([False, False, False]), receptors={"exc": zoo.Expon()})
    assert net.weights("exc").tolist() == [3.0, 5.0, 1.0]


def test_numbered_tables_are_unlabelled():
    """Review s23: a table with pandas' default numbering (``pd.DataFrame(array)``, ``pd.read_csv(...,
    header=None)``: a RangeIndex 0..n−1) was taken as labelled "0", "1", …: its neurons became one-neuron
    populations "0", "1", …, and a gap-junction table labelled by the neurons' names was refused against
    those numbers ("it names other neurons"), as was a numbered gap table against a labelled matrix. Integer
    labels 0..n−1 in order are no labels: such a table is taken as the array it holds."""
    matrix = np.array([[0, 2, 0], [1, 0, 3], [0, 1, 0]])
    gaps = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 2.0], [0.0, 2.0, 0.0]])
    names = ["a", "b", "c"]
    net = from_adjacency(pd.DataFrame(matrix))
    assert net.names == ("neurons",)
    np.testing.assert_array_equal(net.weights("exc"), from_adjacency(matrix).weights("exc"))
    numbered = pd.Index([0, 1, 2])  # integers 0..n−1 in order, not a RangeIndex
    assert from_adjacency(pd.DataFrame(matrix, index=numbered, columns=numbered)).names == ("neurons",)
    by_name = pd.DataFrame(gaps, index=names, columns=names)
    net = from_adjacency(pd.DataFrame(matrix), labels=names, gap_junctions=by_name)
    assert net.names == tuple(names) and net.gap.nnz == 4
    labelled = pd.DataFrame(matrix, index=names, columns=names)
    assert from_adjacency(labelled, gap_junctions=pd.DataFrame(gaps)).gap.nnz == 4
    # integers in another order are labels, checked as any others
    shuffled, other = pd.Index([2, 0, 1]), pd.Index([1, 2, 0])
    with pytest.raises(ValueError, match=r"`gap_junctions` is labelled differently from `matrix`"):
        from_adjacency(
            pd.DataFrame(matrix, index=shuffled, columns=shuffled),
            gap_junctions=pd.DataFrame(gaps, index=other, columns=other),
        )


def test_a_numbered_table_read_back_from_csv_is_unlabelled(tmp_path):
    """Review s23: ``pd.DataFrame(array).to_csv(path)`` read back with ``pd.read_csv(path, index_col=0)``
    has the integer rows 0..n−1 but the text columns "0".."n−1" (a CSV header is text); it was taken as
    labelled: one population per neuron, and a gap table labelled by name was refused."""
    matrix = np.array([[0, 2, 0], [1, 0, 3], [0, 1, 0]])
    gaps = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 2.0], [0.0, 2.0, 0.0]])
    pd.DataFrame(matrix).to_csv(tmp_path / "matrix.csv")
    table = pd.read_csv(tmp_path / "matrix.csv", index_col=0)
    assert list(table.columns) == ["0", "1", "2"]  # what the CSV round trip gives
    assert from_adjacency(table).names == ("neurons",)
    by_name = pd.DataFrame(gaps, index=list("abc"), columns=list("abc"))
    assert from_adjacency(table, gap_junctions=by_name).gap.nnz == 4
    # text numbers on both axes, or in another order, are labels
    text = [str(i) for i in range(3)]
    assert from_adjacency(pd.DataFrame(matrix, index=text, columns=text)).names == tuple(text)
    reordered = pd.DataFrame(matrix, index=[0, 1, 2], columns=["0", "2", "1"])
    with pytest.raises(ValueError, match="rows and columns must carry the same labels"):
        from_adjacency(reordered)


def test_numbered_rows_with_named_columns_are_refused():
    """Only a table numbered on its rows *and* its columns (or with the columns "0".."n−1" as text) is
    unlabelled; numbered rows under named columns are labels that disagree, and are refused."""
    table = pd.DataFrame(np.eye(3), columns=["V2", "V1", "V4"])
    with pytest.raises(ValueError, match="rows and columns must carry the same labels"):
        from_adjacency(table)
