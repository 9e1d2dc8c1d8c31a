"""Decision tasks: periods per channel group, evidence, coherence, stimulus noise, targets, masks, labels."""

import math

import jax
import numpy as np
import pytest
from scipy.stats import norm

from diffbrain import tasks

N = 2000  # trials for the statistical checks (10 ms steps keep them cheap)


def groups(task, batch):
    """``[T, B, n_groups]`` spike probabilities per step (channels of a group are identical)."""
    x = np.asarray(batch.inputs).reshape(task.n_steps, batch.inputs.shape[1], task.n_groups, -1)
    assert np.all(x == x[..., :1])
    return x[..., 0]


def assert_fraction(values, p, n):
    assert abs(np.mean(values) - p) < 5 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("supervise_fixation", [True, False])
def test_decision_making_fixed_duration(supervise_fixation):
    task = tasks.PerceptualDecisionMaking(
        dt=10.0, sigma=0.0, encoding="rate", channels_per_group=1, supervise_fixation=supervise_fixation
    )
    batch = task.sample(jax.random.key(0), N)
    g, labels = groups(task, batch), np.asarray(batch.labels) - 1  # the answer without the fixation class
    decision, stimulus = task.window("decision"), task.window("stimulus")
    np.testing.assert_allclose(
        g[:, :, 0], np.broadcast_to(np.where(decision, 0.0, 0.4)[:, None], g.shape[:2])
    )
    assert not g[~stimulus, :, 1:].any()
    scale = 40.0 * 10.0 / 1000  # stimulus_rate · dt
    np.testing.assert_allclose(g[stimulus, :, 1:].sum(-1), scale, rtol=1e-6)
    signed = (g[stimulus, :, 2] - g[stimulus, :, 1]) / scale * (2 * labels - 1)  # coherence, ≥ 0
    assert np.all(signed == signed[:1])
    coherence = signed[0]
    for c in task.coherences:
        assert_fraction(np.isclose(coherence, c, atol=1e-6), 1 / len(task.coherences), N)
    assert_fraction(labels, 0.5, N)
    targets = np.asarray(batch.targets)
    np.testing.assert_array_equal(targets[decision], np.broadcast_to(labels + 1, targets[decision].shape))
    assert not targets[~decision].any()
    mask = np.asarray(batch.mask)
    np.testing.assert_array_equal(mask, np.broadcast_to((decision | supervise_fixation)[:, None], mask.shape))


def test_coherence_zero_does_not_tell_the_label():
    # The docstring's bound: at coherence 0 every trial gets the same input, whichever its label.
    task = tasks.PerceptualDecisionMaking(dt=10.0, sigma=0.0, coherences=(0.0,), encoding="rate")
    batch = task.sample(jax.random.key(6), 64)
    x = np.asarray(batch.inputs)
    assert np.all(x == x[:, :1])
    assert set(np.asarray(batch.labels).tolist()) == {1, 2}


def test_a_spike_count_observer_stays_below_the_coin_flip_ceiling():
    """The docstring's numbers: coherence-0 trials are coin flips (ceiling 0.9); counting each evidence
    group's Poisson spikes in the stimulus period scores about 0.90 at dt 10 ms."""
    n = 1200
    task = tasks.PerceptualDecisionMaking(dt=10.0)
    batch = task.sample(jax.random.key(7), n)
    spikes = np.asarray(batch.inputs).reshape(task.n_steps, n, task.n_groups, -1)
    counts = spikes[task.window("stimulus")].sum((0, 3))  # [B, groups]
    labels = np.asarray(batch.labels)
    right = np.where(counts[:, 2] == counts[:, 1], 0.5, np.where(counts[:, 2] > counts[:, 1], 2, 1) == labels)
    assert abs(right.mean() - 0.90) < 5 * math.sqrt(0.9 * 0.1 / n)
    assert right.mean() < 0.9 + 2 * math.sqrt(0.9 * 0.1 / n)


