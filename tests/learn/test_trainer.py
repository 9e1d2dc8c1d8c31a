import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffbrain import learn


@pytest.mark.parametrize("method", ["bptt", "es-d-rtrl"])
def test_learns_cue_counting_above_chance_and_keeps_dale_signs(method, cue_task):
    task = cue_task()  # 3 cues, a 20 ms delay, a 20 ms recall window: 85 steps
    net = learn.EINetwork(task.n_inputs, 50, 2, key=jax.random.key(0))
    result = learn.train(
        net, task, method, optax.adam(1e-2), steps=40, batch_size=32, key=jax.random.key(3), progress=False
    )
    accuracy, loss = result.metrics["accuracy"], result.metrics["loss"]
    assert accuracy.shape == loss.shape == (40,)
    assert accuracy[:5].mean() < 0.65 and accuracy[-10:].mean() > 0.7, accuracy
    assert loss[-10:].mean() < loss[:5].mean()
    trained = result.net
    assert not jnp.allclose(trained.w_rec, net.w_rec)
    before, after = net.signed_weights(), trained.signed_weights()
    assert jnp.all(jnp.sign(after) == jnp.sign(before))  # Dale's law: no synapse changed sign
    assert jnp.all(trained.weights()[0] > 0)


def test_resuming_from_a_checkpoint_reproduces_an_uninterrupted_run(cue_task, tmp_path):
    task = cue_task(n_cues=1, delay=5, recall=5)
    net = learn.EINetwork(task.n_inputs, 20, 2, key=jax.random.key(0))
    run = dict(task=task, method="es-d-rtrl", optimizer=optax.adam(1e-3), steps=4, batch_size=4)
    run |= dict(key=jax.random.key(1), progress=False)  # one optimizer object: the runs share a compilation
    straight = learn.train(net, **run)
    folder = tmp_path / "run"
    learn.train(net, **(run | {"steps": 2}), checkpoint_dir=folder, checkpoint_every=1)
    assert (folder / "checkpoint.eqx").exists() and not list(folder.glob("*.tmp"))
    resumed = learn.train(net, **(run | {"progress": True}), checkpoint_dir=folder, checkpoint_every=1)
    np.testing.assert_array_equal(resumed.metrics["loss"], straight.metrics["loss"])
    leaves = [jax.tree.leaves(eqx.filter(result.net, eqx.is_array)) for result in (resumed, straight)]
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_array_equal(a, b)


def test_unknown_method_is_refused(cue_task):
    task = cue_task()
    net = learn.EINetwork(task.n_inputs, 10, 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="bptt"):
        learn.train(net, task, method="adjoint", steps=1)
