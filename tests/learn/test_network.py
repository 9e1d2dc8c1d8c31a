import operator

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


_SUBTHRESHOLD = {  # thresholds far above E_exc = 0 mV, so a strong conductance cannot make them spike
    "alif": zoo.ALIF(V_th=100.0),
    "gif": zoo.GIF(V_th_inf=100.0),
    "interpolated_gif": zoo.InterpolatedGIF(V_th_inf=100.0),
    "lif": zoo.LIF(V_th=100.0),
}


def _held_conductances(net, g_e, g_i, n_steps):
    """Membrane potentials [n_steps] of neuron 0 under conductances held at ``g_e``, ``g_i`` (units of
    g_L): the increment ``g·(1 − e^{−dt/τ_syn})`` keeps them constant, and each step sees them from its
    start."""
    keep = 1 - net.conductance_decay()
    hidden = net.init_state(1).hidden
    hidden = (*hidden[:-3], jnp.full((1, net.n_rec), g_e), jnp.full((1, net.n_rec), g_i), hidden[-1])
    u_e, u_i = (jnp.full((1, net.n_rec), g * keep) for g in (g_e, g_i))

    def step(hidden, _):
        hidden, spikes = net.cell(hidden, u_e, u_i)
        return hidden, (hidden[0][0, 0], spikes)

    _, (V, spikes) = jax.lax.scan(step, hidden, None, length=n_steps)
    assert not jnp.any(spikes)
    return V


@pytest.mark.parametrize("neuron", _SUBTHRESHOLD.values(), ids=_SUBTHRESHOLD.keys())
@pytest.mark.parametrize(("g_e", "g_i"), [(50.0, 0.0), (0.0, 50.0), (30.0, 20.0), (0.3, 0.1)])
def test_a_held_conductance_relaxes_the_membrane_exactly_at_any_strength(neuron, g_e, g_i):
    """Subthreshold, at dt = 10 ms (τ = 20 ms), V follows ``V∞ + (V_rest − V∞) e^{−k·dt·g_tot/τ}`` with
    ``g_tot = 1 + g_e + g_i`` and ``V∞ = (V_rest + g_e E_exc + g_i E_inh)/g_tot`` to rounding, and stays
    bounded. The explicit drive used before (``g (E − V)`` at the step's start, as a constant current)
    multiplied ``V − V∞`` by ``1 − (1 − e^{−1/2})·51 = −19`` per step at g_tot = 51: V ran to ±1e37."""
    net = learn.EINetwork(1, 2, 1, key=jax.random.key(0), dt=10.0, neuron=neuron, exc_fraction=0.5)
    V = _held_conductances(net, g_e, g_i, n_steps=40)
    V_rest, tau = (float(jnp.ravel(x)[0]) for x in (neuron.V_rest, neuron.tau))
    g_tot = 1 + g_e + g_i
    V_inf = (V_rest + g_e * net.E_exc + g_i * net.E_inh) / g_tot
    k = np.arange(1, 41)
    exact = V_inf + (V_rest - V_inf) * np.exp(-k * net.dt * g_tot / tau)
    np.testing.assert_allclose(V, exact, rtol=1e-12, atol=1e-11)
    assert jnp.all((V >= net.E_inh) & (V <= net.E_exc))


def test_at_small_steps_the_exact_membrane_step_is_the_explicit_one_to_first_order():
    """For g·dt/τ ≪ 1 the exact step and the explicit one (drive ``g_e (E_exc − V)`` held as a current)
    differ by a fraction ``dt (g_tot − 1)/(2τ)`` of the step's change in V: ten times less per tenfold
    smaller dt."""
    g_e, g_i = 2.0, 1.0
    neuron = _SUBTHRESHOLD["alif"]
    differences = []
    for dt in (0.1, 0.01):
        net = learn.EINetwork(1, 2, 1, key=jax.random.key(0), dt=dt, neuron=neuron, exc_fraction=0.5)
        V0 = float(neuron.V_rest)
        change = float(_held_conductances(net, g_e, g_i, n_steps=1)[0]) - V0
        explicit = -np.expm1(-dt / 20.0) * (g_e * (net.E_exc - V0) + g_i * (net.E_inh - V0))
        differences.append(abs(change / explicit - 1))
        np.testing.assert_allclose(differences[-1], dt * (g_e + g_i) / 40.0, rtol=0.02)
    np.testing.assert_allclose(differences[0] / differences[1], 10.0, rtol=0.02)


