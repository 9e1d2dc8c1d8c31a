"""Evidence accumulation: timing per channel group, labels, cue statistics, Poisson rates, recall mask."""

import math

import jax
import numpy as np
import pytest

from diffbrain import tasks


def cue_sides(batch, task):
    """``[B, n_cues]`` bool, True where the cue is on the right, read off rate-encoded inputs."""
    n = task.channels_per_group
    sides = []
    for i in range(task.n_cues):
        middle = (task.periods[f"cue{i}"].start + task.periods[f"cue{i}"].stop) // 2
        left, right = np.asarray(batch.inputs[middle, :, 0] > 0), np.asarray(batch.inputs[middle, :, n] > 0)
        assert np.all(left ^ right), "each cue drives exactly one side"
        sides.append(right)
    return np.stack(sides, axis=1)


def test_default_protocol_is_the_papers():
    task = tasks.EvidenceAccumulation()
    assert (task.n_steps, task.n_inputs, task.n_outputs) == (2200, 100, 2)
    assert tasks.EvidenceAccumulation(dt=0.5).n_steps == 4400
    assert tasks.EvidenceAccumulation.shortened().n_steps == 1400


@pytest.mark.parametrize("dt", [1.0, 2.0])
def test_trial_timing_per_channel_group(dt):
    task = tasks.EvidenceAccumulation.shortened(dt=dt, encoding="rate")
    batch = task.sample(jax.random.key(0), 4)
    x = np.asarray(batch.inputs).reshape(task.n_steps, 4, 4, task.channels_per_group)
    assert np.all(x == x[..., :1]), "channels of a group share their rate"
    left, right, recall, noise = (x[..., g, 0] for g in range(4))
    step = np.arange(task.n_steps)[:, None] * dt  # ms at the start of each step
    in_cue = ((step % 150) >= 50) & (step < 7 * 150)

    def expected(on, rate):
        return np.broadcast_to(np.where(on, rate * dt / 1000, 0.0), left.shape)

    np.testing.assert_allclose(left + right, expected(in_cue, 40.0), rtol=1e-6)
    assert not np.any((left > 0) & (right > 0))
    in_recall = step >= 1400 - 150
    np.testing.assert_allclose(recall, expected(in_recall, 40.0), rtol=1e-6)
    np.testing.assert_allclose(noise, expected(True, 10.0), rtol=1e-6)
    # Each cue holds one side for its whole 100 ms.
    for i in range(7):
        window = task.periods[f"cue{i}"]
        assert window == slice(round((150 * i + 50) / dt), round(150 * (i + 1) / dt))
        assert np.all((right[window] > 0) == (right[window][:1] > 0))


def test_recall_mask_and_targets():
    task = tasks.EvidenceAccumulation.shortened(encoding="rate")
    batch = task.sample(jax.random.key(0), 4)
    recall = np.arange(task.n_steps) >= task.n_steps - 150
    np.testing.assert_array_equal(np.asarray(batch.mask), np.broadcast_to(recall[:, None], (task.n_steps, 4)))
    np.testing.assert_array_equal(np.asarray(batch.targets), np.broadcast_to(batch.labels, (task.n_steps, 4)))


def test_labels_are_the_majority_side_and_cue_statistics_are_03_07():
    # Tiny trials (one channel per group, 10 ms steps, no delay) so that 20,000 of them are cheap.
    task = tasks.EvidenceAccumulation(dt=10.0, delay_duration=0.0, channels_per_group=1, encoding="rate")
    n = 20_000
    batch = task.sample(jax.random.key(3), n)
    right = cue_sides(batch, task)
    k = right.sum(axis=1)
    np.testing.assert_array_equal(np.asarray(batch.labels), (k > 3).astype(np.int32))
    assert abs(float(batch.labels.mean()) - 0.5) < 5 * math.sqrt(0.25 / n)
    # Right-cue counts follow ½·Bin(7, 0.7) + ½·Bin(7, 0.3): the trial's side 50/50, each cue 0.7 / 0.3.
    pmf = np.array(
        [0.5 * math.comb(7, j) * (0.7**j * 0.3 ** (7 - j) + 0.3**j * 0.7 ** (7 - j)) for j in range(8)]
    )
    freq = np.bincount(k, minlength=8) / n
    assert np.all(np.abs(freq - pmf) < 5 * np.sqrt(pmf * (1 - pmf) / n))
    # The cue probability itself, from the spread of the counts: E(k − 3.5)² = 1.75 + 42 (p − ½)².
    p = 0.5 + math.sqrt((np.mean((k - 3.5) ** 2) - 1.75) / 42)
    assert abs(p - 0.7) < 0.01


def test_poisson_rates_match_the_configured_rates():
    task = tasks.EvidenceAccumulation.shortened()
    batch = task.sample(jax.random.key(4), 4)
    x = np.asarray(batch.inputs).reshape(task.n_steps, 4, 4, task.channels_per_group)
    rate_task = tasks.EvidenceAccumulation.shortened(encoding="rate")
    rates = np.asarray(rate_task.sample(jax.random.key(4), 4).inputs).reshape(x.shape)
    for group, configured in [(0, 40.0), (1, 40.0), (2, 40.0), (3, 10.0)]:
        on = rates[:, :, group] > 0
        spikes, p = x[:, :, group][on], configured / 1000.0
        assert not x[:, :, group][~on].any()
        sd = math.sqrt(p * (1 - p) / spikes.size)
        message = f"group {group}: {spikes.mean() * 1000:.1f} Hz, configured {configured} Hz"
        assert abs(spikes.mean() - p) < 5 * sd, message
