"""Trial structure against NeuroGym's versions of the same tasks, from stored NeuroGym trials.

`data/neurogym_trials.npz` holds NeuroGym's observations ``ob`` and ground truth ``gt`` for three noiseless
trials per task (dt 10 ms, our default timing), written by `data/make_neurogym_fixtures.py` (rerun there;
NeuroGym 2.3.1). For each stored trial we find one of ours with the same trial variables (side, coherence,
sample, context) in a batch and compare: NeuroGym's observations must equal our rate-encoded inputs divided
by the group's spike probability per step, its ground truth our targets.

Known, documented differences: our fixation input stays on until the decision period, NeuroGym's
decision-making tasks (PDM, CDM) show it during fixation only, so there the fixation channel is compared in
the fixation and decision periods.
"""

from pathlib import Path

import jax
import numpy as np

from diffbrain import tasks

DT = 10.0
SCALE = 40.0 * DT / 1000  # spike probability per step of a group at 40 Hz
STORED = np.load(Path(__file__).parent / "data" / "neurogym_trials.npz")


def ours(task, n=512):
    """Rate-encoded inputs in units of the group rate ``[T, n, groups]``, targets ``[T, n]``, labels."""
    batch = task.sample(jax.random.key(0), n)
    x = np.asarray(batch.inputs).reshape(task.n_steps, n, task.n_groups) / SCALE
    return x, np.asarray(batch.targets), np.asarray(batch.labels)


def stored(prefix, task):
    """The stored trials of one task, after checking that they were built with the task's timing."""
    timing = {period: getattr(task, field) for period, field in task.period_fields}
    assert dict(zip(STORED[f"{prefix}_periods"], STORED[f"{prefix}_durations"], strict=True)) == timing
    trials = len(STORED[f"{prefix}_ob"])
    variables = [k.removeprefix(f"{prefix}_") for k in STORED.files if k.startswith(f"{prefix}_")]
    variables = [v for v in variables if v not in ("ob", "gt", "periods", "durations")]
    return [
        (
            STORED[f"{prefix}_ob"][i],
            STORED[f"{prefix}_gt"][i],
            {v: STORED[f"{prefix}_{v}"][i] for v in variables},
        )
        for i in range(trials)
    ]


def first(matches):
    found = np.flatnonzero(matches)
    assert found.size, "no trial of ours with the stored trial's variables; sample more"
    return found[0]


def test_perceptual_decision_making_matches_neurogym():
    task = tasks.PerceptualDecisionMaking(dt=DT, sigma=0.0, encoding="rate", channels_per_group=1)
    x, targets, labels = ours(task)
    coherence = 100 * np.abs(x[:, :, 2] - x[:, :, 1]).max(0)  # %
    shown_by_both = task.window("fixation", "decision")
    for ob, gt, trial in stored("pdm", task):
        b = first((labels == trial["ground_truth"] + 1) & np.isclose(coherence, trial["coh"], atol=1e-3))
        assert ob.shape == (task.n_steps, 3)
        np.testing.assert_allclose(ob[:, 1:], x[:, b, 1:], atol=1e-6)
        np.testing.assert_allclose(ob[shown_by_both, 0], x[shown_by_both, b, 0], atol=1e-6)
        np.testing.assert_array_equal(gt, targets[:, b])


def test_delayed_match_to_sample_matches_neurogym():
    task = tasks.DelayedMatchToSample(dt=DT, encoding="rate", channels_per_group=1)
    x, targets, labels = ours(task)
    sample = x[task.window("sample"), :, 1:].argmax(-1)[0]
    for ob, gt, trial in stored("dms", task):
        b = first((labels == trial["ground_truth"]) & (sample == trial["sample"]))
        np.testing.assert_allclose(ob, x[:, b], atol=1e-6)
        np.testing.assert_array_equal(gt, targets[:, b])


def test_context_decision_making_matches_neurogym():
    task = tasks.ContextDecisionMaking(dt=DT, sigma=0.0, encoding="rate", channels_per_group=1)
    x, targets, labels = ours(task)
    stimulus = task.window("stimulus")
    color = (x[0, :, 2] > 0).astype(int)  # NeuroGym's context: 0 motion (modality 1), 1 colour
    evidence = x[stimulus][0, :, 3:7]  # motion left, right, colour left, right
    choice = 1 + (evidence[:, [1, 3]] > evidence[:, [0, 2]])  # [B, modality], NeuroGym's choices 1, 2
    coherence = 100 * np.abs(evidence[:, [1, 3]] - evidence[:, [0, 2]])
    other = np.where(color == 1, choice[:, 0], choice[:, 1])
    shown_by_both = task.window("fixation", "decision")
    for ob, gt, trial in stored("cdm", task):
        b = first(
            (color == trial["context"])
            & (labels == trial["ground_truth"])
            & (other == trial["other_choice"])
            & np.isclose(coherence[:, 0], trial["coh_1"], atol=1e-3)
            & np.isclose(coherence[:, 1], trial["coh_2"], atol=1e-3)
        )
        np.testing.assert_allclose(ob[:, 1:5], x[:, b, 3:7], atol=1e-6)  # stimuli
        np.testing.assert_allclose(ob[:, 5:7], x[:, b, 1:3], atol=1e-6)  # context cues, the whole trial
        np.testing.assert_allclose(ob[shown_by_both, 0], x[shown_by_both, b, 0], atol=1e-6)
        np.testing.assert_array_equal(gt, targets[:, b])
