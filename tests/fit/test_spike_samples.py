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


def test_a_float64_crossing_that_happens_to_be_a_float32_counts_at_the_grid_time_below_it():
    """The documented limit: dyadic voltages (-0.25 → 63.75 mV at dt 0.25 ms) cross 0 mV at
    15000.0009765625 ms, a float32 within a float32 ulp after sample k, so it is taken for the grid time
    k·dt and counts at k; a float64 crossing that is no float32 (15000.001 ms) counts at k + 1."""
    dt, k = 0.25, 60_000
    v = np.full(k + 5_000, -70.0)
    v[k], v[k + 1] = -0.25, 63.75
    times = detect_spikes(v, dt)
    assert np.float32(times[0]) == times[0]
    assert spike_samples(times, dt).tolist() == [k]
    assert spike_samples(np.r_[times, 15000.001], dt).tolist() == [k, k + 1]


def test_float64_copies_of_float32_grid_times_stay_at_their_sample():
    """Grid times computed in float32 (k·float32(dt), as a float32 simulation gives them), handed over as
    float64 copies alone or among other float64 times, NumPy or JAX: sample k (the per-array rule had put
    2,191 of 42,858 at dt 1/30 ms and 3,120 at dt 0.3 ms a sample late)."""
    k = np.arange(0, 300_000, 7)
    for dt in (1 / 30, 0.3):
        computed = (k.astype(np.float32) * np.float32(dt)).astype(np.float64)
        for times in (computed, jnp.asarray(computed)):
            np.testing.assert_array_equal(np.asarray(spike_samples(times, dt)), k)
        mixed = np.r_[computed, 1000.01]
        np.testing.assert_array_equal(spike_samples(mixed, dt)[:-1], k)
        rec = Recording(dt, np.zeros(4000), np.zeros(4000)).with_spike_times(computed[computed < 100])
        assert np.flatnonzero(np.asarray(rec.spike_train())).tolist() == k[computed < 100].tolist()
