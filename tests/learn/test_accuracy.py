"""The accuracy evidence: the readout summed over each trial's response steps, for every task of `tasks`.

With ``supervise_fixation=True`` a task's mask also covers the pre-decision steps (target 0, fixate). They
belong to the loss, not to the answer: summing the readout over them outvotes the decision steps and scores
a perfect network 0 (PDM 40:10, DMS 80:20, CDM 90:10 masked steps below).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import learn, tasks
from diffbrain.learn.bptt import bptt_with_evidence
from diffbrain.learn.loss import SimpleBatch, accuracy
from diffbrain.learn.online import online_with_evidence
from diffbrain.reproduce import held_out_accuracy

SHORT = dict(dt=10.0, channels_per_group=1, encoding="rate")
SHORT_DMS = dict(fixation_duration=100.0, sample_duration=200.0, delay_duration=300.0)
SHORT_DMS |= dict(test_duration=200.0, decision_duration=200.0)
TASKS = {
    "decision_making": lambda: tasks.PerceptualDecisionMaking(
        stimulus_duration=300.0, supervise_fixation=True, **SHORT
    ),
    "decision_making_rt": lambda: tasks.PerceptualDecisionMaking(
        stimulus_duration=300.0, reaction_time=True, min_reaction_time=100.0, supervise_fixation=True, **SHORT
    ),
    "delayed_match": lambda: tasks.DelayedMatchToSample(**SHORT_DMS, supervise_fixation=True, **SHORT),
    "context_decision": lambda: tasks.ContextDecisionMaking(
        stimulus_duration=300.0, supervise_fixation=True, **SHORT
    ),
    "evidence_accumulation": lambda: tasks.EvidenceAccumulation(delay_duration=0.0, **SHORT),
}


class Oracle(learn.EINetwork):
    """A network whose readout is 10 × its input: given the one-hot target as input, a perfect network."""

    def step(self, state, x, weights=None):
        state, (spikes, _) = super().step(state, x, weights)
        return state, (spikes, 10.0 * x)


@pytest.mark.parametrize("name", list(TASKS))
def test_a_perfect_readout_scores_accuracy_one(name):
    task = TASKS[name]()
    batch = task.sample(jax.random.key(0), 8)
    n = task.n_outputs
    perfect = SimpleBatch(jax.nn.one_hot(batch.targets, n), batch.targets, batch.mask, batch.labels)
    assert name.startswith("evidence") or int(batch.mask.sum()) > int(batch.mask[-1].sum()), "fixation masked"
    net = Oracle(n, 4, n, key=jax.random.key(1), dt=task.dt)
    _, evidence, _ = bptt_with_evidence(net, perfect)
    assert float(accuracy(evidence, batch.labels)) == 1.0
    assert float(held_out_accuracy(net, perfect)) == 1.0  # `diffbrain reproduce`'s forward-only score


def test_evidence_is_the_readout_summed_over_the_response_steps():
    # Against the network's own readouts, stepped here: bptt and the online rule accumulate the same sum.
    task = TASKS["context_decision"]()
    batch = task.sample(jax.random.key(2), 4)
    net = learn.EINetwork(task.n_inputs, 12, task.n_outputs, key=jax.random.key(3), dt=task.dt, in_scale=0.3)
    _, (_, readouts) = jax.lax.scan(lambda s, x: net.step(s, x), net.init_state(4), batch.inputs)
    respond = np.asarray(batch.mask & (batch.targets == batch.labels))
    expected = np.where(respond[..., None], np.asarray(readouts), 0.0).sum(0)
    assert np.abs(expected).max() > 0
    _, evidence, _ = bptt_with_evidence(net, batch)
    np.testing.assert_allclose(evidence, expected, rtol=1e-4, atol=1e-5)
    _, evidence, _ = online_with_evidence(net, batch)
    np.testing.assert_allclose(evidence, expected, rtol=1e-4, atol=1e-5)
    assert jnp.shape(evidence) == (4, task.n_outputs)
