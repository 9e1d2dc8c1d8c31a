"""Network inputs: a float32 ``dt``, uint64 indices, complex and string inputs, `Network.step` with a
key, and the microcircuit's degenerate weights and delays."""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from diffbrain import zoo
from diffbrain.zoo import networks
from diffbrain.zoo.networks import Background, Edges, GapJunctions, Microcircuit, Network, Pulse
from diffbrain.zoo.networks._random import truncated_normal
from diffbrain.zoo.networks.network import _indices, steps_of

RECEPTORS = {"exc": zoo.Expon(tau=5.0, mode="cuba")}


def _net(dt=0.1, edges=None, **kwargs) -> Network:
    edges = {"exc": Edges([0], [1], 1.0, 0.0)} if edges is None else edges
    return Network.build(sizes={"A": 3}, neuron=zoo.LIF(), receptors=RECEPTORS, edges=edges, dt=dt, **kwargs)


# --- a float32 dt ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dt", [np.float32(0.1), jnp.float32(0.1), np.float16(0.1)])
def test_float32_dt_rounds_delays_and_pulse_edges_as_its_decimal(dt):
    """Review: ``np.float32(0.1)`` is 0.10000000149 ms, at which 0.05/0.25/1.45 ms rounded down to lags
    [1, 3, 15] and the pulse 0.25–1.45 ms to steps [2, 14): the documented halves-up rounding of 0.1 ms
    gives [2, 4, 16] and [3, 15)."""
    net = _net(dt, {"exc": Edges([0, 0, 0], [1, 1, 1], 1.0, [0.05, 0.25, 1.45])})
    assert net.dt == 0.1
    assert sorted(np.asarray(net.projections["exc"].lag).tolist()) == [2, 4, 16]
    _, start, stop = net._pulse(Pulse([0], 0.25, 1.45, 1.0))
    assert (int(start), int(stop)) == (3, 15)
    np.testing.assert_array_equal(steps_of(np.array([0.05, 0.25, 1.45]), dt), [1, 3, 15])


def test_float64_dt_is_kept_as_given():
    """Only a narrower float is read as its decimal: float64 and Python floats round as before."""
    exact = float(np.float32(0.1))  # 0.10000000149011612, a Python float
    assert _net(exact).dt == exact
    assert steps_of(0.25, exact) == 2.0  # 2.4999999627 steps of that dt
    assert _net(np.float64(0.1)).dt == 0.1


def test_simulate_takes_a_float32_dt_equal_to_the_network_s():
    """Review: a network built with dt=0.1 refused ``simulate(dt=np.float32(0.1))``, and one built with
    ``np.float32(0.1)`` refused ``dt=0.1``, printing both as equal."""
    key = jax.random.key(0)
    net = _net(0.1)
    for dt in (np.float32(0.1), jnp.float32(0.1), float(np.float32(0.1)), 0.1):
        assert net.simulate(1.0, key, dt=dt).counts.shape == (10, 1)
    net32 = _net(np.float32(0.1))
    assert net32.simulate(1.0, key, dt=0.1).counts.shape == (10, 1)
    with pytest.raises(ValueError, match=r"`dt` = 0\.2 ms differs from the network's dt = 0\.1 ms"):
        net.simulate(1.0, key, dt=0.2)
    with pytest.raises(ValueError, match=r"`dt` = 0\.1000001 ms differs"):
        net.simulate(1.0, key, dt=0.1000001)


@pytest.mark.parametrize("simulate", ["simulate", "simulate_sharded"])
def test_an_einetwork_run_at_a_float32_dt_is_stamped_at_its_decimal(simulate):
    """Review s24: the EINetwork path kept np.float32(0.1) as 0.10000000149 ms (`Network` keeps 0.1), so a
    1,000 ms run reported a duration of 1000.0000149 ms and spike times off the 0.1 ms grid."""
    net = networks.EINetwork.cuba(jax.random.key(0), n=50, in_degree=5)
    run = getattr(networks, simulate)
    options = {"devices": jax.devices()[:1]} if simulate == "simulate_sharded" else {}
    result = run(net, 10.0, jax.random.key(1), dt=np.float32(0.1), **options)
    assert type(result.dt) is float and result.dt == 0.1 and result.duration == 10.0


# --- indices, real numbers ------------------------------------------------------------------------------


