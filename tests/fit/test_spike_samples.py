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


def test_a_float64_crossing_that_happens_to_be_a_float32_counts_after_its_sample():
    """Dyadic voltages (-0.25 → 63.75 mV at dt 0.25 ms, -0.0625 → 63.9375 at 1 ms) cross 0 mV at
    15000.0009765625 ms, a float32: alone or among other float64 times it counts at k + 1, the first sample
    at or above 0 mV (the per-time float32 tolerance had put it at k, where V is below 0 mV)."""
    for dt, k, below in ((0.25, 60_000, -0.25), (1.0, 15_000, -0.0625)):
        v = np.full(k + 5_000, -70.0)
        v[k], v[k + 1] = below, below + 64.0
        times = detect_spikes(v, dt)
        assert np.float32(times[0]) == times[0]
        assert spike_samples(times, dt).tolist() == [k + 1]
        assert spike_samples(jnp.asarray(times), dt).tolist() == [k + 1]
        assert spike_samples(np.r_[times, 1000.01], dt).tolist() == [k + 1, int(np.ceil(1000.01 / dt))]
        rec = Recording(dt, np.zeros(v.size), v)
        assert np.flatnonzero(np.asarray(rec.with_detected_spikes().spike_train())).tolist() == [k + 1]
        target = fit.prepare(zoo.LIF(), rec)[1]
        assert np.flatnonzero(np.asarray(target.spikes[:, 0])).tolist() == [k + 1]


def test_float32_times_on_a_grid_of_float32_values_stay_at_their_sample():
    """At dt 0.25 ms every grid time is a float32: stored as float32 or its float64 copy, sample k."""
    k = np.arange(0, 200_000, 13)
    stored = (k * 0.25).astype(np.float32)
    for times in (stored, stored.astype(np.float64), jnp.asarray(stored)):
        np.testing.assert_array_equal(np.asarray(spike_samples(times, 0.25)), k)
