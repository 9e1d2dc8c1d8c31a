"""A float32 dt is the decimal it was written as, for the network as for the tasks (review s22)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import learn, tasks

SHORT = dict(n_cues=1, cue_duration=1.0, gap_duration=1.0, delay_duration=1.0, recall_duration=1.0)


@pytest.mark.parametrize("dt", [np.float32(0.1), jnp.float32(0.1), np.float16(0.5), 0.1, 2])
def test_einetwork_takes_a_float32_dt_as_its_shortest_decimal(dt):
    net = learn.EINetwork(2, 4, 2, key=jax.random.key(0), dt=dt)
    assert net.dt == float(str(np.asarray(dt)[()])) and type(net.dt) is float


@pytest.mark.parametrize(("task_dt", "net_dt"), [(np.float32(0.1), 0.1), (0.1, np.float32(0.1))])
def test_train_accepts_a_float32_dt_on_either_side(task_dt, net_dt):
    """learn.train refused "wrong speed": 0.10000000149011612 ms against 0.1 ms."""
    task = tasks.EvidenceAccumulation(dt=task_dt, channels_per_group=1, **SHORT)
    net = learn.EINetwork(task.n_inputs, 4, task.n_outputs, key=jax.random.key(0), dt=net_dt)
    assert task.dt == net.dt == 0.1
    learn.train(net, task, steps=1, batch_size=1, key=jax.random.key(1), progress=False)
