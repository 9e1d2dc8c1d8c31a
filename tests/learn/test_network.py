import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from diffbrain import learn, zoo


@pytest.mark.parametrize("neuron", [None, zoo.GIF(), zoo.LIF()], ids=["alif", "gif", "lif"])
def test_step_shapes_and_activity(neuron, cue_task):
    task = cue_task()
    net = learn.EINetwork(task.n_inputs, 40, 2, key=jax.random.key(0), neuron=neuron, in_scale=0.1)
    batch = task.sample(jax.random.key(1), 4)
    _, (spikes, readout) = jax.lax.scan(lambda s, x: net.step(s, x), net.init_state(4), batch.inputs)
    assert spikes.shape == (task.n_steps, 4, 40) and readout.shape == (task.n_steps, 4, 2)
    assert jnp.all(jnp.isfinite(readout))
    assert set(jnp.unique(spikes).tolist()) <= {0.0, 1.0}


def test_dale_signs_fixed_by_presynaptic_type():
    net = learn.EINetwork(10, 50, 2, key=jax.random.key(0))
    assert net.n_exc == 40
    w_in, w_rec = net.weights()
    assert jnp.all(w_in > 0) and jnp.all(w_rec >= 0)
    signed = net.signed_weights()
    assert jnp.all(signed[:40] >= 0) and jnp.all(signed[40:] <= 0)
    assert jnp.all(jnp.diag(w_rec) == 0)  # no autapses


def test_reversal_potentials_set_the_sign_of_the_drive():
    net = learn.EINetwork(1, 2, 1, key=jax.random.key(0), exc_fraction=0.5)
    state = net.init_state(1)
    u = jnp.ones((1, 2))
    hidden, _ = net.cell(state.hidden, u, 0 * u)
    assert jnp.all(hidden[0] > state.hidden[0])  # excitation depolarises from rest
    hidden, _ = net.cell(state.hidden, 0 * u, u)
    assert jnp.all(hidden[0] < state.hidden[0])  # E_inh = -80 mV is below rest (-70 mV)


def test_default_neurons_carry_a_cue_across_a_silent_delay_in_the_gradient():
    """The slow adaptation holds a cue through 300 ms of silence, and the gradient follows that path:
    the recall-window loss depends on the cue's input weights. Measured: cue/recall gradient-norm ratio
    0.028; with a detached spike gate (the zoo default) 6e-8, the membrane's e^{-300/20} alone."""
    net = learn.EINetwork(2, 20, 2, key=jax.random.key(0), in_scale=0.3)
    net = eqx.tree_at(lambda n: n.rec_mask, net, jnp.zeros_like(net.rec_mask))  # no recurrence
    slow = net.neuron.tau_a > 1000.0
    assert slow.sum() == 10 and jnp.all(net.neuron.beta[slow] < net.neuron.beta[~slow])
    steps, batch_size = 450, 4
    t = jnp.arange(steps)
    cue, recall = t < 50, t >= 400
    rate = jnp.stack([jnp.where(cue, 0.5, 0.0), jnp.where(recall, 0.5, 0.0)], axis=-1)
    inputs = (jax.random.uniform(jax.random.key(1), (steps, batch_size, 2)) < rate[:, None]).astype(
        jnp.float32
    )
    mask = jnp.broadcast_to(recall[:, None], (steps, batch_size))
    batch = learn.SimpleBatch(
        inputs, jnp.zeros((steps, batch_size), jnp.int32), mask, jnp.zeros(batch_size, jnp.int32)
    )
    _, grads = learn.bptt(net, batch)
    cue_gradient, recall_gradient = (jnp.linalg.norm(grads.w_in[k]) for k in (0, 1))
    assert cue_gradient > 1e-3 * recall_gradient, (cue_gradient, recall_gradient)
