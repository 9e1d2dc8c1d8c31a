"""`stimulus.poisson` turns its rate (Hz) into a per-step probability with the time step: rate·dt/1000."""

import jax
import numpy as np
import pytest

from diffbrain.zoo import stimulus


def test_the_mean_rate_in_hz_holds_at_a_time_step_other_than_one_ms():
    """40 Hz at dt = 0.1 ms is p = 0.004 a step; dividing by dt instead (p = 0.4) would fire at 4000 Hz."""
    n_steps, dt = 50_000, 0.1  # 5 s of 100 trains: 20,000 spikes expected (SD 0.7 %)
    spikes = stimulus.poisson(jax.random.key(3), 40.0, n_steps, dt, shape=(100,))
    assert spikes.shape == (n_steps, 100)
    assert float(spikes.mean()) * 1000.0 / dt == pytest.approx(40.0, rel=0.03)


def test_the_one_spike_per_step_limit_scales_with_the_time_step():
    """2000 Hz is one spike per step at dt = 0.5 ms: allowed there and below, refused above."""
    key = jax.random.key(1)
    with pytest.raises(ValueError, match=r"dt=0\.6 ms\); lower dt"):
        stimulus.poisson(key, 2000.0, 10, 0.6)
    assert stimulus.poisson(key, 2000.0, 10, 0.5, shape=4).all()  # p = 1: every step
    below = stimulus.poisson(key, 2000.0, 10_000, 0.4, shape=4)  # p = 0.8
    assert float(below.mean()) == pytest.approx(0.8, abs=0.02)
    traced = jax.jit(lambda rate: stimulus.poisson(key, rate, 10, 0.4))(2000.0)  # traced check: no error
    np.testing.assert_array_equal(traced, stimulus.poisson(key, 2000.0, 10, 0.4))
    with pytest.raises(Exception, match="exceeds one spike per step"):
        jax.block_until_ready(jax.jit(lambda rate: stimulus.poisson(key, rate, 10, 0.6))(2000.0))
