"""`zoo.networks.Network`: delays on the spike ring, parity with `EINetwork` and with a plain NumPy
simulation, Poisson background, pulses, gradients against finite differences, and input errors."""

import doctest
import importlib
import re
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import zoo
from diffbrain.zoo import networks, surrogate
from diffbrain.zoo.networks import Background, Edges, Network, Pulse, delays
from diffbrain.zoo.networks.network import _lowbias32, _PoissonDrive, _seed, _uniforms, steps_of

from .conftest import assert_same_projection

DT = 0.1


def _relay(delays_ms, weight=1e5):
    """Neuron 0 is driven to fire; neuron k + 1 receives it through one strong synapse delayed
    ``delays_ms[k]`` ms, strong enough to fire it in the very step the spike arrives."""
    n = 1 + len(delays_ms)
    return Network.build(
        sizes={"driver": 1, "relays": n - 1},
        neuron=zoo.LIF(t_ref=50.0),
        receptors={"exc": zoo.Expon(tau=2.0, mode="cuba")},
        edges={"exc": Edges(pre=np.zeros(n - 1, int), post=np.arange(1, n), weight=weight, delay=delays_ms)},
        dt=DT,
        I_ext=np.r_[2000.0, np.zeros(n - 1)],
    )


def test_spike_arrives_exactly_the_rounded_delay_later():
    delays = np.array([0.0, 0.1, 0.14, 0.26, 1.5, 3.0])  # latencies of 0, 1, 1, 3, 15, 30 steps
    net = _relay(delays)
    assert net.ring_length == 31  # the longest lag: latency 30 steps + 1
    result = net.simulate(20.0, None, state=net.init_state(V=np.full(net.n, -65.0)), record=net.n)
    first = np.array([np.flatnonzero(result.raster[:, i])[0] for i in range(net.n)])
    # the relay fires in the step its input arrives: one step after the driver at zero latency
    np.testing.assert_array_equal(first[1:] - first[0], [1, 2, 2, 4, 16, 31])
    times, ids = result.spike_trains()
    t_driver = times[ids == 0][0]
    for i, latency_steps in enumerate([0, 1, 1, 3, 15, 30], start=1):
        assert times[ids == i][0] == pytest.approx(t_driver + (latency_steps + 1) * DT)


def test_the_ring_holds_step_ts_input_in_slot_t_mod_L():
    """`NetworkState.ring`'s layout: a spike in flight sits in the slot of the step it arrives in, mod L."""
    net = _relay(np.array([1.5]))  # 15 steps of latency, a ring of 16 slots
    start = net.init_state(V=np.full(net.n, -65.0))
    raster = net.simulate(20.0, None, state=start, record=net.n).raster
    fired, arrives = (int(np.flatnonzero(raster[:, i])[0]) for i in (0, 1))  # the relay fires as it arrives
    in_flight = net.simulate((fired + 3) * DT, None, state=start).final_state  # 3 steps after the spike
    assert int(in_flight.step) == fired + 3 < arrives
    np.testing.assert_array_equal(np.flatnonzero(in_flight.ring["exc"][:, 1]), [arrives % net.ring_length])


def test_half_step_delays_and_pulse_edges_round_up_as_in_nest():
    """NEST: ``ld_round(D·steps_per_ms)``; ``0.25/0.1`` is 2.4999… in floats, which rounded to 2 steps."""
    delays = np.array([0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 1.25, 0.2499, 0.04999])
    net = _relay(delays)
    result = net.simulate(20.0, None, state=net.init_state(V=np.full(net.n, -65.0)), record=net.n)
    first = np.array([np.flatnonzero(result.raster[:, i])[0] for i in range(net.n)])
    np.testing.assert_array_equal(first[1:] - first[0] - 1, [1, 2, 3, 4, 5, 6, 7, 8, 13, 2, 0])
    np.testing.assert_array_equal(steps_of(np.float32([0.25, 0.75]), 0.1), [3, 8])
    halves = np.arange(0.05, 10.0, 0.1)  # review: float32 0.35 is 0.3499999…, which rounded to 3 steps
    for dtype in (np.float16, jnp.bfloat16, np.float32, np.float64):
        np.testing.assert_array_equal(steps_of(halves.astype(dtype), 0.1), np.arange(1, 101), err_msg=dtype)
        # and an exact value keeps its step where the dtype's spacing passes a step (float16 200.0: 0.125)
        np.testing.assert_array_equal(steps_of(np.array([60, 100, 200], dtype), 0.1), [600, 1000, 2000])
    _, start, stop = net._pulse(Pulse(neurons=[0], start_ms=0.25, stop_ms=1.25, current=1.0))
    assert (int(start), int(stop)) == (3, 13)
    np.testing.assert_array_equal(steps_of(delays, 0.1), np.floor(delays * 10 + 0.5))


def test_a_pulse_amplitude_has_the_finite_difference_gradient():
    """The amplitude was read with NumPy: ``jax.grad`` through it raised a TracerArrayConversionError."""
    net = Network.build(
        sizes={"A": 3}, neuron=zoo.LIF(), receptors={"e": zoo.Expon(mode="cuba")}, edges={}, I_ext=100.0
    )

    def final_potential(amplitude):  # subthreshold: smooth in the amplitude
        pulse = Pulse(neurons=[0, 2, 2], start_ms=5.0, stop_ms=15.0, current=amplitude)
        return jnp.sum(net.simulate(15.0, jax.random.key(0), pulse=pulse).final_state.neurons.V)

    h = 1.0
    secant = (final_potential(50.0 + h) - final_potential(50.0 - h)) / (2 * h)
    gradient = jax.grad(final_potential)(50.0)
    assert float(gradient) > 0 and float(gradient) == pytest.approx(float(secant), rel=1e-3)


