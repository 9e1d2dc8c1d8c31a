import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from diffbrain import learn, zoo


def cosine(a, b):
    return float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def group_cosines(net, reference, approximation):
    """Cosine of two gradients per weight group: input, E→all, I→all, readout."""
    exc = net.is_excitatory
    return {
        "input": cosine(reference.w_in, approximation.w_in),
        "E->all": cosine(reference.w_rec[exc], approximation.w_rec[exc]),
        "I->all": cosine(reference.w_rec[~exc], approximation.w_rec[~exc]),
        "readout": cosine(reference.w_out, approximation.w_out),
    }


def feed_forward(net):
    return eqx.tree_at(lambda n: n.rec_mask, net, jnp.zeros_like(net.rec_mask))


@pytest.mark.parametrize(
    "neuron", [None, zoo.LIF(spike_fn=zoo.surrogate.Sigmoid(alpha=0.5))], ids=["alif", "lif"]
)
def test_d_rtrl_equals_bptt_without_recurrence(neuron, cue_task):
    task = cue_task(dtype="float64")
    net = learn.EINetwork(task.n_inputs, 20, 2, key=jax.random.key(0), neuron=neuron, in_scale=0.15)
    net = feed_forward(jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, net))
    batch = task.sample(jax.random.key(1), 4)
    assert jnp.mean(jax.lax.scan(lambda s, x: net.step(s, x), net.init_state(4), batch.inputs)[1][0]) > 0.01
    loss, exact = learn.bptt(net, batch)
    online_loss, online = learn.online(net, batch, algorithm="d-rtrl")
    assert jax.tree.structure(exact) == jax.tree.structure(online)
    assert online_loss == pytest.approx(float(loss), rel=1e-12)
    for name in ("w_in", "w_out", "b_out"):
        reference, value = getattr(exact, name), getattr(online, name)
        assert jnp.max(jnp.abs(reference)) > 0
        assert jnp.allclose(value, reference, rtol=1e-9, atol=1e-12 * jnp.max(jnp.abs(reference))), name
    _, es = learn.online(net, batch, algorithm="es-d-rtrl")
    assert jnp.allclose(es.w_out, exact.w_out) and jnp.allclose(es.b_out, exact.b_out)  # exact readout


def test_online_gradients_align_with_bptt_on_a_recurrent_network(cue_task):
    task = cue_task(n_cues=1, delay=10, recall=15)  # 40 steps
    net = learn.EINetwork(task.n_inputs, 60, 2, key=jax.random.key(0))
    batch = task.sample(jax.random.key(1), 8)
    _, exact = jax.jit(learn.bptt)(net, batch)
    rates = jax.lax.scan(lambda s, x: net.step(s, x), net.init_state(8), batch.inputs)[1][0]
    assert jnp.mean(rates) > 0.005  # the recurrent network is active
    report = {}
    for algorithm in ("d-rtrl", "es-d-rtrl"):
        _, approximation = jax.jit(learn.online, static_argnames="algorithm")(net, batch, algorithm=algorithm)
        report[algorithm] = group_cosines(net, exact, approximation)
    print("cosine to BPTT per weight group:", report)
    assert all(value > 0.9 for value in report["d-rtrl"].values()), report
    assert all(value > 0.75 for value in report["es-d-rtrl"].values()), report
    assert report["es-d-rtrl"]["readout"] == pytest.approx(1.0)


def test_checkpointed_bptt_gives_the_same_gradient(cue_task):
    task = cue_task(n_cues=1, delay=5, recall=5)
    net = learn.EINetwork(task.n_inputs, 20, 2, key=jax.random.key(0))
    batch = task.sample(jax.random.key(1), 2)
    loss, plain = learn.bptt(net, batch)
    loss_checkpointed, checkpointed = learn.bptt(net, batch, checkpoint=True)
    assert loss_checkpointed == pytest.approx(float(loss))
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(checkpointed), strict=True):
        assert jnp.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_unknown_algorithm_is_refused(cue_task):
    task = cue_task()
    net = learn.EINetwork(task.n_inputs, 10, 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="d-rtrl"):
        learn.online(net, task.sample(jax.random.key(0), 1), algorithm="e-prop")


def temp_bytes(fn, net, n_steps, batch_size=4):
    n_in = net.w_in.shape[0]
    batch = learn.loss.SimpleBatch(
        jax.ShapeDtypeStruct((n_steps, batch_size, n_in), jnp.float32),
        jax.ShapeDtypeStruct((n_steps, batch_size), jnp.int32),
        jax.ShapeDtypeStruct((n_steps, batch_size), jnp.bool_),
        jax.ShapeDtypeStruct((batch_size,), jnp.int32),
    )
    return jax.jit(fn).lower(net, batch).compile().memory_analysis().temp_size_in_bytes


def test_online_memory_does_not_grow_with_sequence_length():
    net = learn.EINetwork(20, 40, 2, key=jax.random.key(0))
    net = jax.tree.map(lambda x: x.astype(jnp.float32) if eqx.is_inexact_array(x) else x, net)
    memory = {}
    for name, fn in {
        "bptt": learn.bptt,
        "d-rtrl": lambda n, b: learn.online(n, b, algorithm="d-rtrl"),
        "es-d-rtrl": lambda n, b: learn.online(n, b, algorithm="es-d-rtrl"),
    }.items():
        memory[name] = [temp_bytes(fn, net, n_steps) for n_steps in (100, 1000)]
    print("compiled temp bytes at T = 100, 1000:", memory)
    for name in ("d-rtrl", "es-d-rtrl"):
        assert memory[name][1] <= 1.2 * memory[name][0], memory
    assert memory["bptt"][1] > 5 * memory["bptt"][0], memory