def test_uint64_indices_build_the_int64_network():
    """Review: uint64 indices passed validation, then crashed in `DelayedCSR.from_edges` (uint64 + int64 is
    float64) and in the gap junctions with a message that blamed ``pre`` being float64."""
    pre, post = np.array([0, 1, 2], np.uint64), np.array([1, 2, 0], np.uint64)
    assert _indices("pre", pre, 3).dtype == np.int64
    gap = GapJunctions(pre, post, [1.0, 2.0, 3.0])
    net = _net(edges={"exc": Edges(pre, post, [1.0, 2.0, 3.0], 0.5)}, gap_junctions=gap)
    ref = _net(
        edges={"exc": Edges(pre.astype(np.int64), post.astype(np.int64), [1.0, 2.0, 3.0], 0.5)},
        gap_junctions=GapJunctions(pre.astype(np.int64), post.astype(np.int64), [1.0, 2.0, 3.0]),
    )
    assert net.weights("exc").tolist() == ref.weights("exc").tolist() == [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(net.projections["exc"].W.indices, ref.projections["exc"].W.indices)
    np.testing.assert_array_equal(net.gap.data, ref.gap.data)
    np.testing.assert_array_equal(net.gap.indices, ref.gap.indices)
    with pytest.raises(ValueError, match=r"`edges\['exc'\].pre` must hold neuron indices in \[0, 3\)"):
        _net(edges={"exc": Edges(np.array([2**63], np.uint64), [0], 1.0, 0.0)})


@pytest.mark.parametrize(
    ("edges", "named"),
    [
        (Edges([0], [1], 2 + 5j, 0.0), r"`edges\['exc'\].weight` must hold real numbers, got dtype complex"),
        (Edges([0], [1], 1.0, [1j]), r"`edges\['exc'\].delay` must hold real numbers, got dtype complex"),
        (Edges([0], [1], "a", 0.0), r"`edges\['exc'\].weight` must hold real numbers, got dtype <U1"),
        (Edges([0], [1], np.array([1 + 0j], object), 0.0), r"`edges\['exc'\].weight` must hold real"),
    ],
)
def test_complex_and_string_edges_are_refused_naming_the_argument(edges, named):
    """Review: complex weights and delays lost their imaginary part with only a NumPy warning; a string
    weight gave NumPy's "could not convert string to float"."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning on the way
        with pytest.raises(ValueError, match=named):
            _net(edges={"exc": edges})


def test_real_inputs_of_every_kind_still_build():
    for weight in (1, True, np.float32(2.0), np.array([2], np.int8), np.array([0.5], object)):
        assert _net(edges={"exc": Edges([0], [1], weight, 0)}).weights("exc").size == 1
    with pytest.raises(ValueError, match=r"`gap_junctions\.conductance` must hold real numbers"):
        _net(gap_junctions=GapJunctions([0], [1], 1j))
    with pytest.raises(ValueError, match="`weight` must hold real numbers"):
        _net().with_weights("exc", jnp.array([1 + 1j]))


def test_complex_sparse_connectome_is_refused_like_a_dense_one():
    """Review: a SciPy sparse complex matrix was accepted with its real part; the dense one refused."""
    for matrix in (sp.csr_matrix(np.array([[0, 3 + 4j], [0, 0]])), np.array([[0, 3 + 4j], [0, 0]])):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(
                ValueError, match="`matrix` must hold real synapse counts, got dtype complex128"
            ):
                networks.from_adjacency(matrix)
    with pytest.raises(ValueError, match="`matrix` must hold real synapse counts, got dtype <U1"):
        networks.from_adjacency(np.array([["0", "1"], ["0", "0"]]))
    with pytest.raises(ValueError, match="`weight_per_synapse` must be finite and ≥ 0"):
        networks.from_adjacency(np.ones((2, 2)), weight_per_synapse=1j)
    with pytest.raises(ValueError, match="`delay` must be a finite latency ≥ 0 ms"):
        networks.from_adjacency(np.ones((2, 2)), delay="1")
    net = networks.from_adjacency(sp.csr_matrix(np.array([[0, True], [True, False]])), delay=np.float32(0.5))
    assert net.weights("exc").tolist() == [1.0, 1.0]


# --- Network.step with a key ----------------------------------------------------------------------------


def test_step_with_the_simulation_key_draws_what_simulate_draws():
    """Review: ``step(state, jax.random.key(0))`` raised an IndexError, though its doc said the seed comes
    "from the simulation key"."""
    net = _net(background=Background(3000.0, 200.0, "exc"))
    key, state = jax.random.key(3), net.init_state(V=np.full(3, -60.0))
    result = net.simulate(3.0, key, state=state, record=3)
    step = jax.jit(lambda state, key: net.step(state, key))
    rows = []
    for _ in range(30):
        state, spikes = step(state, key)
        rows.append(spikes)
    np.testing.assert_array_equal(np.stack(rows), result.raster)
    assert np.asarray(result.raster).any()  # the background made the neurons fire
    np.testing.assert_allclose(state.neurons.V, result.final_state.neurons.V)


@pytest.mark.parametrize(
    "seed", [0, jnp.zeros(3, jnp.uint32), jnp.zeros(2, jnp.float32), jax.random.split(jax.random.key(0))]
)
def test_step_refuses_another_seed_naming_it(seed):
    net = _net()
    with pytest.raises(ValueError, match=r"`seed` must be the simulation key, one jax\.random\.key"):
        net.step(net.init_state(), seed)


# --- the microcircuit: g = 0, delays at dt --------------------------------------------------------------


@pytest.fixture(scope="module")
def pd_params(shared_data):
    with open(shared_data / "conn-potjans-diesmann2014" / "potjans_diesmann_2014_params.json") as file:
        return json.load(file)


def _tiny(params, **changes) -> Microcircuit:
    return Microcircuit.from_data(dict(params, **changes), scale=0.005, k_scale=0.05)


def test_microcircuit_with_g_zero_has_exactly_zero_inhibitory_weights(pd_params):
    """Review: g = 0 passed `from_data` (``g ≤ 0``) but `build` failed in the truncated normal."""
    edges = _tiny(pd_params, g=0).edges(jax.random.key(0))
    assert edges["inh"].weight.size and np.all(edges["inh"].weight == 0)
    assert np.all(edges["exc"].weight > 0)


def test_microcircuit_delays_may_equal_dt(pd_params):
    """Review: ``delay_rel_std`` 0 with a mean delay equal to dt was refused (delays were redrawn until
    strictly above dt; NEST's ``redraw`` keeps ≥ dt)."""
    mc = _tiny(pd_params, delay_rel_std=0.0, delay_inh_mean_ms=0.1)
    edges = mc.edges(jax.random.key(0))
    assert np.all(edges["inh"].delay == np.float32(0.1)) and np.all(edges["exc"].delay == np.float32(1.5))
    net = mc.build(jax.random.key(0))
    assert set(np.asarray(net.projections["inh"].lag).tolist()) == {2}


def test_microcircuit_mean_delay_below_dt_is_refused_naming_the_parameter(pd_params):
    """Review: a mean delay far below dt failed in the truncated normal with a message naming nothing."""
    mc = _tiny(pd_params, delay_inh_mean_ms=0.02)
    named = r"`delay_inh_mean_ms` = 0\.02 ms is too far below `dt` = 0\.1 ms"
    for draw in (mc.build, mc.edges):
        with pytest.raises(ValueError, match=named):
            draw(jax.random.key(0))
    assert mc.edges(jax.random.key(0), dt=0.01)["inh"].delay.min() >= 0.01


def test_microcircuit_float32_dt_draws_the_float64_network(pd_params):
    mc = _tiny(pd_params)
    a, b = mc.edges(jax.random.key(1), 0.1), mc.edges(jax.random.key(1), np.float32(0.1))
    for receptor in ("exc", "inh"):
        for x, y in zip(a[receptor], b[receptor], strict=True):
            np.testing.assert_array_equal(x, y)


def test_truncated_normal_names_what_it_draws():
    rng, out = np.random.default_rng(0), np.empty(10, np.float32)
    with pytest.raises(ValueError, match=r"^the delays X → Y: no draw of Normal\(0.05, 0.005\)"):
        truncated_normal(rng, 0.05, 0.005, 0.1, out, label="the delays X → Y")
    truncated_normal(rng, 0.1, 0.0, 0.1, out, inclusive=True)
    assert np.all(out == np.float32(0.1))
    with pytest.raises(ValueError, match="6 standard deviations"):
        truncated_normal(rng, 0.1, 0.0, 0.1, out)  # strictly above: no draw of a constant 0.1 passes


def test_too_small_ei_network_states_the_smallest_n():
    """It said "pass n ≥ 81" (from 16/0.19999999999999996), though 80 neurons (64 E, 16 I) suffice."""
    with pytest.raises(ValueError, match="pass n ≥ 80 or a smaller `in_degree`"):
        networks.EINetwork.coba(jax.random.key(0), n=79)
    assert networks.EINetwork.coba(jax.random.key(0), n=80).n == 80