def test_one_step_delays_reproduce_einetwork_exactly():
    ei = zoo.astype(networks.EINetwork.coba(jax.random.key(0), n=400, in_degree=40), jnp.float32)
    n_e = ei.sizes[0]

    def edges(W, offset):
        pre = np.repeat(np.arange(W.shape[0]), np.diff(np.asarray(W.indptr))) + offset
        return Edges(pre=pre, post=np.asarray(W.indices), weight=float(W.data), delay=0.0)

    net = Network.build(
        sizes={"E": n_e, "I": ei.sizes[1]},
        neuron=ei.neuron,
        receptors={"exc": ei.exc, "inh": ei.inh},
        edges={"exc": edges(ei.W_E, 0), "inh": edges(ei.W_I, n_e)},
        dt=DT,
        I_ext=float(ei.I_ext),
    )
    assert net.ring_length == 1 and net.projections["exc"].W.homogeneous
    key = jax.random.key(3)
    # `Network.simulate` draws the initial potentials with the first half of its key (an `EINetwork` with all)
    expected = networks.simulate(ei, 200.0, jax.random.split(key)[0], record=50)
    got = net.simulate(200.0, key, record=50)
    assert got.names == expected.names == ("E", "I") and got.sizes == expected.sizes
    assert int(got.counts.sum()) > 1000  # an active network, not a trivial agreement
    np.testing.assert_array_equal(got.counts, expected.counts)
    np.testing.assert_array_equal(got.raster, expected.raster)
    np.testing.assert_array_equal(got.rates(), expected.rates())
    np.testing.assert_array_equal(got.final_state.neurons.V, expected.final_state.neurons.V)
    # the module-level `networks.simulate` runs any network
    np.testing.assert_array_equal(networks.simulate(net, 200.0, key, record=50).raster, got.raster)
    with pytest.raises(ValueError, match="`dt`"):
        networks.simulate(net, 200.0, key, dt=0.05)


def _numpy_reference(net_params, edges, lags, I_ext, V0, n_steps):
    """LIF (exact exponential step, absolute refractory period) with current-based exponential receptors,
    every synapse delivered ``lag`` steps after its presynaptic spike — a direct loop, float64."""
    V_rest, V_reset, V_th, tau_m, g_L, t_ref, taus, dt = net_params
    n = V0.size
    V, refractory = V0.copy(), np.zeros(n)
    g = {r: np.zeros(n) for r in edges}
    arriving = {r: np.zeros((n_steps + 64, n)) for r in edges}
    raster = np.zeros((n_steps, n), bool)
    for t in range(n_steps):
        current = np.zeros(n)
        for r in edges:
            g[r] = g[r] * np.exp(-dt / taus[r]) + arriving[r][t]
            current = current + g[r]
        current = current + I_ext
        V_inf = V_rest + current / g_L
        V = np.where(refractory > 0.5 * dt, V_reset, V_inf + (V - V_inf) * np.exp(-dt / tau_m))
        spike = V >= V_th
        V = np.where(spike, V_reset, V)
        refractory = np.where(spike, t_ref, np.maximum(refractory - dt, 0.0))
        raster[t] = spike
        for r, (pre, post, w) in edges.items():
            fired = spike[pre]
            np.add.at(arriving[r], (t + lags[r][fired], post[fired]), w[fired])
    return raster, V