def test_reaction_time_variant():
    task = tasks.PerceptualDecisionMaking(
        dt=10.0,
        sigma=0.0,
        reaction_time=True,
        min_reaction_time=100.0,
        encoding="rate",
        channels_per_group=1,
        supervise_fixation=True,
    )
    batch = task.sample(jax.random.key(1), 8)
    g, labels = groups(task, batch), np.asarray(batch.labels) - 1  # the answer without the fixation class
    onset = task.periods["stimulus"].start
    fixation = task.window("fixation")
    np.testing.assert_allclose(
        g[:, :, 0], np.broadcast_to(np.where(fixation, 0.4, 0.0)[:, None], g.shape[:2])
    )
    decision = np.arange(task.n_steps) >= onset + 10  # 100 ms after stimulus onset, to the end
    targets, mask = np.asarray(batch.targets), np.asarray(batch.mask)
    np.testing.assert_array_equal(targets, np.where(decision[:, None], labels + 1, 0))
    np.testing.assert_array_equal(mask, np.broadcast_to((decision | fixation)[:, None], mask.shape))
    assert not mask[onset : onset + 10].any(), "free to decide during the first min_reaction_time"
    np.testing.assert_array_equal(task.response_window(), decision)
    assert task.periods["decision"] == slice(task.n_steps - 10, task.n_steps), "the trailing 100 ms"


@pytest.mark.parametrize("dt", [1.0, 4.0])
def test_stimulus_noise_scales_as_sigma_over_sqrt_dt(dt):
    sigma = 0.1
    task = tasks.PerceptualDecisionMaking(
        dt=dt, coherences=(0.0,), sigma=sigma, encoding="rate", channels_per_group=1
    )
    batch = task.sample(jax.random.key(2), 64)
    strength = groups(task, batch)[task.window("stimulus"), :, 1:] / (40.0 * dt / 1000)
    assert abs(strength.mean() - 0.5) < 0.01
    assert abs(strength.std() / (sigma / math.sqrt(dt)) - 1) < 0.03


def clipped_normal_mean(mean, sd):
    """``E[clip(X, 0, 1)]`` for ``X ~ N(mean, sd²)``."""
    a, b = -mean / sd, (1 - mean) / sd
    body = mean * (norm.cdf(b) - norm.cdf(a)) + sd * (norm.pdf(a) - norm.pdf(b))
    return body + norm.sf(b)


@pytest.mark.parametrize(("dt", "coherence"), [(1.0, 0.128), (1.0, 0.512), (0.25, 0.512), (10.0, 0.128)])
def test_clipped_stimulus_mean_difference_at_the_default_sigma(dt, coherence):
    # The clip to [0, 1] shrinks the mean right − left difference to that of two clipped normals:
    # 0.68·coherence at dt 1 ms, 0.38· at 0.25 ms, ≈ coherence only at dt 10 ms (the docstring's numbers).
    task = tasks.PerceptualDecisionMaking(
        dt=dt, coherences=(coherence,), encoding="rate", channels_per_group=1
    )
    assert task.sigma == 0.5
    batch = task.sample(jax.random.key(5), 64)
    strength = groups(task, batch)[task.window("stimulus"), :, 1:] / (40.0 * dt / 1000)
    difference = (strength[..., 1] - strength[..., 0]) * (2 * np.asarray(batch.labels) - 3)  # correct − other
    sd = task.sigma / math.sqrt(dt)
    expected = clipped_normal_mean(0.5 + coherence / 2, sd) - clipped_normal_mean(0.5 - coherence / 2, sd)
    assert abs(difference.mean() - expected) < 5 * difference.std() / math.sqrt(difference.size)
    factor = {1.0: 0.68, 0.25: 0.38, 10.0: 1.0}[dt]
    assert abs(expected / coherence - factor) < 0.025


