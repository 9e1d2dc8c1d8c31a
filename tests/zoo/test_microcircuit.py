"""The Potjans & Diesmann (2014) microcircuit (`zoo.networks.microcircuit`).

References: the parameters and connection probabilities (PD 2014, Table 5) are the published ones as
transcribed in ``../shared/data/conn-potjans-diesmann2014`` (see its PROVENANCE.md). The reference rates
are that file's full-scale population rates (``full_mean_rates_Hz_reference``, from NEST's PD 2014 example:
0.94, 3.03, 4.37, 5.88, 7.73, 8.66, 1.10, 7.85 Hz for L2/3e … L6i); they agree with the values the project
issue quotes from PD 2014 Fig. 6 (L2/3e ≈ 0.9, L4e ≈ 4.4, L5e ≈ 7.6, L6e ≈ 1.1 Hz). The paper's figure
itself was not available here to read off the inhibitory rates.
"""

import doctest
import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from diffbrain import zoo
from diffbrain.zoo.networks import Microcircuit, Network, psc_amplitude, synapse_counts
from diffbrain.zoo.networks.microcircuit import POPULATIONS

from .conftest import assert_same_projection

FOLDER = "conn-potjans-diesmann2014"


@pytest.fixture(scope="module")
def params(shared_data):
    with open(shared_data / FOLDER / "potjans_diesmann_2014_params.json") as file:
        return json.load(file)


@pytest.fixture(scope="module")
def folder(shared_data):
    return shared_data / FOLDER


def test_synapse_counts_invert_the_connection_probability(params):
    C = np.asarray(params["conn_probs_target_by_source"])
    N = np.asarray(params["full_num_neurons"])
    K = synapse_counts(C, N, N)
    # PD 2014 eq. 1: drawing K pairs with replacement connects the fraction C of all N_pre·N_post pairs
    np.testing.assert_allclose(1 - (1 - 1 / np.outer(N, N)) ** K, C, rtol=1e-6)
    assert N.sum() == 77169
    assert 2.98e8 < K.sum() < 3.0e8  # "≈ 0.3 billion synapses" (PD 2014)


def test_sizes_and_counts_scale_as_published(folder, params):
    N = np.asarray(params["full_num_neurons"])
    K = synapse_counts(params["conn_probs_target_by_source"], N, N)
    full = Microcircuit.from_data(folder, scale=1.0)
    np.testing.assert_array_equal(full.sizes, N)
    np.testing.assert_array_equal(full.synapses, np.round(K))
    assert full.n == 77169 and full.names[0] == "L23e" and full.offsets[-1] == full.n
    for scale in (0.1, 0.02):
        mc = Microcircuit.from_data(folder, scale=scale)
        np.testing.assert_array_equal(mc.sizes, np.round(N * scale))
        np.testing.assert_array_equal(mc.synapses, np.round(K * scale))
        # the default downscaling keeps the in-degrees (NEST's example; van Albada et al. 2015)
        np.testing.assert_allclose(mc.in_degrees, full.in_degrees, rtol=0.03, atol=0.5)
        np.testing.assert_array_equal(mc.k_ext, params["K_ext"])
        np.testing.assert_array_equal(mc.I_dc, 0.0)


def test_psc_amplitude_gives_the_published_psp():
    w = psc_amplitude(0.15, C_m=250.0, tau_m=10.0, tau_syn=0.5)
    assert w == pytest.approx(87.81, abs=0.005)  # PD 2014: 87.8 pA for 0.15 mV
    # the membrane response to w·e^{-t/τ_syn}, integrated on a fine grid, peaks at 0.15 mV
    dt, V, current, peak = 1e-4, 0.0, w, 0.0
    for _ in range(50_000):
        V += dt * (-V / 10.0 + current / 250.0)
        current -= dt * current / 0.5
        peak = max(peak, V)
    assert peak == pytest.approx(0.15, rel=1e-3)
    with pytest.raises(ValueError, match="tau_syn"):
        psc_amplitude(0.15, 250.0, 10.0, 10.0)


