"""What identifies a run of `train` (its loss and neuron), a loss holding arrays, and train's arguments."""

import functools
import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffbrain import learn, zoo
from diffbrain.learn import trainer

ADAM = optax.adam(1e-3)  # one object: the runs below share their compilation


def _tiny_run(cue_task, **changes):
    task = cue_task(n_cues=1, delay=5, recall=5)
    net = learn.EINetwork(task.n_inputs, 8, 2, key=jax.random.key(0))
    run = dict(net=net, task=task, method="bptt", optimizer=ADAM, steps=1, batch_size=2)
    return run | dict(key=jax.random.key(1), progress=False) | changes


def _identity(cue_task, loss_fn=learn.cross_entropy, net=None):
    run = _tiny_run(cue_task)
    net = run["net"] if net is None else net
    return trainer.run_identity(net, run["task"], "bptt", 2, run["key"], loss_fn)


def weighted_ce(readout, target, mask, weight=1.0):
    return weight * learn.cross_entropy(readout, target, mask)


class ScaledLoss:
    """A callable object that is neither a dataclass nor an Equinox module: identified by its fields."""

    def __init__(self, scale):
        self.scale = scale

    def __call__(self, readout, target, mask):
        return self.scale * learn.cross_entropy(readout, target, mask)


class WeightedCE(eqx.Module):
    weights: jax.Array

    def __call__(self, readout, target, mask):
        log_p = jax.nn.log_softmax(readout, -1)
        nll = -jnp.take_along_axis(log_p, target[:, None], -1)[:, 0] * self.weights[target]
        return jnp.sum(jnp.where(mask, nll, 0.0))


WEIGHT_ONE = functools.partial(weighted_ce, weight=1.0)  # one object: the runs with it share a compilation


def _scaled(scale):
    def loss(readout, target, mask):
        return scale * learn.cross_entropy(readout, target, mask)

    return loss


def test_resuming_with_a_partial_loss_of_other_arguments_is_refused_naming_them(cue_task, tmp_path):
    """Review l8: a partial was recorded as ``partial(weighted_ce)``, so weight=100 resumed weight=1."""
    one, hundred = WEIGHT_ONE, functools.partial(weighted_ce, weight=100.0)
    learn.train(**_tiny_run(cue_task, loss_fn=one), checkpoint_dir=tmp_path)
    with pytest.raises(
        trainer.CheckpointMismatch, match=r"loss_fn.keywords.items: \[\['weight', 1.0\]\] there"
    ):
        learn.train(**_tiny_run(cue_task, steps=2, loss_fn=hundred), checkpoint_dir=tmp_path)
    resumed = learn.train(**_tiny_run(cue_task, steps=2, loss_fn=one), checkpoint_dir=tmp_path)  # the same
    assert resumed.metrics["loss"].shape == (2,)


def test_losses_that_differ_in_their_arguments_fields_or_code_have_other_identities(cue_task):
    """Review l8: a callable object, a lambda and a closure were recorded by name only."""
    pairs = [
        (functools.partial(weighted_ce, weight=1.0), functools.partial(weighted_ce, weight=2.0)),
        (ScaledLoss(1.0), ScaledLoss(2.0)),
        (WeightedCE(jnp.array([1.0, 2.0])), WeightedCE(jnp.array([1.0, 3.0]))),
        (lambda r, t, m: learn.cross_entropy(r, t, m), lambda r, t, m: -learn.cross_entropy(r, t, m)),
        (_scaled(1.0), _scaled(2.0)),
        (ScaledLoss(1.0).__call__, ScaledLoss(2.0).__call__),
    ]
    for a, b in pairs:
        same, other = _identity(cue_task, a)["loss_fn"], _identity(cue_task, b)["loss_fn"]
        assert same != other, (a, b)
        assert json.loads(json.dumps(same)) == same
        # and the same loss built again is the same run
        rebuilt = _identity(cue_task, a)["loss_fn"]
        assert rebuilt == same
    assert _identity(cue_task, _scaled(1.0))["loss_fn"] == _identity(cue_task, _scaled(1.0))["loss_fn"]
    # a function by its name, as run.json has always recorded it
    assert _identity(cue_task)["loss_fn"] == "diffbrain.learn.loss.cross_entropy"


