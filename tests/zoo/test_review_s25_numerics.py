"""Float32 accuracy of AdEx surrogate gradients and long-τ LIF traces, and clear refusals of bool counts and
of shapes that do not broadcast (review s25)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import zoo
from diffbrain.zoo import stimulus
from diffbrain.zoo.neurons._base import compressed_overshoot


def _adex_count_gradient(delta_T: float, dtype) -> np.ndarray:
    """d(spike count)/d(V_T, delta_T, C) of an AdEx over 500 ms at 1 nA, dt = 0.1 ms, in ``dtype``."""
    model = zoo.astype(zoo.AdEx(delta_T=delta_T), dtype)
    inputs = jnp.full(5000, 1000.0, dtype)
    gradient = jax.grad(lambda m: zoo.simulate(m, inputs, 0.1, record=()).spike_count)(model)
    return np.array([float(gradient.V_T), float(gradient.delta_T), float(gradient.C)])


@pytest.mark.parametrize("delta_T", [0.5, 0.1])
def test_adex_float32_gradient_matches_float64_at_small_slope_factors(delta_T):
    """At Δ_T ≤ 0.5 mV the crossing step overshoots V_peak by 10¹⁴–10²⁶ mV; the overshoot divided by the
    rise lost a cancelling 1/rise² term to float32 underflow, off 2–4× (Δ_T 0.5: −1734.6 for −900.7)."""
    float32 = _adex_count_gradient(delta_T, jnp.float32)
    float64 = _adex_count_gradient(delta_T, jnp.float64)
    np.testing.assert_allclose(float32, float64, rtol=0.02)


def test_adex_spikes_at_the_default_slope_factor_are_unchanged():
    for dtype in (jnp.float32, jnp.float64):
        model = zoo.astype(zoo.AdEx(), dtype)
        trace = zoo.simulate(model, jnp.full(5000, 1000.0, dtype), 0.1)
        assert int(trace.spike_count) == 17
    np.testing.assert_allclose(
        _adex_count_gradient(2.0, jnp.float32), _adex_count_gradient(2.0, jnp.float64), rtol=0.01
    )


def test_compressed_overshoot_never_turns_a_tiny_undershoot_into_a_spike():
    """A step that ends 1e-30 mV below V_peak after a 50 mV rise: rounding makes the fraction of the step
    above V_peak exactly 0, which the Heaviside (x >= 0) would count as a spike."""
    V_start = jnp.array([-50.0, -50.0, -50.0], jnp.float32)
    V_end = jnp.array([-1e-30, 0.0, 1e-30], jnp.float32)
    compressed = np.asarray(compressed_overshoot(V_start, V_end, jnp.float32(0.0)))
    np.testing.assert_array_equal(np.sign(compressed), [-1.0, 0.0, 1.0])


def test_lif_float32_trace_matches_float64_at_a_100_s_time_constant():
    """τ = 100 s, dt = 0.01 ms: ``V_inf + (V − V_inf)·e^{−dt/τ}`` cancelled in float32 and lost 4.25 mV of
    an 8 mV rise (and fired 6 spikes where float64 fires 5)."""
    inputs = np.full(100_000, 2.0)
    traces = {
        dtype: np.asarray(
            zoo.simulate(zoo.astype(zoo.LIF(g_L=0.0025, V_th=1e6), dtype), jnp.asarray(inputs, dtype), 0.01).V
        )
        for dtype in (jnp.float32, jnp.float64)
    }
    assert traces[jnp.float64][-1] - (-65.0) == pytest.approx(7.96, abs=0.01)
    np.testing.assert_allclose(traces[jnp.float32], traces[jnp.float64], atol=0.1)  # 0.048 measured


@pytest.mark.parametrize("option", ["record_every", "checkpoint_every"])
def test_simulate_refuses_true_as_a_step_count(option):
    with pytest.raises(ValueError, match=f"`{option}` must be a positive integer.*got True"):
        zoo.simulate(zoo.LIF(), jnp.full(100, 500.0), 0.1, **{option: True})


def test_init_state_names_a_shape_that_does_not_broadcast_with_the_parameters():
    with pytest.raises(ValueError, match=re.escape("`shape` (2,)")) as error:
        zoo.LIF(V_th=jnp.array([-50.0, -45.0, -40.0])).init_state(2)
    assert "(3,)" in str(error.value) and "LIF" in str(error.value)


def test_steps_refuses_per_neuron_levels_with_the_way_to_get_them():
    with pytest.raises(ValueError, match="one number per segment") as error:
        stimulus.steps([[0.0, 0.0, 0.0], [100.0, 200.0, 300.0]], [0.2, 0.3], 0.1)
    assert "(2, 3)" in str(error.value)


def test_scalar_levels_are_refused_as_not_one_per_segment():
    with pytest.raises(ValueError, match="one number per segment"):
        stimulus.steps(1.0, [1.0], 0.1)


def test_the_shape_message_names_the_array_parameter():
    with pytest.raises(ValueError, match="of `V_th`"):
        zoo.LIF(V_th=jnp.array([-50.0, -45.0, -40.0])).init_state(2)


def test_numpy_true_is_refused_as_a_bool_step_count():
    with pytest.raises(ValueError, match="a bool is not a number of steps"):
        zoo.simulate(zoo.LIF(), jnp.zeros(10), 0.1, record_every=np.True_)