def test_heterogeneous_delays_match_numpy_reference():
    rng = np.random.default_rng(0)
    n, n_e = 40, 30
    neuron = zoo.astype(
        zoo.LIF(V_rest=-65.0, V_reset=-65.0, V_th=-50.0, C=250.0, g_L=25.0, t_ref=2.0), jnp.float64
    )
    taus = {"exc": 2.0, "inh": 6.0}
    receptors = {r: zoo.astype(zoo.Expon(tau=tau, mode="cuba"), jnp.float64) for r, tau in taus.items()}
    edges, lags, given = {}, {}, {}
    for r, sources, sign in (("exc", np.arange(n_e), 1.0), ("inh", np.arange(n_e, n), -1.0)):
        pre = np.repeat(sources, 8)
        post = rng.integers(0, n, pre.size)  # repeats allowed: merged into one synapse by `build`
        weight = sign * rng.uniform(50.0, 150.0, pre.size)
        delay = rng.uniform(0.0, 4.0, pre.size)
        given[r] = Edges(pre, post, weight, delay)
        edges[r] = (pre, post, weight)
        lags[r] = np.rint(delay / DT).astype(int) + 1
    I_ext = rng.uniform(300.0, 500.0, n)
    net = Network.build(
        sizes={"E": n_e, "I": n - n_e}, neuron=neuron, receptors=receptors, edges=given, dt=DT, I_ext=I_ext
    )
    assert net.ring_length == max(lags["exc"].max(), lags["inh"].max())
    V0 = rng.uniform(-65.0, -50.0, n)
    result = net.simulate(200.0, None, state=net.init_state(V=V0), record=n)
    params = (-65.0, -65.0, -50.0, 10.0, 25.0, 2.0, taus, DT)
    raster, V = _numpy_reference(params, edges, lags, I_ext, V0, 2000)
    assert raster.sum() > 200  # ≈ 30 Hz
    np.testing.assert_array_equal(np.asarray(result.raster), raster)
    np.testing.assert_allclose(result.final_state.neurons.V, V, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(result.counts.sum(axis=0), [raster[:, :n_e].sum(), raster[:, n_e:].sum()])
    # per-edge weights read back in the given order (repeats share their merged sum equally); a shared
    # weight set afterwards still counts each merged edge, and reads back as itself
    pre, post, weight = edges["exc"]
    shared = net.with_weights("exc", 2.0)
    W = np.asarray(net.weights("exc"))
    repeats = 0
    for k in range(pre.size):
        same = (pre == pre[k]) & (post == post[k]) & (lags["exc"] == lags["exc"][k])
        assert W[k] == pytest.approx(weight[same].sum() / same.sum())
        synapse = np.asarray(shared.projections["exc"].W.data)[np.asarray(shared.edge_slots["exc"])[k]]
        assert synapse == 2.0 * same.sum()
        repeats += same.sum() > 1
    assert repeats > 0
    np.testing.assert_allclose(shared.weights("exc"), 2.0)
    # review s24: weights() reported each merged edge's sum, so with_weights(weights()) doubled a merged
    # synapse at every round trip (100 and 200 merged: 300, 600, 1200)
    again = net.with_weights("exc", net.weights("exc")).with_weights("exc", net.weights("exc"))
    np.testing.assert_allclose(again.projections["exc"].W.data, net.projections["exc"].W.data, rtol=1e-12)


@pytest.mark.parametrize(("chunk", "word_bits"), [(None, None), (37, None), (37, 24)])
def test_delayed_csr_equals_a_dictionary_construction(monkeypatch, chunk, word_bits):
    """The sorted build against the plainest construction: synapses keyed by (pre, lag, post), weights
    summed in float64 in the given order, rows in (pre, lag) order with `row_ptr` per neuron, columns
    sorted; with repeats, many delays, int32/int16/float32 inputs as `Network.build` passes them, passes
    split into chunks, and the keys sorted in one pass or (short words) in several."""
    if chunk is not None:
        monkeypatch.setattr(delays, "_CHUNK", chunk)
    if word_bits is not None:
        monkeypatch.setattr(delays, "_WORD_BITS", word_bits)
    rng = np.random.default_rng(3)
    n, size = 23, 2000
    pre, post = (rng.integers(0, n, size).astype(np.int32) for _ in range(2))
    lag = rng.integers(1, 40, size).astype(np.int16)
    pre[:1000], post[:1000], lag[:1000] = pre[:1000] % 5, post[:1000] % 5, lag[:1000] % 3 + 1  # repeats
    pre[::17], post[::17], lag[::17] = 7, 8, 9  # one synapse repeated across many chunks
    weight = rng.normal(0.0, 1.0, size).astype(np.float32)
    projection, slot = delays.DelayedCSR.from_edges(pre, post, weight, lag, n, jnp.float32)
    synapses: dict[tuple[int, int, int], float] = {}
    for k in range(size):
        key = (int(pre[k]), int(lag[k]), int(post[k]))
        synapses[key] = synapses.get(key, 0.0) + float(weight[k])
    keys = sorted(synapses)
    rows = sorted({(p, lg) for p, lg, _ in keys})
    assert 0 < len(keys) < size  # repeats were merged
    flat = [(p * 40 + lg) * n + q for p, lg, q in keys]
    indptr = np.searchsorted(flat, [(p * 40 + lg) * n for p, lg in rows])
    W = projection.W
    assert W.shape == (len(rows), n)
    np.testing.assert_array_equal(W.indptr, [*indptr, len(keys)])
    np.testing.assert_array_equal(W.indices, [q for _, _, q in keys])
    np.testing.assert_array_equal(W.data, np.float32([synapses[k] for k in keys]))
    np.testing.assert_array_equal(projection.lag, [lg for _, lg in rows])
    np.testing.assert_array_equal(projection.source, [p for p, _ in rows])
    sources = np.asarray([p for p, _ in rows])
    np.testing.assert_array_equal(projection.row_ptr, [np.sum(sources < i) for i in range(n + 1)])
    index = {k: i for i, k in enumerate(keys)}
    expected = [index[(int(a), int(b), int(c))] for a, b, c in zip(pre, lag, post, strict=True)]
    np.testing.assert_array_equal(slot, expected)
    assert slot.dtype == W.indices.dtype == projection.source.dtype == projection.row_ptr.dtype == jnp.int32


def test_sorting_order_packs_or_splits_the_key():
    """`_sorting_order` is a stable argsort of the mixed-radix key, whether the key and a position fit one
    64-bit word (one pass) or need several passes (radices too large for one word)."""
    rng = np.random.default_rng(4)
    size = 5000
    digits = [rng.integers(0, radix, size) for radix in (9, 50, 50)]
    key = (digits[0] * 50 + digits[1]) * 50 + digits[2]
    expected = np.argsort(key, kind="stable")
    for radices, passes in (((9, 50, 50), 1), ((2**30, 2**20, 2**20), 2), ((2**40, 2**40, 2**40), 3)):
        order, bits = delays._sorting_order(tuple(zip(digits, radices, strict=True)), size)
        if passes == 1:  # the sorted words: key << bits | position
            np.testing.assert_array_equal(order >> bits, key[expected])
            order = order & ((1 << bits) - 1)
        else:
            assert bits is None
        np.testing.assert_array_equal(order, expected)


def _parts(rng, n):
    """Edges of one receptor in four parts over ascending presynaptic ranges (the second empty), with
    repeated (pre, post, delay) synapses, one part with a shared weight and one with a shared delay."""
    parts = []
    for k, (low, high) in enumerate(((0, 7), (7, 7), (7, 19), (19, n))):
        size = 300 if high > low else 0
        pre = rng.integers(low, max(high, low + 1), size).astype(np.int32)
        post = rng.integers(0, n, size).astype(np.int32)
        weight = 2.5 if k == 2 else rng.normal(0.0, 1.0, size).astype(np.float32)
        delay = 1.0 if k == 3 else rng.choice(np.float32([0.1, 0.5, 2.0]), size)
        parts.append(Edges(pre, post, weight, delay))
    return parts


def test_streamed_edges_build_the_network_of_the_concatenated_edges():
    """An iterable of parts (grouped one at a time and joined, `DelayedCSR.concatenate`) builds the network
    of the same parts as a list (concatenated, grouped at once), array by array: rows, merged repeats and
    their summed weights, edge slots, ring; a one-part stream that of its `Edges`; a receptor whose stream
    has no synapses is dropped, as one given an empty list is."""
    n = 30
    parts = _parts(np.random.default_rng(5), n)
    expon = zoo.Expon(mode="cuba")

    def build(edges):
        return Network.build(
            sizes={"E": 20, "I": 10}, neuron=zoo.LIF(), receptors={"exc": expon, "inh": expon}, edges=edges
        )

    empty = Edges(np.zeros(0, np.int32), np.zeros(0, np.int32), 1.0, 1.0)
    cases = [
        (
            build({"exc": (part for part in parts), "inh": iter([empty, empty])}),
            build({"exc": parts, "inh": []}),
        ),
        (build({"exc": iter(parts[2:3]), "inh": iter([])}), build({"exc": parts[2], "inh": [empty]})),
    ]
    for streamed, listed in cases:
        assert set(streamed.projections) == set(streamed.edge_slots) == set(listed.projections) == {"exc"}
        assert streamed.ring_length == listed.ring_length > 1
        ours, theirs = streamed.projections["exc"], listed.projections["exc"]
        assert ours.W.shape == theirs.W.shape and ours.W.nnz < streamed.edge_slots["exc"].size  # merged
        assert_same_projection(ours, theirs)
        np.testing.assert_array_equal(streamed.edge_slots["exc"], listed.edge_slots["exc"])


def test_streamed_parts_are_released_before_the_next_is_drawn():
    """Only one part's edges exist at once: when the next part is drawn, no array of the earlier parts is
    alive (the point of streaming the microcircuit's 3·10⁸ synapses)."""
    refs, alive = [], []

    def parts():
        for low in (0, 10, 20):
            alive.append(sum(ref() is not None for ref in refs))
            part = Edges(
                np.arange(low, low + 10, dtype=np.int32),
                np.arange(10, dtype=np.int32),
                np.ones(10, np.float32),
                np.ones(10, np.float32),
            )
            refs.extend(weakref.ref(array) for array in part)
            yield part
            del part

    net = Network.build(
        sizes={"E": 30}, neuron=zoo.LIF(), receptors={"exc": zoo.Expon()}, edges={"exc": parts()}
    )
    assert alive == [0, 0, 0] and net.projections["exc"].W.nnz == 30


def test_streamed_parts_are_validated_like_listed_ones():
    """A bad streamed part raises the ValueError (or TypeError) of the same part in a list, naming it; parts
    out of presynaptic order and delays too long for the ring are refused too."""
    good = Edges([0], [1], 1.0, 1.0)
    ok = dict(sizes={"E": 3}, neuron=zoo.LIF(), receptors={"exc": zoo.Expon(), "inh": zoo.Expon(mode="cuba")})
    cases = [
        (Edges([1], [3], 1.0, 1.0), r"`edges\['exc'\]\[1\]\.post` must hold neuron indices"),
        (Edges([1, 2], [1], 1.0, 1.0), r"`edges\['exc'\]\[1\]\.pre` and `\.post` must have equal lengths"),
        (Edges([1], [2], np.nan, 1.0), r"`edges\['exc'\]\[1\]\.weight` must be finite"),
        (Edges([1], [2], -1.0, 1.0), r"`edges\['exc'\]\[1\]\.weight` must be ≥ 0 nS .* receptor 'exc'"),
        (Edges([1], [2], 1.0, -0.5), r"`edges\['exc'\]\[1\]\.delay` must be ≥ 0 ms"),
        ("not edges", r"`edges\['exc'\]\[1\]` must be networks.Edges"),
    ]
    for bad, message in cases:
        errors = []
        for given in ([good, bad], iter([good, bad])):
            with pytest.raises((ValueError, TypeError), match=message) as error:
                Network.build(**ok, edges={"exc": given})
            errors.append(error)
        assert errors[0].type is errors[1].type and str(errors[0].value) == str(errors[1].value)
    with pytest.raises(ValueError, match=r"`edges\['inh'\]\[1\]`: the longest delay, 10000000000001 steps"):
        Network.build(**ok, edges={"inh": iter([good, Edges([1], [2], 1.0, 1e12)])})
    backwards = [Edges([1, 2], [0, 0], 1.0, 1.0), Edges([0, 1], [2, 2], 1.0, 1.0)]
    with pytest.raises(ValueError, match=r"`edges\['inh'\]\[1\]`: a streamed part's presynaptic neurons"):
        Network.build(**ok, edges={"inh": iter(backwards)})
    assert Network.build(**ok, edges={"inh": backwards}).projections["inh"].W.nnz == 4  # as a list: fine
    with pytest.raises(TypeError, match=r"`edges\['exc'\]` must be networks.Edges, a sequence"):
        Network.build(**ok, edges={"exc": 3})
    # `DelayedCSR.concatenate` itself refuses parts whose sources do not ascend
    grouped = [
        delays.DelayedCSR.from_edges(np.asarray(e.pre), e.post, 1.0, 2, 3, jnp.float32) for e in backwards
    ]
    with pytest.raises(ValueError, match=r"`parts\[1\]` starts at presynaptic neuron 0"):
        delays.DelayedCSR.concatenate(grouped)
    with pytest.raises(ValueError, match="`parts` must hold"):
        delays.DelayedCSR.concatenate([])


def test_continuation_and_key_reproducibility_with_background():
    net = Network.build(
        sizes={"E": 80, "I": 20},
        neuron=zoo.LIF(),
        receptors={"exc": zoo.Expon(tau=2.0, mode="cuba"), "inh": zoo.Expon(tau=4.0, mode="cuba")},
        edges={
            "exc": Edges(np.repeat(np.arange(80), 5), np.tile(np.arange(0, 100, 20), 80), 50.0, 1.0),
            "inh": Edges(np.repeat(np.arange(80, 100), 5), np.tile(np.arange(5), 20) * 7, -100.0, 0.5),
        },
        background=Background(rate=2000.0, weight=150.0, receptor="exc"),
    )
    key = jax.random.key(0)
    whole = net.simulate(100.0, key, record=100)
    assert 1.0 < float(whole.rates()[0]) < 200.0
    first = net.simulate(50.0, key, record=100)
    second = net.simulate(50.0, key, state=first.final_state, record=100)
    np.testing.assert_array_equal(np.concatenate([first.raster, second.raster]), whole.raster)
    again = net.simulate(100.0, key, record=100)
    other = net.simulate(100.0, jax.random.key(1), record=100)
    np.testing.assert_array_equal(again.raster, whole.raster)
    assert not np.array_equal(other.raster, whole.raster)

    # spikes kept as indices: the same spike trains as the raster, in the same order, with or without
    # checkpointing; a step with more recorded spikes than the capacity is an error naming the argument
    record = np.arange(100)[::-3]  # any order of recorded neurons
    dense = net.simulate(100.0, key, record=record)
    most = int(np.asarray(dense.raster).sum(axis=1).max())
    assert most >= 2
    for checkpoint in (None, 64):
        sparse = net.simulate(100.0, key, record=record, max_spikes_per_step=most, checkpoint=checkpoint)
        assert sparse.raster is None and sparse.spikes.shape == (1000, most)
        for a, b in zip(sparse.spike_trains(), dense.spike_trains(), strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(sparse.counts, dense.counts)
    with pytest.raises(Exception, match="max_spikes_per_step"):
        net.simulate(100.0, key, record=record, max_spikes_per_step=most - 1).spikes.block_until_ready()
    with pytest.raises(ValueError, match="`max_spikes_per_step`"):
        net.simulate(100.0, key, max_spikes_per_step=0)


def test_simulate_draws_potentials_and_background_from_independent_keys():
    # k0, k1 = split(key): k0 the initial potentials, k1 the background (they used to share the key)
    net = Network.build(
        sizes={"E": 50},
        neuron=zoo.LIF(),
        receptors={"exc": zoo.Expon(tau=2.0, mode="cuba")},
        edges={},
        background=Background(rate=5000.0, weight=40.0, receptor="exc"),
    )
    key = jax.random.key(7)
    k0, k1 = jax.random.split(key)
    whole = net.simulate(20.0, key, record=50)
    same = net.simulate(20.0, key, state=net.init_state(k0), record=50)
    np.testing.assert_array_equal(whole.raster, same.raster)
    np.testing.assert_array_equal(whole.final_state.neurons.V, same.final_state.neurons.V)
    # the first step's background is the drive's counts for k1's seed, whatever the initial potentials
    for state in (None, net.init_state(jax.random.key(99))):
        g = net.simulate(DT, key, state=state).final_state.receptors["exc"].g
        counts = net.drives[0].counts(_seed(k1), jnp.zeros((), jnp.int32), 0)
        assert float(counts.sum()) > 5
        np.testing.assert_allclose(g, counts * 40.0, rtol=1e-6)
    assert not np.allclose(net.init_state(key).neurons.V, net.init_state(k0).neurons.V)


def test_record_count_as_numpy_integer():
    net = _relay([1.0, 2.0])
    state = net.init_state(V=np.full(net.n, -65.0))
    for count in (2, np.int64(2), np.int32(2), np.array(2), jnp.asarray(2)):
        assert net.simulate(1.0, None, state=state, record=count).raster.shape == (10, 2)
    np.testing.assert_array_equal(net.simulate(1.0, None, state=state, record=[np.int64(2)]).record, [2])
    ei = networks.EINetwork.coba(jax.random.key(0), n=400, in_degree=40)
    assert networks.simulate(ei, 1.0, jax.random.key(1), record=np.int64(5)).raster.shape == (10, 5)
    with pytest.raises(ValueError, match="`record`"):
        net.simulate(1.0, None, state=state, record=True)
    with pytest.raises(ValueError, match="`record`"):
        net.simulate(1.0, None, state=state, record=np.int64(4))


@pytest.mark.parametrize("record", [2.0, np.float32(2), np.array([0.0, 1.0]), -2, np.int64(-1), "2"])
def test_record_float_or_negative_is_refused(record):
    """``record=2.0`` used to record neuron 2 alone (not neurons 0 and 1) and ``record=-2`` nothing."""
    net = _relay([1.0, 2.0])
    state = net.init_state(V=np.full(net.n, -65.0))
    with pytest.raises(ValueError, match="`record` must be a neuron count"):
        net.simulate(1.0, None, state=state, record=record)
    ei = networks.EINetwork.coba(jax.random.key(0), n=400, in_degree=40)
    with pytest.raises(ValueError, match="`record` must be a neuron count"):
        networks.simulate(ei, 1.0, jax.random.key(1), record=record)


def test_record_empty_list_records_nothing():
    net = _relay([1.0, 2.0])
    result = net.simulate(1.0, None, state=net.init_state(V=np.full(net.n, -65.0)), record=[])
    assert result.raster.shape == (10, 0) and result.record.shape == (0,)


def test_poisson_background_statistics():
    # counts of many (step, neuron) draws against the Poisson pmf, and no correlation between neighbouring
    # neurons or consecutive steps; tolerances: 5 standard errors
    n, steps = 2000, 400
    for mean in (0.05, 1.6, 12.0):
        drive = _PoissonDrive.build(np.full(n, mean), jnp.ones(n), "exc")
        draw = jax.vmap(drive.counts, in_axes=(None, 0, None))
        counts = np.asarray(draw(_seed(jax.random.key(4)), jnp.arange(steps), 0))
        size = counts.size
        assert abs(counts.mean() - mean) < 5 * np.sqrt(mean / size)
        assert abs(counts.var() - mean) < 5 * mean * np.sqrt(2.0 / size) + 5 * np.sqrt(mean / size)
        values, observed = np.unique(counts, return_counts=True)
        from scipy.stats import poisson

        for v, o in zip(values, observed, strict=True):
            p = poisson.pmf(v, mean)
            if p * size > 50:
                assert abs(o - p * size) < 5 * np.sqrt(p * size), (mean, v, o, p * size)
        z = (counts - counts.mean()) / counts.std()
        for lagged in ((z[:, 1:], z[:, :-1]), (z[1:], z[:-1])):
            assert abs(np.mean(lagged[0] * lagged[1])) < 5 / np.sqrt(size)


def test_background_steps_are_not_shifted_copies_of_each_other():
    # Each step's numbers hash (neuron · φ + h_step). Two steps whose h differ by k·φ (|k| < n) would give
    # the same numbers shifted by k neurons unless a second word of the step is mixed in; find such a pair
    # among 20,000 steps (there are tens at n = 50,000) and check the draws differ.
    n, phi = 50_000, 0x9E3779B9
    seed = _seed(jax.random.key(0))
    steps = np.arange(20_000, dtype=np.uint32)
    step_hash = _lowbias32(_lowbias32(jnp.asarray(steps) ^ seed[0]) + seed[1])
    shift = np.asarray(step_hash, np.uint64) * pow(phi, -1, 2**32) % 2**32  # h / φ mod 2³²
    order = np.argsort(shift)
    gaps = np.diff(shift[order].astype(np.int64))
    (close,) = np.nonzero(gaps < n)
    assert close.size > 0
    a, b = steps[order[close[0]]], steps[order[close[0] + 1]]
    k = int(gaps[close[0]])
    draws_a = np.asarray(_uniforms(seed, jnp.uint32(a), 0, n))
    draws_b = np.asarray(_uniforms(seed, jnp.uint32(b), 0, n))
    # b's neuron i would repeat a's neuron i + k
    assert np.mean(draws_b[: n - k] == draws_a[k:]) < 0.01


def test_pulse_drives_only_its_neurons_within_its_window():
    net = Network.build(
        sizes={"A": 10, "B": 10},
        neuron=zoo.LIF(),
        receptors={"exc": zoo.Expon(mode="cuba")},
        edges={},
    )
    pulse = Pulse(neurons=np.arange(10), start_ms=20.0, stop_ms=40.0, current=1000.0)
    result = net.simulate(60.0, None, state=net.init_state(V=np.full(20, -65.0)), record=20, pulse=pulse)
    times, ids = result.spike_trains()
    assert times.size > 10 and np.all(ids < 10)
    assert times.min() > 20.0 and times.max() <= 40.0 + DT
    # placed in absolute time: a continuation from 30 ms still sees the pulse until 40 ms
    first = net.simulate(30.0, None, state=net.init_state(V=np.full(20, -65.0)), record=20, pulse=pulse)
    second = net.simulate(30.0, None, state=first.final_state, record=20, pulse=pulse)
    np.testing.assert_array_equal(np.concatenate([first.raster, second.raster]), result.raster)


class _SoftSpike(surrogate.AbstractSurrogate):
    """A smooth 'spike' σ(β x), forward and backward, so that finite differences see the gradient."""

    beta: float = 2.0

    def pseudo_derivative(self, x):
        s = jax.nn.sigmoid(self.beta * x)
        return self.beta * s * (1 - s)

    def __call__(self, x):
        return jax.nn.sigmoid(self.beta * jnp.asarray(x))


def _small_net(spike_fn, detach_reset):
    rng = np.random.default_rng(1)
    n = 12
    neuron = zoo.astype(zoo.LIF(t_ref=0.0, spike_fn=spike_fn, detach_reset=detach_reset), jnp.float64)
    pre_e, pre_i = np.repeat(np.arange(9), 4), np.repeat(np.arange(9, 12), 4)
    edges = {
        "exc": Edges(
            pre_e,
            rng.integers(0, n, pre_e.size),
            rng.uniform(100, 300, pre_e.size),
            rng.uniform(0, 2, pre_e.size),
        ),
        "inh": Edges(
            pre_i,
            rng.integers(0, n, pre_i.size),
            rng.uniform(2, 6, pre_i.size),
            rng.uniform(0, 1, pre_i.size),
        ),
    }
    receptors = {
        "exc": zoo.astype(zoo.Expon(tau=3.0, mode="cuba"), jnp.float64),
        "inh": zoo.astype(zoo.Expon(tau=6.0, E=-80.0, mode="coba"), jnp.float64),
    }
    net = Network.build(
        sizes={"E": 9, "I": 3},
        neuron=neuron,
        receptors=receptors,
        edges=edges,
        I_ext=rng.uniform(350, 450, n),
    )
    return net, net.init_state(V=rng.uniform(-65, -50, n))


def test_rate_gradient_matches_central_finite_differences():
    # a smooth network (sigmoid spikes, no refractory period, nothing detached) so that the rates are a
    # differentiable function of every weight: autodiff through the delay ring, both event products, both
    # receptor kinds and the neuron must equal central differences (float64, relative 1e-6)
    net, state = _small_net(_SoftSpike(), detach_reset=False)
    w_exc, w_inh = net.weights("exc"), net.weights("inh")

    def loss(w_exc, w_inh, checkpoint=None):
        model = net.with_weights("exc", w_exc).with_weights("inh", w_inh)
        options = dict(state=state, surrogate=True, detach_recurrent=False, checkpoint=checkpoint)
        rates = model.simulate(30.0, None, **options).rates()
        return rates[0] - 0.5 * rates[1]

    grads = jax.grad(loss, argnums=(0, 1))(w_exc, w_inh)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
    # checkpointed segments (300 steps = 42 × 7 + 6) recompute the same gradient
    checkpointed = jax.grad(loss, argnums=(0, 1))(w_exc, w_inh, 7)
    for g, c in zip(grads, checkpointed, strict=True):
        np.testing.assert_allclose(c, g, rtol=1e-10, atol=1e-12)
    rng = np.random.default_rng(2)
    for argnum, w in enumerate((w_exc, w_inh)):
        direction = jnp.asarray(rng.normal(size=w.shape))
        eps = 1e-4 * float(jnp.abs(w).mean())

        def along(h, argnum=argnum, w=w, direction=direction):
            args = [w_exc, w_inh]
            args[argnum] = w + h * direction
            return float(loss(*args))

        fd = (along(eps) - along(-eps)) / (2 * eps)
        assert float(grads[argnum] @ direction) == pytest.approx(fd, rel=1e-6), argnum
        assert abs(fd) > 1e-6


def test_surrogate_gradient_of_heaviside_network_is_finite_and_signed():
    net, state = _small_net(surrogate.Sigmoid(), detach_reset=True)
    events = net.simulate(100.0, None, state=state)
    floats = net.simulate(100.0, None, state=state, surrogate=True)
    np.testing.assert_array_equal(np.asarray(floats.counts), np.asarray(events.counts, np.float64))

    def rate_e(scale):
        model = net.with_weights("exc", scale * net.weights("exc"))
        return model.simulate(100.0, None, state=state, surrogate=True).rates()[0]

    rate, grad = jax.value_and_grad(rate_e)(1.0)
    assert float(rate) > 0 and np.isfinite(float(grad)) and float(grad) > 0


def test_any_spiking_neuron_and_linear_receptor():
    # AdEx (no V_th: starts at rest) with alpha-function and dual-exponential current receptors
    net = Network.build(
        sizes={"E": 8, "I": 2},
        neuron=zoo.AdEx(),
        receptors={"exc": zoo.Alpha(mode="cuba"), "inh": zoo.DualExpon(mode="cuba")},
        edges={
            "exc": Edges(np.repeat(np.arange(8), 2), np.tile([8, 9], 8), 2000.0, 1.0),
            "inh": Edges(np.repeat([8, 9], 8), np.tile(np.arange(8), 2), -40.0, 0.5),
        },
        I_ext=np.r_[np.full(8, 800.0), np.zeros(2)],
    )
    state = net.init_state(jax.random.key(0))
    np.testing.assert_array_equal(state.neurons.V, zoo.AdEx().init_state((10,)).V)
    rates = np.asarray(net.simulate(100.0, jax.random.key(0)).rates())
    assert rates[0] > 5.0 and rates[1] > 0.0, rates  # the I cells fire only through the E → I synapses
    # a neuron whose input is not in pA cannot take conductance-based receptors
    with pytest.raises(ValueError, match="mode='cuba'"):
        Network.build(sizes={"E": 2}, neuron=zoo.GIF(), receptors={"exc": zoo.Expon()}, edges={})
    Network.build(sizes={"E": 2}, neuron=zoo.GIF(), receptors={"exc": zoo.Expon(mode="cuba")}, edges={})


@pytest.mark.parametrize("receptor_dtype", [jnp.float32, jnp.float64])
def test_receptors_take_the_networks_dtype(receptor_dtype):
    """A receptor whose per-neuron parameters are of another floating dtype than the neuron's (here under
    x64: a float64 network) runs in the network's dtype (its state was carried in its own, and the scan
    refused the carry)."""
    tau = jnp.full(4, 5.0, receptor_dtype)
    net = Network.build(
        sizes={"E": 4},
        neuron=zoo.astype(zoo.LIF(), jnp.float64),
        receptors={"exc": zoo.Expon(tau=tau, mode="cuba")},
        edges={"exc": Edges([0], [1], 100.0, 0.0)},
        I_ext=[600.0, 0.0, 0.0, 0.0],
    )
    assert net.receptors["exc"].tau.dtype == jnp.float64
    result = net.simulate(20.0, jax.random.key(0))
    assert result.final_state.receptors["exc"].g.dtype == jnp.float64 and int(result.counts.sum()) > 0


def test_bad_input_names_the_argument():
    lif, expon = zoo.LIF(), zoo.Expon(mode="cuba")
    ok = dict(sizes={"E": 3}, neuron=lif, receptors={"exc": expon})
    edge = Edges([0], [1], 1.0, 1.0)
    cases = [
        (dict(sizes={"E": 0}), "`sizes"),
        (dict(sizes={}), "`sizes`"),
        (dict(edges={"ampa": edge}), "`edges`.*'ampa'"),
        (dict(edges={"exc": Edges([0], [3], 1.0, 1.0)}), r"edges\['exc'\].post"),
        (dict(edges={"exc": Edges([-1], [1], 1.0, 1.0)}), r"edges\['exc'\].pre"),
        (dict(edges={"exc": Edges([0, 1], [1], 1.0, 1.0)}), "equal lengths"),
        (dict(edges={"exc": Edges([0], [1], np.nan, 1.0)}), r"\.weight` must be finite"),
        (dict(edges={"exc": Edges([0], [1], 1.0, -0.5)}), r"\.delay` must be ≥ 0"),
        (dict(edges={"exc": Edges([0], [1], 1.0, np.inf)}), r"\.delay` must be finite"),
        (dict(edges={"exc": Edges([0], [1], 1.0, 1e12)}), "longest delay"),
        (dict(edges={"exc": Edges([0], [1], [1.0, 2.0], 1.0)}), r"\.weight` must be a scalar or have shape"),
        (dict(receptors={"exc": zoo.Expon()}, edges={"exc": Edges([0], [1], -1.0, 1.0)}), "≥ 0 nS"),
        (dict(background=Background(10.0, 1.0, "gaba")), r"background.receptor"),
        (dict(background=Background(-1.0, 1.0, "exc")), r"background.rate"),
        (dict(background=Background(1e7, 1.0, "exc")), "inputs per neuron and step"),
        (dict(I_ext=np.zeros(4)), "`I_ext`"),
        (dict(neuron=zoo.LIF(V_th=np.full(5, -50.0))), "`neuron`"),
        (dict(dt=0.0), "dt"),
    ]
    for override, message in cases:
        with pytest.raises(ValueError, match=message):
            Network.build(**(ok | {"edges": {}} | override))
    with pytest.raises(TypeError, match="`neuron`"):
        Network.build(**(ok | {"edges": {}, "neuron": expon}))
    for saturating in (zoo.AMPA(), zoo.NMDA()):  # weights would not add up to nS
        with pytest.raises(ValueError, match=f"is a saturating synapse \\({type(saturating).__name__}\\)"):
            Network.build(**(ok | {"edges": {}, "receptors": {"exc": saturating}}))
    with pytest.raises(TypeError, match=r"`receptors\['exc'\]`"):
        Network.build(**(ok | {"edges": {}, "receptors": {"exc": lif}}))
    net = Network.build(**ok, edges={"exc": edge})
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`dt`"):
        net.simulate(10.0, key, dt=0.05)
    for duration in (0.05, np.inf, np.nan, "10", True, None, [10.0]):
        with pytest.raises(ValueError, match="`duration_ms`"):
            net.simulate(duration, key)
    with pytest.raises(ValueError, match="`record`"):
        net.simulate(1.0, key, record=[3])
    with pytest.raises(ValueError, match="`key`"):
        net.simulate(1.0, None)
    for bad_key in (0, jax.random.split(key)):
        with pytest.raises(ValueError, match="`key` must be one JAX key"):
            net.simulate(1.0, bad_key)
    assert net.simulate(jnp.bfloat16(1.0), key).counts.shape[0] == 10  # any real dtype, as `dt`
    with pytest.raises(ValueError, match="`checkpoint`"):
        net.simulate(1.0, key, checkpoint=0)
    with pytest.raises(ValueError, match=r"`pulse\.neurons`"):
        net.simulate(1.0, key, pulse=Pulse([5], 0.0, 1.0, 10.0))
    with pytest.raises(ValueError, match="`pulse`"):
        net.simulate(1.0, key, pulse=Pulse([0], 2.0, 1.0, 10.0))
    with pytest.raises(ValueError, match="`receptor`"):
        net.weights("inh")
    with pytest.raises(TypeError, match="`net`"):
        networks.simulate_network(lif, 1.0, key)


def test_a_state_that_blows_up_is_reported_not_returned():
    """Gap junctions of 10⁶ nS between AdEx cells overflow to NaN: `simulate` raises (as `zoo.simulate`)."""
    ring = networks.GapJunctions([0, 1, 1, 2, 2, 3, 0, 3], [1, 0, 2, 1, 3, 2, 3, 0], 1e6)
    net = Network.build(
        sizes={"E": 4}, neuron=zoo.AdEx(), receptors={"e": zoo.Expon()}, edges={}, dt=0.1,
        I_ext=[400.0, 0.0, 0.0, -300.0], gap_junctions=ring,
    )  # fmt: skip
    with pytest.raises(Exception, match="NaN or inf in the model state"):
        jax.block_until_ready(net.simulate(50.0, jax.random.key(0), record=4).counts)
    raw = net.simulate(50.0, jax.random.key(0), record=4, check_finite=False)
    assert not np.all(np.isfinite(raw.final_state.neurons.V))


def test_docstring_examples():
    for name in ("network", "delays", "adjacency"):
        module = importlib.import_module(f"diffbrain.zoo.networks.{name}")
        with jax.enable_x64(False):
            result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0


@pytest.mark.parametrize("neuron", [zoo.GIF(), zoo.ALIF(), zoo.Izhikevich()])
def test_gap_junctions_are_refused_for_a_neuron_whose_input_is_not_pA(neuron):
    """Review: a 1 nS junction across 15 mV carries 15 pA, but a GIF neuron (input in nA) received it as
    15 nA; like conductance-based receptors, gap junctions need a neuron that takes pA."""
    common = dict(sizes={"E": 2}, receptors={"exc": zoo.Expon(mode="cuba")}, edges={})
    gap = networks.GapJunctions([0], [1], 1.0)
    unit = re.escape(type(neuron).input_unit)
    with pytest.raises(ValueError, match=f"`gap_junctions` carry currents in pA.*takes its input in {unit}"):
        Network.build(**common, neuron=neuron, gap_junctions=gap)
    assert Network.build(**common, neuron=neuron).gap is None
    assert Network.build(**common, neuron=zoo.LIF(), gap_junctions=gap).gap.nnz == 1


def test_a_state_of_another_network_is_refused():
    """Review: a state of another neuron count failed inside ops naming `ring`, one with a shorter ring at
    run time (a JaxRuntimeError)."""

    def relay(n, delay_ms):
        edges = {"exc": Edges([0], [1], 300.0, delay_ms)}
        receptors = {"exc": zoo.Expon(mode="cuba")}
        return Network.build(sizes={"E": n}, neuron=zoo.LIF(), receptors=receptors, edges=edges)

    net = relay(4, 1.5)
    for other in (relay(5, 1.5), relay(4, 0.5)):
        with pytest.raises(ValueError, match="`state` must be a NetworkState of this network"):
            net.simulate(5.0, None, state=other.init_state(V=np.full(other.n, -65.0)))
    state = net.init_state(V=np.full(4, -65.0))
    assert net.simulate(5.0, None, state=state).counts.shape == (50, 1)
    # a surrogate run's final state (float spikes) continues an event run and vice versa
    surrogate = net.simulate(5.0, None, state=state, surrogate=True).final_state
    assert net.simulate(5.0, None, state=surrogate).counts.shape == (50, 1)


@pytest.mark.parametrize("unroll", [0, -1, 2.5, "2", None])
def test_unroll_must_be_a_positive_integer_or_a_bool(unroll):
    """Review: 2.5 failed deep in XLA, '2' with a bare TypeError."""
    net = Network.build(
        sizes={"E": 2}, neuron=zoo.LIF(), receptors={"exc": zoo.Expon(mode="cuba")}, edges={}, I_ext=600.0
    )
    ei = networks.EINetwork.coba(jax.random.key(0), n=100, in_degree=10)
    key = jax.random.key(0)
    for simulate in (net.simulate, lambda *args, **kw: networks.simulate(ei, *args, **kw)):
        with pytest.raises(ValueError, match="`unroll` must be a positive integer or a bool"):
            simulate(1.0, key, unroll=unroll)
    reference = np.asarray(net.simulate(1.0, key).counts)
    for good in (2, np.int64(3), True, False):
        np.testing.assert_array_equal(net.simulate(1.0, key, unroll=good).counts, reference)


def test_rate_trace_refuses_a_bin_that_is_not_a_whole_number_of_steps():
    """Review: ``bin_ms`` 0.25 at dt = 0.1 gave 0.2 ms bins, 0 and −5 gave 0.1 ms bins."""
    net = Network.build(
        sizes={"E": 10}, neuron=zoo.LIF(), receptors={"exc": zoo.Expon(mode="cuba")}, edges={}, I_ext=600.0
    )
    result = net.simulate(100.0, None, state=net.init_state(V=np.full(10, -65.0)))
    for bad in (0.25, 0.35, 0.04, 0.0, -5.0, np.nan, np.inf):
        with pytest.raises(ValueError, match=r"`bin_ms` must be a positive multiple of dt = 0\.1 ms"):
            result.rate_trace(bad)
    assert result.rate_trace(5.0).shape == (20, 1) and result.rate_trace(0.3).shape == (333, 1)
    np.testing.assert_allclose(result.rate_trace(0.1).mean(), result.rates()[0], rtol=1e-5)


def test_with_weights_refuses_negative_conductances():
    """Review: `build` refused a negative conductance for a conductance-based receptor, `with_weights` did
    not."""
    net = Network.build(
        sizes={"E": 2},
        neuron=zoo.LIF(),
        receptors={"exc": zoo.Expon(tau=5.0, E=0.0), "cur": zoo.Expon(mode="cuba")},
        edges={"exc": Edges([0], [1], 5.0, 0.0), "cur": Edges([0], [1], 5.0, 0.0)},
    )
    for weight in (-5.0, np.array([-5.0]), jnp.array([-5.0])):
        with pytest.raises(ValueError, match=r"`weight` must be ≥ 0 nS for the conductance-based receptor"):
            net.with_weights("exc", weight)
    assert float(net.with_weights("exc", 2.0).weights("exc")[0]) == 2.0
    assert float(net.with_weights("cur", -5.0).weights("cur")[0]) == -5.0  # a current carries its sign

    def total(weight):  # traced weights are not checked (as the finiteness of `with_data`)
        return jnp.sum(net.with_weights("exc", weight).weights("exc"))

    assert float(jax.grad(total)(jnp.array([-1.0]))[0]) == 1.0