def test_strong_input_at_a_coarse_step_keeps_training_finite():
    """The failure the exact membrane step fixes, directly: at dt = 10 ms, input weights ~10 g_L and
    every input channel firing every step hold g_e ≈ 80 g_L. The membrane stays within 100 mV of 0 and
    BPTT's and ES-D-RTRL's gradients are finite (with the explicit drive, V reached
    ±1e37 and the gradients were NaN, as `diffbrain train --dt 10` met after 800 steps of training)."""
    net = learn.EINetwork(5, 10, 2, key=jax.random.key(0), dt=10.0, in_scale=10.0)
    steps, batch_size = 30, 2
    inputs = jnp.ones((steps, batch_size, 5))
    mask = jnp.ones((steps, batch_size), bool)
    labels = jnp.zeros((steps, batch_size), jnp.int32)
    batch = learn.SimpleBatch(inputs, labels, mask, labels[0])

    def step(state, x):
        state, _ = net.step(state, x)
        return state, state.hidden[0]

    _, V = jax.lax.scan(step, net.init_state(batch_size), inputs)
    assert float(jnp.max(jnp.abs(V))) < 100.0, float(jnp.max(jnp.abs(V)))  # mV
    for gradient in (learn.bptt, lambda n, b: learn.online(n, b, algorithm="es-d-rtrl")):
        loss, grads = gradient(net, batch)
        leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
        assert jnp.isfinite(loss) and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)


def test_a_neuron_whose_membrane_the_cell_cannot_integrate_is_refused():
    with pytest.raises(ValueError, match=r"`neuron` must be a zoo\.ALIF, zoo\.GIF, .* got AdEx"):
        learn.EINetwork(2, 4, 2, key=jax.random.key(0), neuron=zoo.AdEx())


@pytest.mark.parametrize("neuron", _SUBTHRESHOLD.values(), ids=_SUBTHRESHOLD.keys())
def test_one_step_is_exact_with_the_neurons_own_currents(neuron):
    """The model's own currents (ALIF I_adp, GIF R·(I1 + I2)), held over the step as its own step holds
    them, relax with the conductances at rate g_tot/τ: V_∞ = (V_rest + own + g_e E_exc + g_i E_inh)/g_tot."""
    g_e, g_i, dt = 7.0, 3.0, 2.0
    net = learn.EINetwork(1, 2, 1, key=jax.random.key(0), dt=dt, neuron=neuron, exc_fraction=0.5)
    *state, zeros, _, filtered = net.init_state(1).hidden
    state = type(neuron.init_state())(*state)
    added = {"I_adp": -6.0, "I1": 0.3, "I2": -0.2}
    shifted = {name: getattr(state, name) + value for name, value in added.items() if name in state._fields}
    state = state._replace(V=state.V - 5.0, **shifted)
    if isinstance(neuron, zoo.ALIF):
        own = -6.0  # I_adp, mV
    elif isinstance(neuron, zoo.LIF):
        own = 0.0
    else:
        own = float(neuron.R) * 0.1  # R·(I1 + I2), mV
    hidden, _ = net.cell((*state, zeros, zeros, filtered), jnp.full((1, 2), g_e), jnp.full((1, 2), g_i))
    V0, V_rest, tau, g_tot = float(state.V[0, 0]), float(neuron.V_rest), float(neuron.tau), 1 + g_e + g_i
    V_inf = (V_rest + own + g_e * net.E_exc + g_i * net.E_inh) / g_tot
    np.testing.assert_allclose(hidden[0][0, 0], V_inf + (V0 - V_inf) * np.exp(-dt * g_tot / tau), rtol=1e-12)


def test_the_cells_gradient_matches_finite_differences_with_the_spikes_held():
    """A surrogate of slope ~0 makes the gradient the derivative at a fixed spike pattern, which central
    differences see while no spike flips: checks the exact input's backward pass (through jax.checkpoint)
    with strong conductances, resets and adaptation."""
    surrogate = zoo.surrogate.ReLU(alpha=1e-30, width=20.0)
    neuron = zoo.ALIF(spike_fn=surrogate, detach_reset=False, tau_a=50.0, beta=3.0)
    net = learn.EINetwork(4, 8, 2, key=jax.random.key(3), neuron=neuron, dt=2.0, in_scale=3.0, rec_scale=1.0)
    x = (jax.random.uniform(jax.random.key(5), (40, 2, 4)) < 0.3).astype(jnp.float64)
    params, static = eqx.partition(net, learn.trainable(net))

    def loss(params):
        net = eqx.combine(params, static)

        def body(state, x):
            state, (spikes, _) = net.step(state, x)
            return state, (state.hidden[0], spikes)

        _, (V, spikes) = jax.lax.scan(body, net.init_state(2), x)
        return jnp.sum(V**2) / 1e4, spikes

    (_, spikes), grads = eqx.filter_value_and_grad(loss, has_aux=True)(params)
    assert net.w_in.dtype == jnp.float64 and jnp.sum(spikes) > 100
    h = 1e-7
    for name in ("w_in", "w_rec"):
        d = jax.random.normal(jax.random.key(9), getattr(params, name).shape)
        field = operator.attrgetter(name)
        shifted = [loss(eqx.tree_at(field, params, field(params) + s * h * d)) for s in (1, -1)]
        assert all(jnp.array_equal(z, spikes) for _, z in shifted)  # no spike flipped
        fd = (shifted[0][0] - shifted[1][0]) / (2 * h)
        np.testing.assert_allclose(jnp.vdot(getattr(grads, name), d), fd, rtol=1e-5)
