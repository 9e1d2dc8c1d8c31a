"""`stimulus.poisson` at rates whose per-step probability is below a float32 uniform's resolution (2^-23)."""

import jax
import jax.numpy as jnp
import numpy as np

from diffbrain.zoo import stimulus


def test_a_rate_far_below_the_float32_resolution_keeps_its_mean():
    """Review: a float32 uniform is a multiple of 2^-23, so each step spiked with probability
    ceil(p·2^23)/2^23: 1e-4 Hz at dt = 0.01 ms (p = 1e-9) spiked at 1.19e-7 a step, 119 times too often."""
    with jax.enable_x64(False):  # float32, the library's default
        spikes = stimulus.poisson(jax.random.key(2), 1e-4, 10_000, 0.01, shape=3000)
    assert int(spikes.sum()) <= 1  # 3e7 steps: 0.03 spikes expected (>= 2: 4e-4); the float32 uniform: 3.6


def test_rates_keep_their_mean_also_in_float16_and_zero_and_one_are_exact():
    spikes = stimulus.poisson(jax.random.key(0), 10.0, 10_000, 0.01, shape=1000)  # p = 1e-4: 1000 expected
    assert abs(int(spikes.sum()) - 1000) <= 4 * np.sqrt(1000)
    assert not stimulus.poisson(jax.random.key(1), 0.0, 1000, 0.1, shape=100).any()
    assert stimulus.poisson(jax.random.key(1), 1000.0, 1000, 1.0, shape=100).all()  # p = 1
    half = stimulus.poisson(jax.random.key(2), jnp.float16(10.0), 1000, 1.0, shape=100)  # p·2^32 > 65504
    assert abs(int(half.sum()) - 1000) <= 4 * np.sqrt(1000)
