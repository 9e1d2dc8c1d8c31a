"""`zoo.networks.Network`: a pulse edge past the int32 step counter's range, and population rates summed
without int32 wrap-around."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import zoo
from diffbrain.zoo.networks import Network, NetworkResult, Pulse


def _one_neuron() -> Network:
    return Network.build(
        sizes={"A": 1}, neuron=zoo.LIF(), receptors={"exc": zoo.Expon(tau=5.0, mode="cuba")}, edges={}
    )


@pytest.mark.parametrize("far_ms", [3e8, 1e12])
def test_a_pulse_that_stops_beyond_the_step_counter_stays_on(far_ms):
    # 3e8 ms is 3e9 steps of 0.1 ms, past int32: it wrapped to -2^31 and the pulse was never on (0 spikes)
    net = _one_neuron()
    state = net.init_state(V=[-65.0])
    near = net.simulate(100.0, None, state=state, pulse=Pulse([0], 0.0, 1e3, 500.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy cast warning either
        far = net.simulate(100.0, None, state=state, pulse=Pulse([0], 0.0, far_ms, 500.0))
        late = net.simulate(100.0, None, state=state, pulse=Pulse([0], far_ms, far_ms, 500.0))
    assert int(near.counts.sum()) == 6
    assert int(far.counts.sum()) == 6
    assert int(late.counts.sum()) == 0  # starting that late: never on


def _result_with_counts(counts: jax.Array, size: int) -> NetworkResult:
    net = _one_neuron()
    run = net.simulate(0.1, None, state=net.init_state())
    return NetworkResult(0.1, ("A",), (size,), counts, None, run.record, run.final_state)


def test_rates_and_rate_trace_do_not_wrap_past_two_to_the_31_spikes():
    # 4 steps in which 10^9 neurons all fire: 4·10^9 spikes wrapped in int32 (-9.52 Hz in the review's
    # case). Without x64, as the library runs by default: with x64, jnp sums int32 as int64.
    with jax.enable_x64(False):
        result = _result_with_counts(jnp.full((4, 1), 1_000_000_000, jnp.int32), 1_000_000_000)
        rates, trace = result.rates(), result.rate_trace(0.4)
    expected = 1000.0 / 0.1  # one spike per neuron and step of 0.1 ms: 10 kHz
    np.testing.assert_allclose(np.asarray(rates), [expected], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(trace), [[expected]], rtol=1e-6)
    assert rates.dtype == result.final_state.neurons.V.dtype == jnp.float32


def test_surrogate_rates_stay_differentiable():
    net = _one_neuron()
    state = net.init_state(V=[-65.0])

    def rate(current):
        pulse = Pulse([0], 0.0, 50.0, current)
        return net.simulate(50.0, None, state=state, pulse=pulse, surrogate=True).rates()[0]

    assert float(jax.grad(rate)(500.0)) > 0
