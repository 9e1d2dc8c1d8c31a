"""`MultiArea.pulse_response` on the time axis of the pulse: a run continued from a ``final_state`` starts
after time zero (`NetworkResult.start_ms`), and its rates must be binned at the width that
`pulse_response` reads them with (review s26: a continued run's bins were read as if from time zero, and
2 ms bins read as 5 ms ones)."""

import equinox as eqx
import jax
import numpy as np
import pytest

from diffbrain import zoo
from diffbrain.zoo.networks import MultiArea, Network, Pulse


def _three_areas_model() -> MultiArea:
    fln = np.array([[0.0, 0.6, 0.1], [0.3, 0.0, 0.5], [0.05, 0.4, 0.0]])
    distance = np.array([[0.0, 10.0, 20.0], [11.0, 0.0, 30.0], [21.0, 31.0, 0.0]])
    return MultiArea.build(
        fln, distance, np.array([0.0, 0.5, 1.0]), ["A", "B", "C"], n_per_area=20,
        key=jax.random.key(0), delay_jitter=0.0,
    )  # fmt: skip


def test_result_start_ms_counts_the_steps_before_the_run():
    net = Network.build(
        sizes={"A": 1}, neuron=zoo.LIF(), receptors={"exc": zoo.Expon(tau=5.0, mode="cuba")}, edges={}
    )
    first = net.simulate(20.0, None, state=net.init_state())
    second = net.simulate(30.5, None, state=first.final_state)
    third = net.simulate(10.0, None, state=second.final_state)
    assert first.start_ms == 0.0
    assert second.start_ms == pytest.approx(20.0)
    assert third.start_ms == pytest.approx(50.5)


def test_pulse_response_of_rates_that_start_later():
    """Bins of 5 ms from 200 ms: 5 Hz, area 0 at 50 Hz from 310 to 360 ms (first bin centre 312.5 ms,
    12.5 ms after the 300 ms onset). Read from time zero (the old behaviour), the baseline would be 200–300 ms
    of bins and the response window would miss the pulse."""
    rates = np.full((80, 2), 5.0)  # 200 … 600 ms
    rates[22:32, 0] = 50.0
    response = MultiArea.pulse_response(rates, Pulse([0], 300.0, 400.0, 1.0), start_ms=200.0)
    np.testing.assert_allclose(response.baseline, 5.0)
    np.testing.assert_allclose(response.peak, [45.0, 0.0])
    np.testing.assert_allclose(response.latency, [12.5, np.nan])
    np.testing.assert_allclose(response.after, 5.0)  # from 550 ms


def test_pulse_response_of_a_continued_result_uses_its_start():
    """Warm up 100 ms, then 300 ms with a pulse into A at 150–250 ms (absolute): the result itself places
    its bins from 100 ms, as rates given with ``start_ms=100``, and finds the response of the same spikes
    simulated in one run from time zero (the same key continues the same background): the same bins above
    the baseline (of 100–150 ms here, 20–150 ms there), the same latency. Read from time zero, as before,
    the pulse's first 50 ms fell in the baseline: latency 12.5 instead of 42.5 ms for A."""
    model = _three_areas_model()
    pulse = model.pulse("A", start_ms=150.0, duration_ms=100.0, amplitude_mV=10.0)
    key = jax.random.key(1)
    warm = model.simulate(100.0, key, pulse=None)
    run = model.simulate(300.0, key, pulse=pulse, state=warm.final_state)
    assert run.start_ms == pytest.approx(100.0)
    response = model.pulse_response(run, pulse)
    rates = np.asarray(model.area_rates(run))
    for got, expected in zip(response, model.pulse_response(rates, pulse, start_ms=100.0), strict=True):
        np.testing.assert_array_equal(got, expected)
    whole = model.simulate(400.0, key, pulse=pulse)
    np.testing.assert_array_equal(np.asarray(whole.counts)[1000:], np.asarray(run.counts))
    from_zero = model.pulse_response(whole, pulse)
    np.testing.assert_allclose(response.peak + response.baseline, from_zero.peak + from_zero.baseline)
    np.testing.assert_array_equal(response.latency, from_zero.latency)
    assert response.peak[0] > 50.0 and response.latency[0] == 42.5


def test_pulse_response_bins_a_result_at_its_bin_ms():
    model = _three_areas_model()
    pulse = model.pulse("A", start_ms=50.0, duration_ms=50.0, amplitude_mV=10.0)
    run = model.simulate(200.0, jax.random.key(2), pulse=pulse)
    for bin_ms in (2.0, 5.0):
        response = model.pulse_response(run, pulse, bin_ms=bin_ms)
        expected = model.pulse_response(model.area_rates(run, bin_ms), pulse, bin_ms=bin_ms)
        for got, want in zip(response, expected, strict=True):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="`start_ms` is for binned rates"):
        model.pulse_response(run, pulse, start_ms=0.0)


