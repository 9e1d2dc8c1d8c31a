"""Where a spike counts on the sample grid (`spike_samples`): a detected crossing at the first sample at or
above the threshold, a time on the grid rounded by float32 at its own sample."""

import jax.numpy as jnp
import numpy as np

from diffbrain import fit, zoo
from diffbrain.fit.recording import Recording, detect_spikes, spike_samples


def test_a_detected_crossing_just_after_a_sample_counts_at_the_next_sample_in_a_long_sweep():
    """At 15 s, a crossing 1 % of a step after sample k counts at k + 1, the first sample at or above 0 mV
    (the float32 tolerance had put it at k, where V is -0.4 mV), in prepare and in spike_train."""
    n, dt, k = 200_000, 0.1, 150_000
    v = np.full(n, -70.0)
    v[k], v[k + 1] = -0.4, 39.6
    rec = Recording(dt, np.zeros(n), v)
    target = fit.prepare(zoo.LIF(), rec)[1]
    assert np.flatnonzero(np.asarray(target.spikes[:, 0])).tolist() == [k + 1]
    train = np.asarray(rec.with_detected_spikes().spike_train())  # float64 times (the tests enable x64)
    assert np.flatnonzero(train).tolist() == [k + 1]
    assert spike_samples(detect_spikes(v, dt), dt).tolist() == [k + 1]


def test_times_on_the_grid_rounded_by_float32_stay_at_their_sample():
    """k·dt rounded to float32 (up or down), as float32 or as its float64 copy, NumPy or JAX: sample k."""
    dt = 0.1
    k = np.arange(1, 200_000, 7)
    stored = (k * dt).astype(np.float32)
    assert (stored.astype(np.float64) > k * dt).any()  # some rounded up, past the grid
    for times in (stored, stored.astype(np.float64), jnp.asarray(stored), jnp.asarray(stored, jnp.float64)):
        np.testing.assert_array_equal(np.asarray(spike_samples(times, dt)), k)
    np.testing.assert_array_equal(spike_samples(k * dt, dt), k)
