"""Evidence accumulation, the issue's working-memory benchmark, in a form CI can train in seconds."""

import jax
import optax
import pytest

from diffbrain import learn, tasks


def shortened_task():
    """The protocol at dt = 10 ms with 3 cues and a 100 ms delay: 70 steps instead of 2,200."""
    return tasks.EvidenceAccumulation(dt=10.0, n_cues=3, delay_duration=100.0)


@pytest.mark.parametrize("method", ["bptt", "d-rtrl"])
def test_shortened_evidence_accumulation_is_learned_well_above_chance(method):
    task = shortened_task()
    net = learn.EINetwork(task.n_inputs, 50, task.n_outputs, key=jax.random.key(0), dt=task.dt)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    result = learn.train(
        net, task, method, optimizer, steps=100, batch_size=8, key=jax.random.key(100), progress=False
    )
    accuracy = result.metrics["accuracy"]
    print(method, "accuracy per 20 steps:", accuracy.reshape(-1, 20).mean(axis=1))
    assert accuracy[:10].mean() < 0.7
    assert accuracy[-20:].mean() >= 0.85, accuracy
