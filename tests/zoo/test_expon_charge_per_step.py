"""The charge of an `Expon` receptor whose end-of-step ``g`` is held over each step, as documented."""

import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain.zoo import synapses


@pytest.mark.parametrize(("tau", "excess"), [(5.0, 0.010), (0.5, 0.103)])
def test_held_end_of_step_conductance_integrates_to_the_documented_charge(tau, excess):
    dt, syn = 0.1, synapses.Expon(tau=tau, mode="cuba")
    state, charge = syn.init_state(), 0.0
    for k in range(round(40 * tau / dt)):
        state, g = syn.step(state, jnp.asarray(k == 0, jnp.float64), dt)
        charge += float(g) * dt  # the current the neuron holds over step k
    np.testing.assert_allclose(charge, dt / -np.expm1(-dt / tau), rtol=1e-12)
    assert charge / tau - 1 == pytest.approx(excess, abs=5e-4)
    corrected = charge * tau * -np.expm1(-dt / tau) / dt
    np.testing.assert_allclose(corrected, tau, rtol=1e-12)