def test_weights_delays_and_background(folder, params):
    mc = Microcircuit.from_data(folder, scale=0.05)
    w = psc_amplitude(0.15, 250.0, 10.0, 0.5)
    expected = np.tile(np.where(np.arange(8) % 2 == 0, w, -4 * w), (8, 1))
    expected[0, 2] = 2 * w  # L4e → L2/3e doubled
    np.testing.assert_allclose(mc.weight, expected)
    np.testing.assert_allclose(mc.delay[:, 0], 1.5)
    np.testing.assert_allclose(mc.delay[:, 1], 0.75)
    assert mc.weight_ext == pytest.approx(w) and mc.bg_rate == 8.0 and mc.tau_syn == 0.5
    assert mc.step_factor(0.1) == pytest.approx(0.5 * (1 - np.exp(-0.2)) / 0.1)
    assert float(mc.neuron.tau) == 10.0 and float(mc.neuron.V_th) == -50.0
    dc = Microcircuit.from_data(folder, scale=0.05, background="dc")
    # the Poisson background's mean current K_ext · 8 Hz · w · τ_syn (pA), e.g. 562 pA into L2/3e
    np.testing.assert_allclose(dc.I_dc, np.asarray(params["K_ext"]) * 8.0 * w * 0.5e-3)
    assert dc.I_dc[0] == pytest.approx(562.0, abs=0.5)


def _mean_input(mc, full_in_degrees):
    """Mean input current per population (pA) with every population at its reference rate, for the
    expected (unrounded) in-degrees ``k_scale`` × full scale."""
    recurrent = (mc.k_scale * full_in_degrees * mc.weight * mc.reference_rates).sum(axis=1)
    external = 0 if mc.background == "dc" else mc.k_ext * mc.bg_rate * mc.weight_ext
    return (recurrent + external) * mc.tau_syn * 1e-3 + mc.I_dc


@pytest.mark.parametrize("background", ["poisson", "dc"])
def test_in_degree_scaling_keeps_mean_input_and_scales_variance(folder, params, background):
    N = np.asarray(params["full_num_neurons"])
    K = synapse_counts(params["conn_probs_target_by_source"], N, N)
    full = Microcircuit.from_data(folder, scale=0.1, background=background)
    half = Microcircuit.from_data(folder, scale=0.1, k_scale=0.25, background=background)
    np.testing.assert_allclose(half.weight, full.weight * 2)
    np.testing.assert_array_equal(half.synapses, np.round(K * 0.1 * 0.25))
    np.testing.assert_array_equal(half.k_ext, np.round(np.asarray(params["K_ext"]) * 0.25))
    # van Albada et al. (2015): the mean input is restored by the DC, the variance K·w² is kept
    np.testing.assert_allclose(
        _mean_input(half, K / N[:, None]), _mean_input(full, K / N[:, None]), rtol=1e-9
    )
    np.testing.assert_allclose(half.in_degrees * half.weight**2, full.in_degrees * full.weight**2, rtol=0.05)


@pytest.fixture(scope="module")
def small(folder):
    """The circuit of the rate test: 3,087 neurons, ¼ of the in-degrees (3.0·10⁶ synapses)."""
    return Microcircuit.from_data(folder, scale=0.04, k_scale=0.25)


@pytest.fixture(scope="module")
def small_edges(small):
    return small.edges(jax.random.key(0))


def _projection_of(mc, edges):
    """(target, source) population of every edge."""
    population = np.repeat(np.arange(8), mc.sizes)
    return population[edges.post], population[edges.pre]


def test_edges_realise_the_synapse_counts_and_pair_statistics(small, small_edges):
    counts = np.zeros((8, 8), np.int64)
    for receptor, sources in (("exc", [0, 2, 4, 6]), ("inh", [1, 3, 5, 7])):
        edges = small_edges[receptor]
        assert edges.pre.dtype == np.int32 and edges.post.dtype == np.int32
        assert edges.weight.dtype == np.float32 and edges.delay.dtype == np.float32
        target, source = _projection_of(small, edges)
        assert set(np.unique(source)) <= set(sources)
        np.add.at(counts, (target, source), 1)
        for t, s in zip(*np.nonzero(small.synapses), strict=True):
            if s not in sources:
                continue
            mask = (target == t) & (source == s)
            # the fraction of connected pairs is PD 2014 eq. 1 at the scaled sizes
            n_pairs = int(small.sizes[t] * small.sizes[s])
            pairs = np.unique(edges.pre[mask].astype(np.int64) * small.n + edges.post[mask]).size
            p = 1 - (1 - 1 / n_pairs) ** small.synapses[t, s]
            assert abs(pairs - p * n_pairs) < 5 * np.sqrt(n_pairs * p * (1 - p)) + 1
    np.testing.assert_array_equal(counts, small.synapses)


