"""AMPA/GABAa at the step where a transmitter pulse ends: the rounding of the pulse's countdown."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import zoo
from diffbrain.zoo import synapses

DT = 0.1  # ms; divides both T_dur (0.5 ms AMPA, 1 ms GABAa)


def _trace(model, spikes, dt):
    def body(state, s):
        return model.step(state, s, dt)

    _, gs = jax.lax.scan(body, model.init_state(), spikes)
    return gs


@pytest.mark.parametrize("dtype, h, rtol", [(jnp.float32, 1e-3, 5e-3), (jnp.float64, 1e-7, 1e-5)])
@pytest.mark.parametrize("name", ["ampa", "gabaa"])
def test_spike_gradient_at_the_step_a_pulse_ends_matches_finite_differences(name, dtype, h, rtol):
    """Review: counting the pulse down by dt left 1.5e-8 ms (float32 AMPA) or 2.8e-17 ms (float64) at the
    step where it really ended, so a spike there could not outlast it and d g/ds was 0 (FD: 0.1355)."""
    model = zoo.astype(synapses.SYNAPSES[name](), dtype)
    ends = round(float(model.T_dur) / DT)  # a spike at step 0 opens a pulse that ends with step `ends`
    spikes = jnp.zeros(ends + 10, dtype).at[0].set(1.0)

    @jax.jit
    def g_later(s):
        return _trace(model, spikes.at[ends].set(s), DT)[-1]

    s0 = jnp.asarray(0.0, dtype)
    fd = (float(g_later(s0 + h)) - float(g_later(s0))) / h
    assert fd > 0.1
    np.testing.assert_allclose(float(jax.grad(g_later)(s0)), fd, rtol=rtol)


@pytest.mark.parametrize("dt", [0.25, 0.125, 0.1, 0.05])
def test_pulse_duration_gradient_at_a_multiple_of_dt_is_the_derivative_from_below(dt):
    """g has a kink in T_dur where dt divides it; autodiff gave the derivative from above, half the one from
    below or the one from below, as the countdown's rounding fell. It is now always the one from below."""
    n = round(4 / dt)
    spikes = jnp.zeros(n).at[0].set(1.0)
    weights = jnp.cos(jnp.arange(n) / 3.0)

    @jax.jit
    def loss(T_dur):
        return jnp.sum(_trace(synapses.AMPA(T_dur=T_dur), spikes, dt) * weights)

    T_dur, h = jnp.asarray(0.5, jnp.float64), 1e-7
    below = (float(loss(T_dur)) - float(loss(T_dur - h))) / h
    above = (float(loss(T_dur + h)) - float(loss(T_dur))) / h
    assert abs(above - below) > 1e-2 * abs(below)  # a kink
    np.testing.assert_allclose(float(jax.grad(loss)(T_dur)), below, rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "T_dur", "dt"), [("AMPA", 100.0, 0.01), ("GABAa", 10.0, 0.001), ("GABAa", 30.0, 0.005)]
)
def test_a_long_float32_pulse_ends_at_its_step_and_keeps_g_below_its_ceiling(name, T_dur, dt):
    """Review s24: the countdown's rounding bound spans several steps in float32 from T_dur/dt ≈ 10⁴, so the
    pulse ended up to 6 steps early, and that step applied more transmitter time than it holds, then a
    negative decay time: g rose to 0.9925 over its ceiling 0.9823 (1.074 for a 1,000 ms pulse at 0.1 ms)."""
    model = zoo.astype(getattr(synapses, name)(T_dur=T_dur, alpha=10.0, T_max=1.0), jnp.float32)
    ends = round(T_dur / dt)
    spikes = jnp.zeros(ends + 20, jnp.float32).at[0].set(1.0)

    def body(state, s):
        state, g = model.step(state, s, dt)
        return state, (g, state.pulse)

    _, (g, pulse) = jax.lax.scan(body, model.init_state(), spikes)
    assert int(np.flatnonzero(np.asarray(pulse) == 0)[0]) == ends
    ceiling = float(model.alpha * model.T_max / (model.alpha * model.T_max + model.beta))
    assert float(jnp.max(g)) <= ceiling * (1 + 1e-6)
    t = dt * np.arange(ends + 20, dtype=np.float64)
    relaxed = ceiling * (1 - np.exp(-(10.0 + float(model.beta)) * np.minimum(t, T_dur)))
    exact = relaxed * np.exp(-float(model.beta) * np.maximum(t - T_dur, 0.0))
    np.testing.assert_allclose(np.asarray(g), exact, atol=1e-3)
