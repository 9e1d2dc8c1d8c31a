"""DualExpon's gradients with respect to its time constants stay finite in float32 at large
``tau_decay/tau_rise``: the series branch of ``ln(1 + u)/u`` was evaluated at every ``u``, overflowed at large
``u``, and from ``tau_decay/tau_rise ≈ 9184`` the unselected inf made the gradient NaN (review s26). A rise
much faster than ``dt`` has the step's gain in a form of its own (`DualExpon._gain_factor`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain.zoo import synapses
from diffbrain.zoo.synapses.dual_expon import _log1p_over


def _t_peak(taus):
    return synapses.DualExpon(tau_rise=taus[0], tau_decay=taus[1]).t_peak


def _summed_response(taus, dt=0.1, steps=200):
    """The sum of ``g`` over ``steps`` steps after a unit spike at t = 0."""
    model = synapses.DualExpon(tau_rise=taus[0], tau_decay=taus[1])
    spikes = jnp.zeros(steps, taus.dtype).at[0].set(1.0)
    _, g = jax.lax.scan(lambda state, s: model.step(state, s, dt), model.init_state(), spikes)
    return g.sum()


def _central_difference(f, taus, relative_step=1e-3):
    """Five-point central differences with steps of ``relative_step`` times the smaller of the time constant
    and the gap ``tau_decay − tau_rise`` (a step must not carry tau_rise past tau_decay)."""
    taus = np.asarray(taus, np.float64)
    gradient = np.zeros_like(taus)
    for i in range(taus.size):
        h = relative_step * min(taus[i], taus[1] - taus[0])
        values = []
        for shift in (-2, -1, 1, 2):
            shifted = taus.copy()
            shifted[i] += shift * h
            values.append(float(f(jnp.asarray(shifted))))
        gradient[i] = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * h)
    return gradient


# t_peak at (0.01, 100): ratio 10⁴, NaN at HEAD; (2.9999, 3) and (1, 1.006–1.1): the series branch; (1, 10):
# the direct branch.
# The response after a spike, summed over 20 ms, through `step`: float32 within 1e-3 (2.6e-4 at (0.01, 100)).
@pytest.mark.parametrize(
    "quantity, taus, rtol",
    [
        *((_t_peak, taus, 1e-5) for taus in [(0.01, 100.0), (0.001, 50.0), (2.9999, 3.0), (1.0, 10.0)]),
        # the series branch up to its threshold ε^(1/12) = 0.27: within 1 ε there; the direct form 10-90 ε off
        *((_t_peak, (1.0, tau_decay), 5 * np.finfo(np.float32).eps) for tau_decay in [1.006, 1.02, 1.1]),
        *((_summed_response, taus, 1e-3) for taus in [(0.01, 100.0), (2.9999, 3.0)]),
        # a rise far faster than dt: the exprel form of the step's gain gave d/dτ_r 102 % off at (1e-6, 100)
        # and 0.35 % at (1e-5, 3); its expm1 form holds 1e-5
        *((_summed_response, taus, 1e-5) for taus in [(1e-6, 100.0), (1e-5, 3.0), (1e-4, 100.0)]),
    ],
)
def test_float32_gradient_is_finite_and_matches_float64_and_finite_differences(quantity, taus, rtol):
    float32 = np.asarray(jax.grad(quantity)(jnp.asarray(taus, jnp.float32)))
    float64 = np.asarray(jax.grad(quantity)(jnp.asarray(taus, jnp.float64)))
    assert np.all(np.isfinite(float32))
    np.testing.assert_allclose(float64, _central_difference(quantity, taus), rtol=1e-6)
    np.testing.assert_allclose(float32, float64, rtol=rtol)


def test_log1p_over_gradient_is_finite_up_to_float32_overflow():
    u = jnp.asarray(np.geomspace(1e-3, 1e30, 400), jnp.float32)
    gradient = jax.vmap(jax.grad(_log1p_over))(u)
    assert np.all(np.isfinite(np.asarray(gradient)))