@pytest.mark.parametrize(("receptor", "d_mean"), [("exc", 1.5), ("inh", 0.75)])
def test_edge_weights_and_delays_follow_their_distributions(small, small_edges, receptor, d_mean):
    edges = small_edges[receptor]
    target, source = _projection_of(small, edges)
    mean = small.weight[target, source] * small.step_factor(0.1)
    z = (edges.weight - mean) / (0.1 * np.abs(mean))
    assert np.all(np.sign(edges.weight) == np.sign(mean))
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert edges.delay.min() > 0.1
    # the delays are normal, redrawn below dt: the truncated normal's mean and s.d.
    sigma = 0.5 * d_mean
    truncated = stats.truncnorm((0.1 - d_mean) / sigma, np.inf, loc=d_mean, scale=sigma)
    assert edges.delay.mean() == pytest.approx(truncated.mean(), abs=3e-3)
    assert edges.delay.std() == pytest.approx(truncated.std(), abs=3e-3)


def test_step_averaged_weights_give_the_published_psp(small):
    """A PSC of the built network (weight w·step_factor into `Expon`, whose current decays by
    e^{-dt/τ_syn} per step) moves the LIF membrane by the published 0.15 mV peak; the raw w would give
    10 % more."""
    dt, w = 0.1, psc_amplitude(0.15, 250.0, 10.0, 0.5)
    kernel = np.exp(-np.arange(600) * dt / small.tau_syn)
    neuron = zoo.astype(small.neuron, jnp.float64)
    for weight, peak in ((w * small.step_factor(dt), 0.15), (w, 0.15 * 1.1)):
        V = np.asarray(zoo.simulate(neuron, jnp.asarray(weight * kernel), dt=dt).V)
        assert V.max() - float(neuron.V_rest) == pytest.approx(peak, rel=0.02)


def test_same_key_same_connectivity(folder):
    tiny = Microcircuit.from_data(folder, scale=0.005)
    a, b, c = (tiny.edges(jax.random.key(seed)) for seed in (7, 7, 8))
    for field in ("pre", "post", "weight", "delay"):
        np.testing.assert_array_equal(getattr(a["inh"], field), getattr(b["inh"], field))
    assert np.any(a["exc"].pre != c["exc"].pre)


def test_build_streamed_by_population_is_network_build_of_the_edges(folder):
    """`build` draws and groups one source population at a time; the result is exactly `Network.build` of
    all `edges` at once (same synapses, rows, merged multapses, edge slots and ring)."""
    mc = Microcircuit.from_data(folder, scale=0.01, k_scale=0.5)
    net = mc.build(jax.random.key(3))
    edges = mc.edges(jax.random.key(3))
    reference = Network.build(
        sizes=dict(zip(mc.names, mc.sizes.tolist(), strict=True)),
        neuron=mc.neuron,
        receptors=net.receptors,
        edges=edges,
        background=None,
        I_ext=np.asarray(net.I_ext),
    )
    assert net.ring_length == reference.ring_length > 1
    for receptor in ("exc", "inh"):
        ours, theirs = net.projections[receptor], reference.projections[receptor]
        assert ours.W.shape == theirs.W.shape and ours.W.nnz < edges[receptor].pre.size  # merged repeats
        assert_same_projection(ours, theirs)
        np.testing.assert_array_equal(
            np.asarray(net.edge_slots[receptor]), np.asarray(reference.edge_slots[receptor])
        )
        np.testing.assert_array_equal(
            np.asarray(net.weights(receptor)), np.asarray(reference.weights(receptor))
        )
    # `draw_edges` gives the same edges, receptor by receptor, ordered by source population
    exc = edges["exc"]
    again = dict(mc.draw_edges(jax.random.key(3)))["exc"]
    np.testing.assert_array_equal(again.pre, exc.pre)
    first = int(mc.synapses[:, 0].sum())  # L2/3e's synapses, then L4e's
    assert np.all(exc.pre[:first] < mc.offsets[1]) and np.all(exc.pre[first:] >= mc.offsets[2])


