"""Surrogate spikes of models whose voltage runs away at a spike (AdEx, Izhikevich) carry a gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import zoo
from diffbrain.zoo.neurons._base import compressed_overshoot


def test_compressed_overshoot_keeps_the_sign_and_bounds_the_size():
    V_start = jnp.array([-60.0, -60.0, -1.0, -1.0, 10.0, 5.0])
    V_end = jnp.array([-59.5, 0.2, 1e6, -0.5, 0.0, -3.0])  # slow, fast, runaway, below, falling onto, falling
    x = np.asarray(compressed_overshoot(V_start, V_end, jnp.asarray(0.0), scale=2.0))
    V_end = np.asarray(V_end)
    np.testing.assert_array_equal(np.sign(x), np.sign(V_end))
    assert 1.99 < x[2] <= 2.0  # nearly the whole runaway step is above V_peak
    np.testing.assert_allclose(x[[0, 3, 4, 5]], V_end[[0, 3, 4, 5]])  # rises under 2 mV: unchanged
    np.testing.assert_allclose(x[1], 2.0 * 0.2 / 60.2)


@pytest.mark.parametrize(
    ("model", "amplitude"), [(zoo.AdEx(), 1000.0), (zoo.Izhikevich(), 10.0)], ids=["AdEx", "Izhikevich"]
)
def test_the_spike_count_has_a_gradient_of_the_secants_sign(model, amplitude):
    """In the crossing step V overshoots V_peak by 30 mV (Izhikevich) to 10⁶ mV (AdEx) at dt = 0.1 ms;
    on the raw overshoot the pseudo-derivative was ~0 there (AdEx: 6e-20, Izhikevich: −0.008)."""
    steps, dt = 2000, 0.1

    def count(amplitude):
        return zoo.simulate(model, jnp.full(steps, amplitude), dt, record=()).spike_count

    assert int(count(amplitude)) >= 5
    secant = float(count(1.02 * amplitude) - count(0.98 * amplitude)) / (0.04 * amplitude)
    gradient = float(jax.grad(count)(amplitude))
    assert secant > 0 and 1.0 * secant < gradient < 1000 * secant