@pytest.mark.parametrize("supervise_fixation", [True, False])
def test_delayed_match_to_sample(supervise_fixation):
    task = tasks.DelayedMatchToSample(
        dt=10.0, fixation_duration=100.0, sample_duration=200.0, delay_duration=300.0, test_duration=200.0,
        decision_duration=200.0, n_stimuli=4, encoding="rate", channels_per_group=1,
        supervise_fixation=supervise_fixation,
    )  # fmt: skip
    batch = task.sample(jax.random.key(3), N)
    g, labels = groups(task, batch), np.asarray(batch.labels) - 1  # the answer without the fixation class
    decision, sample_on, test_on = task.window("decision"), task.window("sample"), task.window("test")
    np.testing.assert_allclose(
        g[:, :, 0], np.broadcast_to(np.where(decision, 0.0, 0.4)[:, None], g.shape[:2])
    )
    stimuli = g[:, :, 1:]
    assert not stimuli[~(sample_on | test_on)].any()
    assert np.all((stimuli[sample_on | test_on] > 0).sum(-1) == 1), "one stimulus at a time"
    np.testing.assert_allclose(stimuli[sample_on | test_on].max(-1), 0.4, rtol=1e-6)
    sample = stimuli[sample_on].argmax(-1)
    test = stimuli[test_on].argmax(-1)
    assert np.all(sample == sample[:1]) and np.all(test == test[:1])
    sample, test = sample[0], test[0]
    np.testing.assert_array_equal(labels, (sample != test).astype(np.int32))
    assert_fraction(labels, 0.5, N)
    for stimulus in range(4):
        assert_fraction(sample == stimulus, 0.25, N)
    shift = ((test - sample) % 4)[labels == 1]
    for s in (1, 2, 3):
        assert_fraction(shift == s, 1 / 3, shift.size)
    targets = np.asarray(batch.targets)
    np.testing.assert_array_equal(targets, np.where(decision[:, None], labels + 1, 0))
    mask = np.asarray(batch.mask)
    np.testing.assert_array_equal(mask, np.broadcast_to((decision | supervise_fixation)[:, None], mask.shape))


@pytest.mark.parametrize("supervise_fixation", [True, False])
def test_context_decision_making(supervise_fixation):
    task = tasks.ContextDecisionMaking(
        dt=10.0, sigma=0.0, encoding="rate", channels_per_group=1, supervise_fixation=supervise_fixation
    )
    batch = task.sample(jax.random.key(4), N)
    g, labels = groups(task, batch), np.asarray(batch.labels) - 1  # the answer without the fixation class
    decision, stimulus = task.window("decision"), task.window("stimulus")
    np.testing.assert_allclose(
        g[:, :, 0], np.broadcast_to(np.where(decision, 0.0, 0.4)[:, None], g.shape[:2])
    )
    context = g[:, :, 1:3]  # on for the whole trial
    np.testing.assert_allclose(context.sum(-1), 0.4, rtol=1e-6)
    color_context = context[0, :, 1] > 0
    assert np.all((context[:, :, 1] > 0) == color_context)
    assert_fraction(color_context, 0.5, N)
    evidence = g[:, :, 3:]
    assert not evidence[~stimulus].any()
    motion_right = evidence[stimulus, :, 1] > evidence[stimulus, :, 0]
    color_right = evidence[stimulus, :, 3] > evidence[stimulus, :, 2]
    assert np.all(motion_right == motion_right[:1]) and np.all(color_right == color_right[:1])
    motion_right, color_right = motion_right[0], color_right[0]
    np.testing.assert_array_equal(labels, np.where(color_context, color_right, motion_right))
    irrelevant = np.where(color_context, motion_right, color_right)
    assert_fraction(labels == irrelevant, 0.5, N)
    which = []  # [modality][B]: the index of each trial's coherence in `coherences`
    for modality in (slice(0, 2), slice(2, 4)):
        strength = evidence[stimulus][0][:, modality] / 0.4
        coherence = np.abs(strength[:, 1] - strength[:, 0])
        hits = np.isclose(coherence[:, None], task.coherences, atol=1e-6)
        assert np.all(hits.sum(axis=1) == 1)
        which.append(hits.argmax(axis=1))
    # Drawn independently and uniformly: each of the 3 × 3 (motion, colour) coherence pairs 1/9 of the time.
    n = len(task.coherences)
    for i in range(n):
        for j in range(n):
            assert_fraction((which[0] == i) & (which[1] == j), 1 / n**2, N)
    targets = np.asarray(batch.targets)
    np.testing.assert_array_equal(targets, np.where(decision[:, None], labels + 1, 0))
    mask = np.asarray(batch.mask)
    np.testing.assert_array_equal(mask, np.broadcast_to((decision | supervise_fixation)[:, None], mask.shape))
