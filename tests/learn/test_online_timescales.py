"""ES-D-RTRL with one presynaptic timescale per state variable, against the exact gradient."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from diffbrain import learn
from diffbrain.learn.loss import cross_entropy, loss_scale
from diffbrain.learn.online import (
    _jacobians,
    default_decay,
    injection_pattern,
    jacobian_pattern,
    per_state_entries,
    per_state_support,
    per_state_update,
)


def cosine(a, b):
    return float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def linear_neuron(key, n_steps=300, n_in=3):
    """One neuron without recurrence whose two state variables decay with 10 ms and 2 s time constants
    (dt 1 ms), driven through ``D_f`` by ``w · x_t`` from Bernoulli inputs; a random learning signal."""
    k_x, k_signal = jax.random.split(key)
    decays = jnp.exp(-1.0 / jnp.array([10.0, 2000.0]))
    D, D_f = jnp.diag(decays), jnp.array([1.0, -0.01])  # comparable contributions of both states
    x = jax.random.bernoulli(k_x, 0.05, (n_steps, n_in)).astype(jnp.float64)
    signal = jax.random.normal(k_signal, (n_steps, 2), jnp.float64)
    return decays, D, D_f, x, signal


def exact_gradient(D, D_f, x, signal):
    """BPTT: ``∂/∂w Σ_t L_t · h_t`` with ``h_t = D h_{t−1} + D_f (w · x_t)``, at w = 1."""

    def loss(w):
        def body(h, inputs):
            x, L = inputs
            h = D @ h + D_f * (x @ w)
            return h, L @ h

        return jnp.sum(jax.lax.scan(body, jnp.zeros(2, jnp.float64), (x, signal))[1])

    return jax.grad(loss)(jnp.ones(x.shape[1], jnp.float64))


def per_state_gradient(decays, D, D_f, x, signal):
    def body(carry, inputs):
        pre, post, grad = carry
        t, x, L = inputs
        pre = decays[:, None] * pre + x  # [S, n_in]
        post = per_state_update(decays, t, D, D_f, post)  # [state, rung]
        return (pre, post, grad + pre.T @ (L @ post)), None

    init = (jnp.zeros((2, x.shape[1])), jnp.zeros((2, 2)), jnp.zeros(x.shape[1]))
    steps = jnp.arange(x.shape[0], dtype=jnp.float64)
    return jax.lax.scan(body, init, (steps, x, signal))[0][2]


def single_timescale_gradient(alpha, D, D_f, x, signal):
    """The rank-one ES-D-RTRL with one trace decay α (``timescales="single"``); ``D`` [S, S] and ``D_f``
    [S] fixed, or per step ([T, S, S], [T, S])."""
    n_steps, n_state = signal.shape
    D = jnp.broadcast_to(D, (n_steps, n_state, n_state))
    D_f = jnp.broadcast_to(D_f, (n_steps, n_state))

    def body(carry, inputs):
        pre, post, grad = carry
        t, D, D_f, x, L = inputs
        pre = alpha * pre + x
        post = alpha * D @ post + (1 - alpha) * D_f
        return (pre, post, grad + pre * (L @ post) / (1 - alpha ** (t + 1))), None

    init = (jnp.zeros(x.shape[1]), jnp.zeros(n_state), jnp.zeros(x.shape[1]))
    steps = jnp.arange(n_steps, dtype=jnp.float64)
    return jax.lax.scan(body, init, (steps, D, D_f, x, signal))[0][2]


@pytest.fixture
def float64():
    with jax.enable_x64(True):
        yield


def test_per_state_traces_are_exact_for_two_timescales(float64):
    decays, D, D_f, x, signal = linear_neuron(jax.random.key(0))
    exact = exact_gradient(D, D_f, x, signal)
    assert jnp.min(jnp.abs(exact)) > 1e-3
    assert jnp.allclose(per_state_gradient(decays, D, D_f, x, signal), exact, rtol=1e-10)
    # One shared decay mixes the 10 ms and 2 s memories, whichever decay it takes.
    for alpha in (*decays, jnp.exp(-1.0 / 100.0)):
        error = jnp.linalg.norm(single_timescale_gradient(alpha, D, D_f, x, signal) - exact)
        assert error > 0.1 * jnp.linalg.norm(exact), float(alpha)


def test_per_state_traces_keep_the_sign_of_a_cue_held_over_a_delay(cue_task):
    """Left-minus-right cue input gradient per neuron, after a 100 ms delay held by slow adaptation.

    The single trace gets its sign wrong (cosine to BPTT −0.75 to −0.82); per state variable, 0.99.
    """
    task = cue_task(n_cues=3, delay=100, recall=20)  # 165 steps
    net = learn.EINetwork(task.n_inputs, 50, 2, key=jax.random.key(0))
    batch = task.sample(jax.random.key(1), 16)

    def left_minus_right(grads):
        return jnp.sum(grads.w_in[: task.group], 0) - jnp.sum(grads.w_in[task.group : 2 * task.group], 0)

    _, exact = jax.jit(learn.bptt)(net, batch)
    online = jax.jit(learn.online, static_argnames="timescales")
    report = {
        timescales: cosine(
            left_minus_right(exact), left_minus_right(online(net, batch, timescales=timescales)[1])
        )
        for timescales in ("per-state", "single")
    }
    print("left-minus-right input gradient, cosine to BPTT:", report)
    assert report["per-state"] > 0.9, report
    assert report["single"] < 0, report


def test_jacobians_patterns_and_live_entries_of_the_network():
    """`_jacobians` equals `jax.jacfwd` of the cell, neuron by neuron; the structural zeros that
    `per_state_update` skips (`jacobian_pattern`, `injection_pattern`) are zeros of the computed ``D`` and
    ``D_f``; and the live entries of ES-D-RTRL's factor (`per_state_support`, what `online` carries) evolve
    as the dense factor does, whose other entries stay zero, whichever way the decays are ordered."""
    net = learn.EINetwork(4, 20, 2, key=jax.random.key(0))
    k_h, k_u = jax.random.split(jax.random.key(1))
    h0 = jnp.stack(net.init_state(8).hidden, axis=-1)
    h = h0 + jax.random.uniform(k_h, h0.shape, minval=0.0, maxval=20.0)  # V near threshold: surrogate on
    u_e, u_i = jax.random.uniform(k_u, (2, *h.shape[:-1]))
    _, _, D, D_fe, D_fi = _jacobians(net, h, u_e, u_i)
    n_state = h.shape[-1]

    def cell(h, u_e, u_i):
        return jnp.stack(net.cell(tuple(h[..., k] for k in range(n_state)), u_e, u_i)[0], axis=-1)

    J_h, J_e, J_i = jax.jacfwd(cell, argnums=(0, 1, 2))(h, u_e, u_i)  # neurons are independent: the diagonal
    assert jnp.allclose(D, jnp.einsum("bjsbjr->bjsr", J_h), rtol=1e-5, atol=1e-7)
    assert jnp.allclose(D_fe, jnp.einsum("bjsbj->bjs", J_e), rtol=1e-5, atol=1e-7)
    assert jnp.allclose(D_fi, jnp.einsum("bjsbj->bjs", J_i), rtol=1e-5, atol=1e-7)

    pattern = jacobian_pattern(n_state)
    assert jnp.all(jnp.where(jnp.array(pattern), 0.0, D) == 0)
    assert jnp.all(jnp.any(D != 0, axis=(0, 1)) == jnp.array(pattern))  # no kept entry is always zero
    for D_f, injected in zip((D_fe, D_fi), injection_pattern(n_state), strict=True):
        assert jnp.all(jnp.any(D_f != 0, axis=(0, 1)) == jnp.array(injected))

    columns = [[D[..., s, r] if pattern[s][r] else None for r in range(n_state)] for s in range(n_state)]
    dense_update, live_update = jax.jit(per_state_update), jax.jit(per_state_entries)
    for decays in (jnp.linspace(0.8, 0.999, n_state), jnp.linspace(0.999, 0.8, n_state)):
        dense = jnp.zeros((n_state, n_state, 2, *h.shape[:-1]))
        live = [
            {entry: jnp.zeros(h.shape[:-1]) for entry in per_state_support(pattern, injected)}
            for injected in injection_pattern(n_state)
        ]
        for t in range(4):
            dense = dense_update(decays, float(t), D, jnp.stack([D_fe, D_fi]), dense)
            live = [
                live_update(decays, float(t), columns, [D_f[..., s] for s in range(n_state)], entries)
                for D_f, entries in zip((D_fe, D_fi), live, strict=True)
            ]
        for factor, entries in enumerate(live):
            assert len(entries) < n_state**2
            for s in range(n_state):
                for m in range(n_state):
                    value = entries.get((s, m), jnp.zeros(()))
                    assert jnp.allclose(dense[s, m, factor], value, rtol=1e-6, atol=1e-7), (factor, s, m)


def tiny_network(n_in=4, n_rec=8, n_steps=30, batch_size=2, seed=0):
    """A float64 dense recurrent network small enough to trace step by step, and a batch whose loss covers
    every step."""
    net = learn.EINetwork(n_in, n_rec, 2, key=jax.random.key(seed), in_scale=0.3)
    net = jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, net)
    k_x, k_label = jax.random.split(jax.random.key(seed + 1))
    inputs = jax.random.bernoulli(k_x, 0.2, (n_steps, batch_size, n_in)).astype(jnp.float64)
    labels = jax.random.bernoulli(k_label, 0.5, (batch_size,)).astype(jnp.int32)
    mask = jnp.ones((n_steps, batch_size), bool)
    return net, learn.SimpleBatch(inputs, jnp.broadcast_to(labels, mask.shape), mask, labels)


def trajectory(net, batch):
    """Per step of the network on ``batch``: the spikes fed back into it ([T, B, n]), the own-state
    Jacobians ``D`` [T, B, n, S, S] and ``D_fe`` [T, B, n, S], and the loss's signal ∂L_t/∂h_t [T, B, n, S]
    (non-zero on the filtered spikes alone, which the readout reads)."""
    weights = net.weights()
    scale = loss_scale(batch.mask)
    state = net.init_state(batch.inputs.shape[1])

    def body(carry, inputs):
        h, spikes = carry
        x, target, mask = inputs
        h, new_spikes, D, D_fe, _ = _jacobians(net, h, *net.synaptic_input(x, spikes, weights))
        filtered = jax.grad(lambda f: scale * cross_entropy(f @ net.w_out + net.b_out, target, mask))(
            h[..., -1]
        )
        signal = jnp.zeros_like(h).at[..., -1].set(filtered)
        return (h, new_spikes), (spikes, D, D_fe, signal)

    init = (jnp.stack(state.hidden, axis=-1), state.spikes)
    return jax.lax.scan(body, init, (batch.inputs, batch.targets, batch.mask))[1]


@pytest.fixture(scope="module")
def tiny():
    """`tiny_network` and its `trajectory`, built once for the tests below."""
    with jax.enable_x64(True):
        net, batch = tiny_network()
        return net, batch, jax.jit(trajectory)(net, batch)


@pytest.mark.parametrize("decay", [None, 0.5], ids=["default-decay", "decay-0.5"])
def test_single_timescale_online_equals_the_reference_on_a_network(float64, tiny, decay):
    """``timescales="single"`` on a recurrent network is `single_timescale_gradient` of each neuron's own
    Jacobians, with the decay given (or `default_decay`): the (1 − α) scale of the factor and the bias
    correction 1 − α^{t+1} included (the decay 0.5 is not the default: a ``decay`` ignored fails)."""
    net, batch, (_, D, D_fe, signal) = tiny
    alpha = default_decay(net) if decay is None else decay
    per_neuron = jax.vmap(single_timescale_gradient, in_axes=(None, 1, 1, None, 1))  # over neurons: [n, n_in]
    per_trial = jax.jit(jax.vmap(per_neuron, in_axes=(None, 1, 1, 1, 1)))  # over trials: [B, n, n_in]
    reference = jnp.sum(per_trial(alpha, D, D_fe, batch.inputs, signal), axis=0).T * jax.nn.sigmoid(net.w_in)
    assert jnp.min(jnp.abs(reference)) > 0
    online = jax.jit(learn.online, static_argnames=("timescales", "decay"))
    _, grads = online(net, batch, timescales="single", decay=decay)
    error = float(jnp.max(jnp.abs(grads.w_in - reference)) / jnp.max(jnp.abs(reference)))
    assert jnp.allclose(grads.w_in, reference, rtol=1e-9, atol=1e-12 * jnp.max(jnp.abs(reference))), error


def test_per_state_recurrent_traces_equal_the_input_traces_of_the_same_spikes(float64, tiny):
    """An input channel that carries a neuron's own spike train (weight ~0, so the network is unchanged)
    gets, per postsynaptic neuron, the gradient of that neuron's excitatory recurrent synapse: the
    presynaptic traces of input and recurrent spikes decay alike, state variable by state variable."""
    net, batch, (spikes, *_) = tiny  # spikes [T, B, n]: what each step feeds back
    assert jnp.sum(spikes) > 10
    copied = int(jnp.argmax(jnp.sum(spikes, axis=(0, 1)) * net.is_excitatory))  # the busiest E neuron
    n_in = batch.inputs.shape[-1]
    w_in = jnp.concatenate([net.w_in, jnp.full((1, net.n_rec), -60.0)])  # softplus(−60) ≈ 1e−26
    wider = eqx.tree_at(lambda n: n.w_in, net, w_in)
    inputs = jnp.concatenate([batch.inputs, spikes[..., copied : copied + 1]], axis=-1)
    _, grads = jax.jit(learn.online)(wider, batch._replace(inputs=inputs))
    via_input = grads.w_in[n_in] / jax.nn.sigmoid(w_in[n_in])  # gradients of the effective weights
    via_recurrent = grads.w_rec[copied] / jax.nn.sigmoid(net.w_rec[copied])
    synapses = net.rec_mask[copied] > 0
    assert jnp.sum(synapses) > 0 and jnp.max(jnp.abs(via_recurrent[synapses])) > 0
    error = float(jnp.max(jnp.abs(via_input - via_recurrent)[synapses] / jnp.abs(via_recurrent[synapses])))
    assert jnp.allclose(via_input[synapses], via_recurrent[synapses], rtol=1e-8, atol=0), error