def test_background_enters_as_poisson_drive_or_constant_current(folder):
    for background, drives in (("dc", 0), ("poisson", 1)):
        mc = Microcircuit.from_data(folder, scale=0.005, k_scale=0.1, background=background)
        net = mc.build(jax.random.key(0))
        assert len(net.drives) == drives
        np.testing.assert_allclose(np.asarray(net.I_ext), np.repeat(mc.I_dc, mc.sizes), rtol=1e-6)
    (drive,) = net.drives
    population = np.repeat(np.arange(8), mc.sizes)
    np.testing.assert_allclose(np.asarray(drive.mean), mc.k_ext[population] * 8.0 * 1e-4, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(drive.weight), mc.weight_ext * mc.step_factor(0.1), rtol=1e-6)


def test_population_rates_match_potjans_diesmann(small):
    """0.5 s after a 100 ms start (V uniform in [reset, θ)): every population within 0.65–1.5 × the
    full-scale reference rates, and their mean |log ratio| below 0.12. Measured over three network/input
    key pairs ((0, 1), (1, 2), (2, 3)): 0.77–1.31 × reference (L5e 1.31 and L2/3e 0.77 the extremes,
    finite-size variation of 194 and 827 neurons), mean |log ratio| 0.063–0.069."""
    with jax.enable_x64(False):  # the library's default precision, float32
        net = small.build(jax.random.key(0))
        assert net.names == POPULATIONS and net.sizes == tuple(small.sizes.tolist()) and net.dt == 0.1
        assert net.I_ext.dtype == jnp.float32
        counts = np.asarray(net.simulate(600.0, jax.random.key(1)).counts)[1000:]
    rates = counts.sum(axis=0) / small.sizes / 0.5
    ratio = rates / small.reference_rates
    assert np.all((ratio > 0.65) & (ratio < 1.5)), dict(zip(POPULATIONS, rates.round(2), strict=True))
    assert np.abs(np.log(ratio)).mean() < 0.12
    # the robust orderings of PD 2014 Fig. 6: L2/3e and L6e fire least; interneurons outpace their
    # layer's excitatory cells in L2/3, L4 and L6 (L5's two rates are within 15 % of each other)
    assert set(np.argsort(rates)[:2]) == {0, 6}
    assert rates[1] > rates[0] and rates[3] > rates[2] and rates[7] > rates[6]


def test_bad_arguments_name_the_argument(folder, params, small, tmp_path):
    for bad in (0, 0.0, -0.1, 1.5, True, "0.1"):
        with pytest.raises(ValueError, match="`scale`"):
            Microcircuit.from_data(folder, scale=bad)
        with pytest.raises(ValueError, match="`k_scale`"):
            Microcircuit.from_data(folder, k_scale=bad)
    with pytest.raises(ValueError, match=r"`scale`.*empty"):
        Microcircuit.from_data(folder, scale=1e-4)
    with pytest.raises(ValueError, match="`background`"):
        Microcircuit.from_data(folder, background="noise")
    with pytest.raises(ValueError, match="`source`"):
        Microcircuit.from_data(tmp_path)
    with pytest.raises(ValueError, match="K_ext"):
        Microcircuit.from_data({k: v for k, v in params.items() if k != "K_ext"})
    with pytest.raises(ValueError, match="conn_probs"):
        Microcircuit.from_data(params | {"conn_probs_target_by_source": [[0.1] * 8] * 7})
    with pytest.raises(ValueError, match="full_num_neurons"):
        Microcircuit.from_data(params | {"full_num_neurons": [100] * 7 + [0]})
    with pytest.raises(ValueError, match="K_ext"):
        Microcircuit.from_data(params | {"K_ext": [1600] * 7 + [-1]})
    for bad in (0.0, -0.1, 1.0, True):
        with pytest.raises(ValueError, match="`dt`"):
            small.edges(jax.random.key(0), dt=bad)
    csv = next(folder.glob("*.csv"))  # another file of the data folder
    with pytest.raises(ValueError, match=r"`source` .* is not the .* \(not JSON"):
        Microcircuit.from_data(csv)
    for draw in (small.edges, small.build):
        with pytest.raises(ValueError, match="`key` must be one JAX key"):
            draw(0)


