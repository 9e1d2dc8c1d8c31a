"""A start stopped by a NaN gradient at a finite loss is reported "failed", its finite loss kept."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import fit, zoo


@jax.custom_jvp
def _nan_slope(x):
    return x


@_nan_slope.defjvp
def _nan_slope_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return x, jnp.nan * t


class NanGradient(fit.AbstractLoss):
    """Voltage MSE with a NaN gradient everywhere."""

    def __call__(self, V, spikes, target):
        return _nan_slope(jnp.mean((V - target.voltage) ** 2))


@pytest.mark.parametrize("method", ["lbfgs", "lbfgsb", "adam"])
def test_a_nan_gradient_at_a_finite_loss_fails_the_start(silent_lif_sweeps, method):
    result = fit.fit(
        zoo.LIF(V_th=100.0), silent_lif_sweeps, free={"g_L": (5.0, 50.0)}, loss=NanGradient(), method=method,
        starts=[{"g_L": 6.0}], budget=20, gradient_mode="reverse",
    )  # fmt: skip
    (start,) = result.starts
    assert np.isfinite(start.loss) and "non-finite" in start.message
    assert start.status == "failed" and result.n_failed == 1
