"""Trial structure against NeuroGym's versions of the same tasks (skipped when neurogym cannot import).

For each of our trials NeuroGym builds the trial with the same variables (side, coherence, sample, context)
and noise off; its observations must equal our rate-encoded inputs divided by the group's spike
probability per step, and its ground truth our targets. Known, documented difference: our fixation input
stays on until the decision period, NeuroGym's decision-making tasks show it during fixation only, so the
fixation channel is compared in the fixation and decision periods.
"""

import warnings

import jax
import numpy as np
import pytest

from diffbrain import tasks

ngym = pytest.importorskip("neurogym")

DT = 10  # ms; NeuroGym takes an integer dt
SCALE = 40.0 * DT / 1000  # spike probability per step of a group at 40 Hz
pytestmark = pytest.mark.filterwarnings("ignore")


def make(name, task, **kwargs):
    timing = {period: getattr(task, field) for period, field in task.period_fields}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ngym.make(name, dt=DT, sigma=0.0, timing=timing, **kwargs).unwrapped


def ours(task, n=16):
    batch = task.sample(jax.random.key(0), n)
    x = np.asarray(batch.inputs).reshape(task.n_steps, n, task.n_groups) / SCALE
    return x, np.asarray(batch.targets), np.asarray(batch.labels)


def test_perceptual_decision_making_matches_neurogym():
    task = tasks.PerceptualDecisionMaking(dt=DT, sigma=0.0, encoding="rate", channels_per_group=1)
    env = make("PerceptualDecisionMaking-v0", task)
    x, targets, labels = ours(task)
    for b in range(len(labels)):
        coherence = abs(x[:, b, 2] - x[:, b, 1]).max()
        env.new_trial(ground_truth=int(labels[b]) - 1, coh=100 * coherence)  # NeuroGym's choices: 0, 1
        assert env.ob.shape == (task.n_steps, 3)
        np.testing.assert_allclose(env.ob[:, 1:], x[:, b, 1:], atol=1e-5)
        np.testing.assert_array_equal(env.gt, targets[:, b])
        shown_by_both = task.window("fixation", "decision")
        np.testing.assert_allclose(env.ob[shown_by_both, 0], x[shown_by_both, b, 0], atol=1e-5)


def test_delayed_match_to_sample_matches_neurogym():
    task = tasks.DelayedMatchToSample(dt=DT, encoding="rate", channels_per_group=1)
    env = make("DelayMatchSample-v0", task)
    x, targets, labels = ours(task)
    for b in range(len(labels)):
        sample = int(x[task.window("sample"), b, 1:].argmax(-1)[0])
        env.new_trial(ground_truth=int(labels[b]), sample_theta=env.theta[sample])
        np.testing.assert_allclose(env.ob, x[:, b], atol=1e-5)
        np.testing.assert_array_equal(env.gt, targets[:, b])


def test_context_decision_making_matches_neurogym():
    task = tasks.ContextDecisionMaking(dt=DT, sigma=0.0, encoding="rate", channels_per_group=1)
    env = make("ContextDecisionMaking-v0", task, use_expl_context=True)
    x, targets, labels = ours(task)
    stimulus = task.window("stimulus")
    for b in range(len(labels)):
        color = int(x[0, b, 2] > 0)
        motion, colour = x[stimulus, b, 3:5][0], x[stimulus, b, 5:7][0]
        sides = [int(motion[1] > motion[0]), int(colour[1] > colour[0])]
        env.new_trial(
            ground_truth=sides[color] + 1,
            other_choice=sides[1 - color] + 1,
            context=color,
            coh_1=100 * abs(motion[1] - motion[0]),
            coh_2=100 * abs(colour[1] - colour[0]),
        )
        np.testing.assert_allclose(env.ob[:, 1:5], x[:, b, 3:7], atol=1e-5)  # stimuli
        np.testing.assert_allclose(env.ob[:, 5:7], x[:, b, 1:3], atol=1e-5)  # context cues
        np.testing.assert_array_equal(env.gt, targets[:, b])
        shown_by_both = task.window("fixation", "decision")
        np.testing.assert_allclose(env.ob[shown_by_both, 0], x[shown_by_both, b, 0], atol=1e-5)