def _without(params, key, nested=None):
    edited = json.loads(json.dumps(params))
    (edited[nested] if nested else edited).pop(key)
    return edited


def test_malformed_parameters_are_named(params):
    """Review: a missing or malformed nested parameter raised KeyError or TypeError, and a negative PSP
    silently made the excitatory weights negative."""
    neuron = params["neuron_params"]
    cases = [
        (_without(params, "C_m", "neuron_params"), r"`neuron_params` lacks.*'C_m'"),
        (_without(params, "t_ref", "neuron_params"), r"`neuron_params` lacks.*'t_ref'"),
        (params | {"neuron_params": [1, 2]}, "`neuron_params` must be a mapping"),
        (
            params | {"neuron_params": neuron | {"tau_m": "10"}},
            r"`neuron_params\['tau_m'\]` must be a finite",
        ),
        (params | {"neuron_params": neuron | {"V_th": None}}, r"`neuron_params\['V_th'\]` must be a finite"),
        (params | {"g": "four"}, "`g` must be a finite number ≤ 0"),
        (params | {"g": 4.0}, "`g` must be a finite number ≤ 0"),
        (params | {"PSP_exc_mean_mV": -0.15}, "`PSP_exc_mean_mV` must be a finite number > 0"),
        (params | {"PSP_exc_mean_mV": 0.0}, "`PSP_exc_mean_mV` must be a finite number > 0"),
        (params | {"PSP_L4E_to_L23E_factor": -2.0}, "`PSP_L4E_to_L23E_factor` must be a finite number > 0"),
        (params | {"bg_rate_Hz": float("nan")}, "`bg_rate_Hz` must be a finite number ≥ 0"),
        (params | {"weight_rel_std": -0.1}, "`weight_rel_std` must be a finite number ≥ 0"),
        (params | {"delay_exc_mean_ms": -1.0}, "`delay_exc_mean_ms` must be a finite number > 0"),
        (params | {"delay_rel_std": True}, "`delay_rel_std` must be a finite number ≥ 0"),
    ]
    for edited, message in cases:
        with pytest.raises(ValueError, match=message):
            Microcircuit.from_data(edited, scale=0.01)


def test_docstring_example(folder):
    module = importlib.import_module("diffbrain.zoo.networks.microcircuit")
    with jax.enable_x64(False):
        result = doctest.testmod(module, extraglobs={"folder": folder}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("dt", [np.array(0.1), jnp.float32(0.1), jnp.array(0.1), np.float32(0.1)])
def test_concrete_zero_d_array_dt_is_taken_like_a_float(small, dt):
    """Review s23: a 0-d array ``dt`` (``jnp.float32(0.1)``, ``np.array(0.1)``) was refused as outside
    (0, 0.5] ms, though `Network.build` takes it; it now gives what ``dt=0.1`` gives."""
    assert small.step_factor(dt) == small.step_factor(0.1)
    reference, edges = small.edges(jax.random.key(0), dt=0.1), small.edges(jax.random.key(0), dt=dt)
    for name in reference:
        for a, b in zip(reference[name], edges[name], strict=True):
            np.testing.assert_array_equal(a, b)
    for bad in (np.array([0.1]), np.array(0.6), "0.1", np.array(True)):
        with pytest.raises(ValueError, match="`dt`"):
            small.step_factor(bad)


def test_the_largest_dt_is_taken(small):
    """``dt`` = 0.5 ms, the bound of (0, 0.5] ms, is taken; just above it is refused."""
    assert small.step_factor(0.5) == pytest.approx(small.tau_syn * -np.expm1(-0.5 / small.tau_syn) / 0.5)
    with pytest.raises(ValueError, match=r"`dt` must be a time step in \(0, 0.5\] ms"):
        small.step_factor(0.5000001)
