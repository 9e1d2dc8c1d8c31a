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
