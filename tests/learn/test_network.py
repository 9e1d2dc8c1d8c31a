import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import learn, ops, zoo
from diffbrain.learn import analysis


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


def _float64(net):
    return jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, net)


def test_sparse_network_with_the_dense_pattern_equals_the_dense_network(cue_task):
    """`to_sparse` keeps every synapse of the mask in an `ops.CSR`: the same spikes, and the gradients of
    BPTT, D-RTRL and ES-D-RTRL equal to the dense ones at the mask, per synapse (`ops.CSR` layout)."""
    task = cue_task(n_cues=1, delay=5, recall=10, dtype="float64")
    dense = _float64(learn.EINetwork(task.n_inputs, 30, 2, key=jax.random.key(0), in_scale=0.1))
    sparse = dense.to_sparse()
    assert sparse.sparse and sparse.rec_mask is None and sparse.w_rec.nnz == 30 * 29
    batch = task.sample(jax.random.key(1), 4)

    def simulate(net):
        return jax.lax.scan(lambda s, x: net.step(s, x), net.init_state(4), batch.inputs)[1]

    (spikes, readout), (sparse_spikes, sparse_readout) = simulate(dense), simulate(sparse)
    assert jnp.mean(spikes) > 0.02  # recurrent spikes reach the operator
    assert jnp.array_equal(spikes, sparse_spikes) and jnp.allclose(readout, sparse_readout, rtol=1e-12)
    mask = dense.rec_mask > 0
    gradients = {
        "bptt": learn.bptt,
        "d-rtrl": lambda net, batch: learn.online(net, batch, algorithm="d-rtrl"),
        "es-d-rtrl": learn.online,  # its recurrent gradient is `recurrent_outer`, as the single trace's
    }
    for name, gradient in gradients.items():
        (_, reference), (_, grads) = jax.jit(gradient)(dense, batch), jax.jit(gradient)(sparse, batch)
        assert isinstance(grads.w_rec, ops.CSR) and grads.w_rec.indices is None, name
        assert grads.w_rec.data.shape == (sparse.w_rec.nnz,), name
        scale = jnp.max(jnp.abs(reference.w_rec))
        assert scale > 0, name
        assert jnp.allclose(grads.w_rec.data, reference.w_rec[mask], rtol=1e-9, atol=1e-12 * scale), name
        for field in ("w_in", "w_out", "b_out"):
            assert jnp.allclose(getattr(grads, field), getattr(reference, field), rtol=1e-9, atol=1e-15), name


def test_sparse_patterns_keep_dale_signs_and_the_requested_connectivity():
    net = learn.EINetwork(10, 100, 2, key=jax.random.key(0), sparse=True, connectivity=0.1)
    W = net.w_rec
    assert isinstance(W, ops.CSR) and net.rec_mask is None
    assert 0.08 * 100 * 99 < W.nnz < 0.12 * 100 * 99
    rows = np.repeat(np.arange(100), np.diff(np.asarray(W.indptr)))
    assert not np.any(rows == np.asarray(W.indices))  # no autapses
    signed = np.asarray(net.signed_weights())
    assert signed.shape == (W.nnz,)
    assert np.all(signed[rows < 80] > 0) and np.all(signed[rows >= 80] < 0)
    groups = analysis.weight_groups(net)
    assert groups["E"].size == np.sum(rows < 80) and groups["I"].size == np.sum(rows >= 80)
    # log-normal around the scales: E→all median 0.005, I→all 4x stronger
    assert np.median(groups["E"]) == pytest.approx(0.005, rel=0.15)
    assert np.median(groups["I"]) == pytest.approx(0.02, rel=0.3)

    pattern = ops.CSR.fixed_in_degree(jax.random.key(1), 100, 100, k=7, allow_self=False)
    net = learn.EINetwork(10, 100, 2, key=jax.random.key(0), connectivity=pattern)
    assert net.sparse and np.all(np.bincount(np.asarray(net.w_rec.indices), minlength=100) == 7)
    with pytest.raises(ValueError, match=r"`connectivity`.*\(n_rec, n_rec\) = \(50, 50\)"):
        learn.EINetwork(10, 50, 2, key=jax.random.key(0), connectivity=pattern)