def test_a_lambdas_identity_is_the_same_in_another_process(tmp_path):
    """Its bytecode digest holds no address and no hash-seeded order (a frozenset constant)."""
    (tmp_path / "s20_losses.py").write_text(
        textwrap.dedent(
            """
            import json
            from diffbrain.learn.trainer import _settings
            SCALE = 2.0
            def make(scale):
                return lambda r, t, m: scale * (r.sum() if "a" in {"a", "b", "c"} else 0.0)
            print(json.dumps(_settings(make(3.0))))
            """
        )
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", "import s20_losses"],
            cwd=tmp_path,
            env=os.environ | {"PYTHONHASHSEED": seed, "JAX_PLATFORMS": "cpu"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in ("1", "2")
    ]
    outputs = set()
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        outputs.add(stdout)
    assert len(outputs) == 1
    settings = json.loads(outputs.pop())
    assert settings["function"] == "s20_losses.make.<locals>.<lambda>" and settings["closure"] == [3.0]


def test_neurons_that_differ_in_their_static_settings_or_surrogate_have_other_identities(cue_task):
    """Review l9: the neuron was recorded by class name (its arrays hashed), not detach_reset or the
    surrogate's class."""
    base = learn.default_neuron(8)

    def identity(neuron):
        net = learn.EINetwork(
            _tiny_run(cue_task)["task"].n_inputs, 8, 2, key=jax.random.key(0), neuron=neuron
        )
        return _identity(cue_task, net=net)

    def alif(**changes):
        fields = dict(tau_a=base.tau_a, beta=base.beta, spike_fn=base.spike_fn, detach_reset=False)
        return zoo.ALIF(**(fields | changes))

    same = identity(base)
    assert identity(alif()) == same
    # the initial arrays' hash alone cannot tell these apart
    detached = identity(alif(detach_reset=True))
    assert detached["initial_arrays_sha256"] == same["initial_arrays_sha256"]
    assert detached != same and detached["neuron"]["detach_reset"] is True
    other_class = type("OtherReLU", (zoo.surrogate.ReLU,), {})
    relabelled = identity(alif(spike_fn=other_class(alpha=base.spike_fn.alpha, width=base.spike_fn.width)))
    assert relabelled["initial_arrays_sha256"] == same["initial_arrays_sha256"]
    assert relabelled["neuron"] != same["neuron"]
    assert relabelled["neuron"]["spike_fn"]["class"].endswith("OtherReLU")


def test_resuming_with_a_detached_reset_is_refused_naming_it(cue_task, tmp_path):
    run = _tiny_run(cue_task)
    learn.train(**run, checkpoint_dir=tmp_path)
    base = run["net"].neuron
    neuron = zoo.ALIF(tau_a=base.tau_a, beta=base.beta, spike_fn=base.spike_fn, detach_reset=True)
    other = eqx.tree_at(lambda net: net.neuron, run["net"], neuron)
    with pytest.raises(trainer.CheckpointMismatch, match=r"\(neuron.detach_reset: False there, True now\)"):
        learn.train(**(run | {"net": other, "steps": 2}), checkpoint_dir=tmp_path)


def test_a_run_json_that_named_the_neuron_and_loss_only_says_how_to_resume_it(cue_task, tmp_path):
    """A run.json written before the neuron's and the loss's settings were recorded holds their names."""
    loss = WEIGHT_ONE
    run = _tiny_run(cue_task, loss_fn=loss)
    learn.train(**run, checkpoint_dir=tmp_path)
    identity = json.loads((tmp_path / "run.json").read_text())
    old = identity | {"neuron": "ALIF", "loss_fn": trainer._name(loss)}  # "partial(<module>.weighted_ce)"
    (tmp_path / "run.json").write_text(json.dumps(old))
    with pytest.raises(trainer.CheckpointMismatch) as error:
        learn.train(**(run | {"steps": 2}), checkpoint_dir=tmp_path)
    message = str(error.value)
    assert "(loss_fn: recorded there by name only ('partial(" in message
    assert "neuron: recorded there by name only ('ALIF'; its run.json was written before" in message
    assert "If that run had the same loss_fn, neuron, add" in message
    # another neuron class than the one named there is a difference, shown by its class
    (tmp_path / "run.json").write_text(json.dumps(old | {"neuron": "LIF"}))
    with pytest.raises(
        trainer.CheckpointMismatch, match=r"neuron: 'LIF' there, a diffbrain.zoo.[\w.]*ALIF now"
    ):
        learn.train(**(run | {"steps": 2}), checkpoint_dir=tmp_path)
    (tmp_path / "run.json").write_text(json.dumps(identity))  # as the message says
    assert learn.train(**(run | {"steps": 2}), checkpoint_dir=tmp_path).metrics["loss"].shape == (2,)


def test_a_loss_module_holding_arrays_trains_with_its_arrays_traced(cue_task):
    """Review l12: the cache of gradient functions hashed the loss, an unhashable module: TypeError."""
    run = _tiny_run(cue_task)
    labels = run["task"].sample(jax.random.fold_in(run["key"], 0), 2).labels
    assert jnp.any(labels == 1)  # the batch of the step has a trial whose class the weights below change
    losses = {}
    for weight in (1.0, 3.0):  # the second run reuses the compiled step: its weights not baked in
        loss = WeightedCE(jnp.array([1.0, weight]))
        losses[weight] = learn.train(**(run | {"loss_fn": loss})).metrics["loss"]
    assert np.isfinite(losses[1.0]).all() and losses[3.0] > losses[1.0]


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"steps": True}, "steps"),
        ({"batch_size": True}, "batch_size"),
        ({"checkpoint_every": True}, "checkpoint_every"),
    ],
)
def test_a_bool_count_is_refused(cue_task, change, name):
    """Review l15: True was taken for 1."""
    with pytest.raises(ValueError, match=f"`{name}` must be an integer ≥ .*got True"):
        learn.train(**_tiny_run(cue_task, **change))


