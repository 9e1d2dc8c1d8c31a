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


def test_recurrent_operator_gives_both_conductances_in_one_product():
    """The ``(n, 2n)`` operator: E synapses in the first n columns, I ones in the last n, same CSR order;
    its conductances and their gradients (spikes and magnitudes) equal the two products of the magnitudes,
    with one spike row-dot instead of two."""
    net = _float64(learn.EINetwork(5, 40, 2, key=jax.random.key(0), sparse=True, connectivity=0.2))
    k_x, k_s, k_ct = jax.random.split(jax.random.key(1), 3)
    x = jax.random.uniform(k_x, (3, 5))
    spikes = (jax.random.uniform(k_s, (3, 40)) < 0.3).astype(jnp.float64)
    w_in, magnitudes = net.weights()
    operator = net.recurrent_operator()
    assert operator.shape == (40, 80) and jnp.array_equal(operator.data, magnitudes)
    dense, square = np.asarray(operator.to_dense()), np.asarray(net.w_rec.with_data(magnitudes).to_dense())
    assert np.array_equal(
        dense,
        np.concatenate([square * (np.arange(40) < 32)[:, None], square * (np.arange(40) >= 32)[:, None]], 1),
    )

    def two_products(s, m):
        return net.synaptic_input(x, s, (w_in, m))

    def one_product(s, m):
        return net.synaptic_input(x, s, (w_in, net.recurrent_operator(m)))

    (u_e, u_i), two_vjp = jax.vjp(two_products, spikes, magnitudes)
    (v_e, v_i), one_vjp = jax.vjp(one_product, spikes, magnitudes)
    assert jnp.allclose(u_e, v_e, rtol=1e-13) and jnp.allclose(u_i, v_i, rtol=1e-13) and jnp.any(u_i > 0)
    cotangent = tuple(jax.random.normal(k, u_e.shape, jnp.float64) for k in jax.random.split(k_ct))
    for a, b in zip(two_vjp(cotangent), one_vjp(cotangent), strict=True):
        assert jnp.allclose(a, b, rtol=1e-12, atol=1e-14)
    products = [
        e for e in jax.make_jaxpr(one_product)(spikes, magnitudes).eqns if e.primitive.name == "csr_spmv"
    ]
    assert len(products) == 1
    state = net.init_state(3)._replace(spikes=spikes)
    by_default, given = net.step(state, x), net.step(state, x, (w_in, operator))
    assert all(
        jnp.allclose(a, b, rtol=1e-13)
        for a, b in zip(jax.tree.leaves(by_default), jax.tree.leaves(given), strict=True)
    )

    with pytest.raises(
        ValueError, match=r"`weights\[1\]` as an ops.CSR must be the network's `recurrent_operator`"
    ):
        net.synaptic_input(x, spikes, (w_in, net.w_rec))
    with pytest.raises(ValueError, match="`recurrent_operator` is for sparse networks"):
        learn.EINetwork(5, 40, 2, key=jax.random.key(0)).recurrent_operator()


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