def test_pulse_response_names_what_the_rates_miss():
    rates = np.full((20, 2), 5.0)  # 100 ms of bins from 300 ms: after the onset at 250 ms
    with pytest.raises(ValueError, match=r"20 bins of 5.0 ms from 300.0 ms.*`start_ms`"):
        MultiArea.pulse_response(rates, Pulse([0], 250.0, 300.0, 1.0), start_ms=300.0)
    with pytest.raises(ValueError, match="`bin_ms` must be one real number > 0"):
        MultiArea.pulse_response(rates, Pulse([0], 50.0, 60.0, 1.0), bin_ms=0.0)
    with pytest.raises(ValueError, match="`start_ms` must be one real number ≥ 0"):
        MultiArea.pulse_response(rates, Pulse([0], 50.0, 60.0, 1.0), start_ms=np.nan)
    with pytest.raises(ValueError, match="`start_ms` must be one real number ≥ 0"):
        MultiArea.pulse_response(rates, Pulse([0], 50.0, 60.0, 1.0), start_ms=-10.0)


def test_pulse_response_refuses_a_result_of_another_network():
    net = Network.build(
        sizes={"A": 1}, neuron=zoo.LIF(), receptors={"exc": zoo.Expon(tau=5.0, mode="cuba")}, edges={}
    )
    run = net.simulate(100.0, None, state=net.init_state())
    with pytest.raises(ValueError, match="populations"):
        MultiArea.pulse_response(run, Pulse([0], 50.0, 60.0, 1.0))


def _one(runs, index):
    """Run ``index`` of a vmap'd batch of results."""
    return jax.tree.map(lambda x: x[index], runs)


@pytest.fixture(scope="module")
def three_continued_runs():
    """Three runs vmap'd over keys, continued from one 40 ms warm-up, 100 ms each with a pulse into A at
    60–90 ms (since time zero)."""
    model = _three_areas_model()
    pulse = model.pulse("A", start_ms=60.0, duration_ms=30.0, amplitude_mV=10.0)
    warm = model.simulate(40.0, jax.random.key(1), pulse=None)
    keys = jax.random.split(jax.random.key(2), 3)
    runs = jax.vmap(lambda k: model.simulate(100.0, k, pulse=pulse, state=warm.final_state, record=5))(keys)
    return model, pulse, runs


def test_batched_result_bins_each_run(three_continued_runs):
    """A result vmap'd over runs (counts [3, T, P]) bins along time: it failed with "Incompatible shapes for
    broadcasting: shapes=[(0, 2000), (6,)]" (binned along the runs)."""
    model, _, runs = three_continued_runs
    assert runs.counts.shape == (3, 1000, 6) and runs.duration == pytest.approx(100.0)
    for bin_ms in (2.0, 5.0):
        trace = np.asarray(runs.rate_trace(bin_ms))
        assert trace.shape == (3, round(100.0 / bin_ms), 6)
        np.testing.assert_array_equal(trace, np.stack([_one(runs, i).rate_trace(bin_ms) for i in range(3)]))
        by_run = np.stack([model.area_rates(_one(runs, i), bin_ms) for i in range(3)])
        np.testing.assert_array_equal(model.area_rates(runs, bin_ms), by_run)
    np.testing.assert_array_equal(runs.rates(), np.stack([_one(runs, i).rates() for i in range(3)]))
    nested = jax.tree.map(lambda x: x[None], runs)  # batch axes [1, 3]
    np.testing.assert_array_equal(nested.rate_trace(), np.asarray(runs.rate_trace())[None])


def test_batched_result_start_ms_is_the_runs_common_start(three_continued_runs):
    _, _, runs = three_continued_runs
    assert runs.start_ms == pytest.approx(40.0)
    assert all(_one(runs, i).start_ms == runs.start_ms for i in range(3))
    apart = eqx.tree_at(lambda r: r.final_state.step, runs, runs.final_state.step.at[1].add(10))
    with pytest.raises(ValueError, match=r"different times.*\[40\.0, 41\.0, 40\.0\] ms.*x\[i\]"):
        _ = apart.start_ms
    with pytest.raises(ValueError, match="outside `jit`"):
        jax.jit(lambda r: r.start_ms)(runs)


def test_pulse_response_of_a_batch_is_that_of_its_mean_rates(three_continued_runs):
    model, pulse, runs = three_continued_runs
    response = model.pulse_response(runs, pulse)
    mean = np.mean([np.asarray(model.area_rates(_one(runs, i)), float) for i in range(3)], axis=0)
    expected = model.pulse_response(mean, pulse, start_ms=40.0)
    for got, want in zip(response, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert response.peak[0] > 0.0


def test_spike_trains_of_a_batch_asks_for_one_run(three_continued_runs):
    _, _, runs = three_continued_runs
    with pytest.raises(ValueError, match=r"batch of 3 runs.*jax\.tree\.map\(lambda x: x\[i\], result\)"):
        runs.spike_trains()
    times, neurons = _one(runs, 0).spike_trains()
    assert times.shape == neurons.shape
    net = Network.build(
        sizes={"A": 2}, neuron=zoo.LIF(), receptors={"exc": zoo.Expon(tau=5.0, mode="cuba")}, edges={}
    )
    as_indices = jax.vmap(
        lambda k: net.simulate(5.0, k, state=net.init_state(), record=2, max_spikes_per_step=2)
    )(jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ValueError, match=r"batch of 2 runs"):
        as_indices.spike_trains()
