"""Float32 conductances keep decaying after a spike: NMDA, AMPA and GABAa used to round ``g`` against O(1)
numbers every step, so it snapped to multiples of ~6e-8 and froze once a step's decay fell below half of
that (review s26)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import zoo
from diffbrain.zoo import synapses


def _after_one_spike(model, duration: float, dt: float, dtype) -> np.ndarray:
    """``g`` at every step of ``duration`` ms after a unit spike at t = 0, computed in ``dtype``."""
    model = zoo.astype(model, dtype)
    spikes = jnp.zeros(round(duration / dt), dtype).at[0].set(1.0)
    _, g = jax.lax.scan(lambda state, s: model.step(state, s, dt), model.init_state(), spikes)
    return np.asarray(g, np.float64)


@pytest.mark.parametrize("dt", [0.1, 0.01])
def test_nmda_float32_decay_tracks_float64_for_two_seconds(dt):
    """Float32 froze at 2.977e-5 from 1 s on (dt 0.1 ms; float64: 1.3e-9 at 2 s) and, from g = 0.01 at
    dt 0.01 ms, at 2.98e-4 where the exact decay reaches 4.5e-7 after 1 s."""
    model = synapses.NMDA()
    float32 = _after_one_spike(model, 2000.0, dt, jnp.float32)
    float64 = _after_one_spike(model, 2000.0, dt, jnp.float64)
    assert float64[-1] < 2e-9  # the decay spans eight orders of magnitude from the peak
    np.testing.assert_allclose(float32, float64, rtol=0.01, atol=0.0)


@pytest.mark.parametrize("dt", [0.1, 0.01])
def test_nmda_float32_free_decay_follows_its_time_constant(dt):
    model = zoo.astype(synapses.NMDA(), jnp.float32)
    state = model.State(g=jnp.float32(0.01), x=jnp.float32(0.0))
    _, g = jax.lax.scan(lambda state, _: model.step(state, False, dt), state, None, length=round(1000 / dt))
    np.testing.assert_allclose(float(g[-1]), 0.01 * np.exp(-1000 / 100), rtol=0.01)


@pytest.mark.parametrize("name", ["ampa", "gabaa"])
@pytest.mark.parametrize("dt", [0.1, 0.01])
def test_kinetic_float32_decay_tracks_float64(name, dt):
    """AMPA and GABAa froze at 1.65e-5 (dt 0.01 ms) or 1.64e-6 (dt 0.1 ms) from ~100 ms after a spike;
    float64 decays on to ~1e-24 by 300 ms."""
    model = synapses.SYNAPSES[name]()
    float32 = _after_one_spike(model, 300.0, dt, jnp.float32)
    float64 = _after_one_spike(model, 300.0, dt, jnp.float64)
    assert float64[-1] < 1e-23
    np.testing.assert_allclose(float32, float64, rtol=0.01, atol=0.0)
    bound = zoo.astype(model, jnp.float32)
    assert np.max(float32) <= float(bound.alpha * bound.T_max / (bound.alpha * bound.T_max + bound.beta))


def test_kinetic_float32_step_stays_below_its_steady_state_when_the_pulse_saturates():
    """``g + (g_inf − g)(1 − e^{−rate·t})`` overshoots ``g_inf`` by an ulp for some ``g < g_inf/2`` once
    ``e^{−rate·t}`` rounds to 0 (here rate·dt = 26, g_inf = 0.769: 131 of these 4001 starts overshot)."""
    model = zoo.astype(synapses.AMPA(alpha=2.0, beta=0.3, T_dur=20.0), jnp.float32)
    g_inf = model.alpha * model.T_max / (model.alpha * model.T_max + model.beta)
    start = jnp.linspace(0.0, g_inf, 4001, dtype=jnp.float32)
    state = model.State(g=start, pulse=jnp.full_like(start, 20.0))
    _, g = model.step(state, False, 20.0)
    assert np.all(np.asarray(g) <= np.asarray(g_inf))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("pulse", [0.0, 0.05, 0.1])
def test_kinetic_step_from_above_its_steady_state_follows_the_closed_form(dtype, pulse):
    """A state above ``g_inf`` (a custom start, or a warm state continued with other kinetics) relaxes down
    to it with transmitter and decays at rate β without: the cap against the saturating step's overshoot
    set AMPA's g0 = 0.9 (g_inf = 0.731) to g_inf after one silent 0.1 ms step, 0.718 instead of 0.884,
    with dg/dg0 = 0 instead of 0.982. ``pulse`` ms of transmitter are left at the step's start."""
    model = zoo.astype(synapses.AMPA(), dtype)
    alpha, beta, T_max = (float(x) for x in (model.alpha, model.beta, model.T_max))
    rate_on, g_inf, dt = alpha * T_max + beta, alpha * T_max / (alpha * T_max + beta), 0.1

    def closed_form(g0):
        g = g_inf + (g0 - g_inf) * np.exp(-rate_on * pulse)
        return g * np.exp(-beta * (dt - pulse))

    def step(g0):
        state = model.State(g=g0, pulse=jnp.asarray(pulse, dtype))
        return model.step(state, False, dt)[1]

    g0 = 0.9
    slope = np.exp(-rate_on * pulse - beta * (dt - pulse))
    rtol = 1e-6 if dtype == jnp.float32 else 1e-12
    np.testing.assert_allclose(float(step(jnp.asarray(g0, dtype))), closed_form(g0), rtol=rtol)
    np.testing.assert_allclose(float(jax.grad(step)(jnp.asarray(g0, dtype))), slope, rtol=rtol)