@pytest.mark.parametrize(
    "key", [0, np.int64(3), jnp.zeros(3, jnp.uint32), jax.random.split(jax.random.key(0))]
)
@pytest.mark.parametrize("checkpoint", [False, True])
def test_a_key_that_is_not_one_random_key_is_refused_naming_it(cue_task, key, checkpoint, tmp_path):
    """Review l15: ``key=0`` failed with a TypeError about key data (an AttributeError with a checkpoint)."""
    folder = tmp_path if checkpoint else None
    with pytest.raises(ValueError, match=r"`key` must be one JAX random key, e.g. jax.random.key\(0\)"):
        learn.train(**_tiny_run(cue_task, key=key), checkpoint_dir=folder)
    assert not list(tmp_path.iterdir())


def test_a_raw_key_trains_as_its_typed_key(cue_task):
    typed = learn.train(**_tiny_run(cue_task, key=jax.random.key(1)))
    raw = learn.train(**_tiny_run(cue_task, key=jax.random.PRNGKey(1)))
    np.testing.assert_array_equal(raw.metrics["loss"], typed.metrics["loss"])


@pytest.mark.parametrize(("n_in_change", "n_out", "message"), [(1, 2, "inputs"), (0, 3, "classes")])
def test_a_network_sized_for_another_task_is_refused(cue_task, n_in_change, n_out, message):
    """A 3-output network trained silently on a 2-class task under cross_entropy."""
    run = _tiny_run(cue_task)
    task = run["task"]
    net = learn.EINetwork(task.n_inputs + n_in_change, 8, n_out, key=jax.random.key(0))
    with pytest.raises(ValueError, match=message):
        learn.train(**(run | {"net": net}))


def test_a_custom_loss_may_read_more_outputs_than_the_task_has_classes(cue_task):
    run = _tiny_run(cue_task)
    net = learn.EINetwork(run["task"].n_inputs, 8, 3, key=jax.random.key(0))
    result = learn.train(**(run | {"net": net, "loss_fn": functools.partial(weighted_ce, weight=1.0)}))
    assert np.isfinite(result.metrics["loss"]).all()
