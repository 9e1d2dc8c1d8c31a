import functools
import json
import pickle

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffbrain import learn, tasks


@pytest.mark.parametrize("method", ["bptt", "es-d-rtrl"])
def test_learns_cue_counting_above_chance_and_keeps_the_connectivity_pattern(method, cue_task):
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
    # Dale's signs hold by construction (|W| = softplus(w), the sign is the presynaptic type's), checked in
    # tests/learn/test_network.py::test_dale_signs_fixed_by_presynaptic_type; what training could still
    # break is the fixed connectivity pattern (no autapses), were it updated as a weight
    np.testing.assert_array_equal(trained.rec_mask, net.rec_mask)


def test_resuming_from_a_checkpoint_reproduces_an_uninterrupted_run(cue_task, tmp_path):
    task = cue_task(n_cues=1, delay=5, recall=5)
    net = learn.EINetwork(task.n_inputs, 20, 2, key=jax.random.key(0))
    run = dict(task=task, method="es-d-rtrl", optimizer=optax.adam(1e-3), steps=4, batch_size=4)
    run |= dict(key=jax.random.key(1), progress=False)  # one optimizer object: the runs share a compilation
    straight = learn.train(net, **run)
    folder = tmp_path / "run"
    first = learn.train(net, **(run | {"steps": 2}), checkpoint_dir=folder, checkpoint_every=1)
    assert (folder / "checkpoint.eqx").exists() and not list(folder.glob("*.tmp"))
    resumed = learn.train(net, **(run | {"progress": True}), checkpoint_dir=folder, checkpoint_every=1)
    np.testing.assert_array_equal(resumed.metrics["loss"], straight.metrics["loss"])
    # each step's wall time, the first part's kept: a resumed run's total time is their sum
    assert resumed.metrics["seconds"].shape == (4,) and np.all(resumed.metrics["seconds"] > 0)
    np.testing.assert_allclose(resumed.metrics["seconds"][:2], first.metrics["seconds"], rtol=1e-6)
    recorded = json.loads((folder / "metrics.json").read_text())
    del recorded["seconds"]  # as a checkpoint that did not record them: NaN, not made up
    (folder / "metrics.json").write_text(json.dumps(recorded))
    more = learn.train(net, **(run | {"steps": 5}), checkpoint_dir=folder)
    assert np.isnan(more.metrics["seconds"][:4]).all() and more.metrics["seconds"][4] > 0
    leaves = [jax.tree.leaves(eqx.filter(result.net, eqx.is_array)) for result in (resumed, straight)]
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bptt_checkpoint_trains_as_bptt_does(cue_task):
    """The same gradients, so the same run (to float32 rounding), from segments recomputed in the backward
    pass."""
    task = cue_task(n_cues=1, delay=5, recall=5)
    net = learn.EINetwork(task.n_inputs, 20, 2, key=jax.random.key(0))
    run = dict(task=task, optimizer=optax.adam(1e-2), steps=3, batch_size=4, key=jax.random.key(1))
    results = {method: learn.train(net, method=method, **run, progress=False) for method in learn.METHODS[:2]}
    plain, checkpointed = results.values()
    np.testing.assert_allclose(checkpointed.metrics["loss"], plain.metrics["loss"], rtol=1e-5)
    assert not jnp.allclose(plain.net.w_rec, net.w_rec)
    np.testing.assert_allclose(checkpointed.net.w_rec, plain.net.w_rec, rtol=1e-4, atol=1e-6)
    assert learn.trainer.gradient_function("bptt-checkpoint").keywords["checkpoint"] is True
    assert learn.trainer.gradient_function("bptt").keywords["checkpoint"] is False


@pytest.mark.parametrize("method", ["adjoint", ["bptt"]])
def test_unknown_method_is_refused(cue_task, method):
    # a list once reached the cache of gradient_function and failed with "unhashable type"
    task = cue_task()
    net = learn.EINetwork(task.n_inputs, 10, 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"`method` must be one of \('bptt', 'bptt-checkpoint'"):
        learn.train(net, task, method=method, steps=1)


ADAM = optax.adam(1e-3)  # one object: the runs below share their compilation


def _tiny_run(cue_task, **changes):
    task = cue_task(n_cues=1, delay=5, recall=5)
    net = learn.EINetwork(task.n_inputs, 8, 2, key=jax.random.key(0))
    run = dict(net=net, task=task, method="bptt", optimizer=ADAM, steps=2, batch_size=2)
    return run | dict(key=jax.random.key(1), progress=False) | changes


def test_each_step_trains_on_its_own_batch_drawn_from_the_key_folded_with_the_step(cue_task, monkeypatch):
    """Step k samples ``task.sample(fold_in(key, k), batch_size)``: consecutive steps see other trials (with
    one key for every step, the accuracy of the training batches would measure memorising one batch)."""
    drawn = []

    def spy(net, opt_state, task, key, gradients, optimizer, batch_size):  # records; trains nothing
        drawn.append((jax.random.key_data(key), task.sample(key, batch_size)))
        return net, opt_state, jnp.float32(0.7), jnp.float32(0.5), jnp.bool_(True)

    monkeypatch.setattr(learn.trainer, "_update", spy)
    run = _tiny_run(cue_task, steps=3)
    learn.train(**run)
    assert len(drawn) == 3
    for step, (key, _) in enumerate(drawn):
        np.testing.assert_array_equal(key, jax.random.key_data(jax.random.fold_in(run["key"], step)))
    (_, first), (_, second), _ = drawn
    assert not np.array_equal(first.inputs, second.inputs)


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory, cue_task):
    folder = tmp_path_factory.mktemp("trained")
    learn.train(**_tiny_run(cue_task), checkpoint_dir=folder, checkpoint_every=1)
    return folder


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"net": "seed"}, ["initial_arrays_sha256"]),
        ({"net": "dt"}, ["dt"]),
        ({"net": "sparse"}, ["sparse", "initial_arrays_sha256"]),
        ({"method": "d-rtrl"}, ["method"]),
        ({"batch_size": 3}, ["batch_size"]),
        ({"key": jax.random.key(2)}, ["key"]),
    ],
)
def test_resuming_with_other_arguments_is_refused_naming_them(cue_task, trained_folder, change, fields):
    run = _tiny_run(cue_task, steps=3)
    net = run["net"]
    other_net = {
        "seed": learn.EINetwork(net.w_in.shape[0], 8, 2, key=jax.random.key(5)),
        "dt": learn.EINetwork(net.w_in.shape[0], 8, 2, key=jax.random.key(0), dt=2.0),
        "sparse": net.to_sparse(),
    }
    change = {"net": other_net[change["net"]]} if "net" in change else change
    with pytest.raises(learn.trainer.CheckpointMismatch) as error:
        learn.train(**(run | change), checkpoint_dir=trained_folder)
    message = str(error.value)
    assert str(trained_folder) in message
    names = learn.trainer.run_identity(net, run["task"], "bptt", 2, jax.random.key(1), learn.cross_entropy)
    assert [name for name in names if f"{name}:" in message] == fields
    assert "sha256: differ (other initial weights" in message or "initial_arrays_sha256" not in fields


@pytest.mark.parametrize(
    ("task", "differences"),
    [
        ({"delay": 9}, "(task.delay: 5 there, 9 now)"),
        ({"rate": 0.3, "noise": 0.0}, "(task.rate: 0.2 there, 0.3 now; task.noise: 0.02 there, 0.0 now)"),
    ],
)
def test_resuming_on_another_protocol_of_the_task_is_refused_naming_its_fields(
    cue_task, trained_folder, task, differences
):
    other = cue_task(**({"n_cues": 1, "delay": 5, "recall": 5} | task))
    with pytest.raises(learn.trainer.CheckpointMismatch) as error:
        learn.train(**_tiny_run(cue_task, task=other, steps=3), checkpoint_dir=trained_folder)
    assert differences in str(error.value)
    assert str(error.value).endswith(
        "pass that run's network, task and arguments to resume it, or choose another checkpoint_dir."
    )


def test_resuming_on_another_task_is_refused_naming_its_class(cue_task, trained_folder):
    other = tasks.EvidenceAccumulation(channels_per_group=10)  # as many inputs and classes as the cue task
    with pytest.raises(
        learn.trainer.CheckpointMismatch,
        match=r"\(task.class: '[\w.]*CueCounting' there, 'diffbrain.tasks.evidence_accumulation."
        r"EvidenceAccumulation' now\)",
    ):
        learn.train(**_tiny_run(cue_task, task=other, steps=3), checkpoint_dir=trained_folder)


def test_a_checkpoint_whose_run_json_predates_the_task_says_how_to_resume_it(
    cue_task, trained_folder, tmp_path
):
    folder = tmp_path / "old"
    folder.mkdir()
    for name in ("checkpoint.eqx", "metrics.json", "run.json"):
        (folder / name).write_bytes((trained_folder / name).read_bytes())
    identity = json.loads((folder / "run.json").read_text())
    task = identity.pop("task")
    (folder / "run.json").write_text(json.dumps(identity))
    with pytest.raises(learn.trainer.CheckpointMismatch) as error:
        learn.train(**_tiny_run(cue_task), checkpoint_dir=folder)
    message = str(error.value)
    assert "(task: not recorded there (its run.json was written before diffbrain recorded it))" in message
    assert message.endswith(
        f"If that run had the same task, add {json.dumps({'task': task})} to "
        f"{folder / 'run.json'} to resume it."
    )
    (folder / "run.json").write_text(json.dumps(identity | {"task": task}))  # as the message says
    assert learn.train(**_tiny_run(cue_task), checkpoint_dir=folder).metrics["loss"].shape == (2,)


class _TaskWithArrays(eqx.Module):
    rate: jax.Array
    pattern: jax.Array
    seed: jax.Array


def test_a_task_holding_arrays_and_keys_is_identified_by_their_values():
    def identity(pattern):
        task = _TaskWithArrays(jnp.asarray(0.5), pattern, jax.random.key(3))
        net = learn.EINetwork(4, 6, 2, key=jax.random.key(0))
        return learn.trainer.run_identity(net, task, "bptt", 2, jax.random.key(1), learn.cross_entropy)[
            "task"
        ]

    same = identity(jnp.arange(6.0))
    assert identity(jnp.arange(6.0)) == same and json.loads(json.dumps(same)) == same
    assert same["rate"] == 0.5 and same["pattern"].startswith("float") and same["seed"] != same["pattern"]
    assert identity(jnp.arange(6.0).at[0].set(1.0))["pattern"] != same["pattern"]


def test_a_task_with_mappings_paths_partials_and_cycles_is_identified_by_their_contents():
    """Review: a dict, set or path field was recorded as its class only, and a cycle recursed forever."""
    import functools
    import pathlib

    from diffbrain.learn.trainer import _differences, _settings

    class Task:
        def __init__(self, rates, path, scale):
            self.rates, self.path, self.scale, self.groups, self.me = rates, path, scale, {2, 1}, self

    def settings(**changes):
        fields = dict(rates={"stim": 40.0}, path=pathlib.Path("a"), scale=functools.partial(np.clip, a_min=0))
        return _settings(Task(**(fields | changes)))

    same = settings()
    assert same == settings() and json.loads(json.dumps(same)) == same
    assert same["me"] == "<cycle>" and same["groups"] == [1, 2] and same["path"] == "a"
    for change in ({"rates": {"stim": 80.0}}, {"path": pathlib.Path("b")}):
        assert settings(**change) != same
    assert settings(scale=functools.partial(np.clip, a_min=5)) != same
    keys = settings(rates={1: 1.0, "1": 2.0, "class": 3.0, np.clip: 4.0})["rates"]  # no key lost or made up
    assert keys["class"] == "builtins.dict" and len(keys["items"]) == 4
    assert ["numpy.clip", 4.0] in keys["items"]  # a function key by its name, not its address
    nan = settings(rates={"stim": float("nan")})
    assert _differences("task", json.loads(json.dumps(nan)), nan) == []  # NaN resumes


def test_resuming_more_steps_than_asked_is_refused_and_as_many_returns_the_checkpoint(
    cue_task, trained_folder
):
    with pytest.raises(ValueError, match=r"holds 2 steps, more than steps=1; pass steps ≥ 2"):
        learn.train(**_tiny_run(cue_task, steps=1), checkpoint_dir=trained_folder)
    result = learn.train(**_tiny_run(cue_task), checkpoint_dir=trained_folder)
    assert result.metrics["loss"].shape == (2,)


def test_a_checkpoint_without_metrics_is_refused_naming_the_folder(cue_task, trained_folder, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in ("checkpoint.eqx", "run.json"):
        (folder / name).write_bytes((trained_folder / name).read_bytes())
    with pytest.raises(ValueError, match=r"holds checkpoint.eqx but not metrics.json"):
        learn.train(**_tiny_run(cue_task), checkpoint_dir=folder)


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"steps": -1}, "steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
    ],
)
def test_out_of_range_settings_are_refused(cue_task, change, name, tmp_path):
    with pytest.raises(ValueError, match=f"`{name}` must be an integer ≥"):
        learn.train(**_tiny_run(cue_task, **change), checkpoint_dir=tmp_path)


def test_numpy_integer_counts_are_accepted(cue_task, tmp_path):
    run = _tiny_run(cue_task, batch_size=np.int64(2), steps=np.int64(2))
    result = learn.train(**run, checkpoint_dir=tmp_path, checkpoint_every=np.int32(1))
    assert len(result.metrics["loss"]) == 2
    np.testing.assert_array_equal(result.metrics["loss"], learn.train(**_tiny_run(cue_task)).metrics["loss"])


def test_a_task_sampled_at_another_step_than_the_network_is_refused():
    task = tasks.EvidenceAccumulation(dt=10.0)
    net = learn.EINetwork(task.n_inputs, 8, task.n_outputs, key=jax.random.key(0))  # dt = 1 ms
    with pytest.raises(
        ValueError, match=r"`task` is sampled every 10.0 ms but `net` steps 1.0 ms.*dt=task.dt"
    ):
        learn.train(net, task, steps=1, batch_size=1, progress=False)


def test_a_task_a_hair_off_the_network_s_step_is_refused():
    """The comparison is to a float's rounding (rel 1e-9), not a percent: 0.1 against 0.101 ms is refused."""
    task = tasks.EvidenceAccumulation(dt=0.1)
    net = learn.EINetwork(task.n_inputs, 8, task.n_outputs, key=jax.random.key(0), dt=0.101)
    with pytest.raises(ValueError, match=r"sampled every 0\.1 ms but `net` steps 0\.101 ms"):
        learn.train(net, task, steps=1, batch_size=1, progress=False)


def test_a_task_with_a_float32_step_trains_a_network_built_with_it(cue_task):
    """Review s24: EINetwork keeps np.float32(0.1) as 0.1 ms, and train compared it with the task's
    0.10000000149 ms: "sampled every 0.10000000149011612 ms but `net` steps 0.1 ms"."""

    class Float32Step(cue_task):
        dt: float = eqx.field(default=0.1, static=True)  # a float32 below, as read from a float32 file

    task = Float32Step(dt=np.float32(0.1))
    net = learn.EINetwork(task.n_inputs, 8, task.n_outputs, key=jax.random.key(0), dt=task.dt)
    assert net.dt == 0.1
    assert len(learn.train(net, task, steps=1, batch_size=1, progress=False).metrics["loss"]) == 1


def test_an_empty_checkpoint_dir_is_refused(cue_task, tmp_path, monkeypatch):
    """Review s24: '' was the current folder, where train saved (and would resume) its checkpoint."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="`checkpoint_dir` is ''"):
        learn.train(**_tiny_run(cue_task), checkpoint_dir="")
    assert not list(tmp_path.iterdir())


def test_divergence_stops_training_and_keeps_the_last_finite_state(cue_task, tmp_path):
    """The run up to the last finite step is in the error's ``result`` and in ``checkpoint_dir``, also
    between checkpoints: with ``checkpoint_every=3`` the checkpoint was at step 0 and step 2 was lost."""
    # the third update (optimizer count 2) is NaN: its loss is finite, the parameters it makes are not
    poison = optax.scale_by_schedule(lambda count: jnp.where(count >= 2, jnp.nan, 1.0))
    optimizer = optax.chain(optax.adam(1e-3), poison)
    run = _tiny_run(cue_task, optimizer=optimizer, steps=4)
    with pytest.raises(learn.TrainingDiverged, match=r"diverged at step 3: .* holds the run up to step 2,"):
        learn.train(**run, checkpoint_dir=tmp_path, checkpoint_every=3)
    like = (run["net"], optimizer.init(eqx.filter(run["net"], learn.trainable(run["net"]))))
    net, _, step, metrics = learn.trainer.load_checkpoint(tmp_path, *like)
    assert step == 2 and len(metrics["loss"]) == 2
    assert all(jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(eqx.filter(net, eqx.is_array)))
    with pytest.raises(FloatingPointError) as raised:  # without a checkpoint_dir: the error carries the run
        learn.train(**run)
    result = raised.value.result
    assert len(result.metrics["loss"]) == 2 and np.isfinite(result.metrics["loss"]).all()
    assert eqx.tree_equal(eqx.filter(result.net, eqx.is_array), eqx.filter(net, eqx.is_array))
    # resumed with a finite optimizer of the same state (not part of the run's identity): from step 2 on
    healthy = optax.chain(optax.adam(1e-3), optax.scale_by_schedule(lambda count: 1.0))
    resumed = learn.train(**(run | dict(optimizer=healthy)), checkpoint_dir=tmp_path)
    assert len(resumed.metrics["loss"]) == 4 and np.isfinite(resumed.metrics["loss"]).all()


def test_a_divergence_at_the_first_step_leaves_no_checkpoint(cue_task, tmp_path):
    """Nothing finite was computed: a checkpoint of step 0 would make a rerun into the folder a resume."""
    optimizer = optax.chain(optax.adam(1e-3), optax.scale_by_schedule(lambda count: jnp.nan))
    run = _tiny_run(cue_task, optimizer=optimizer, steps=2)
    with pytest.raises(learn.TrainingDiverged) as raised:
        learn.train(**run, checkpoint_dir=tmp_path)
    assert "holds the run" not in str(raised.value) and len(raised.value.result.metrics["loss"]) == 0
    like = (run["net"], optimizer.init(eqx.filter(run["net"], learn.trainable(run["net"]))))
    assert learn.trainer.load_checkpoint(tmp_path, *like) is None


def test_training_diverged_survives_pickling_with_its_result(cue_task):
    """A process pool's worker sends the error to its parent pickled (without `__reduce__`: a TypeError)."""
    net = _tiny_run(cue_task)["net"]
    error = learn.TrainingDiverged("training diverged at step 3", learn.TrainResult(net, None, {"loss": []}))
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, FloatingPointError) and str(copy) == "training diverged at step 3"
    assert eqx.tree_equal(copy.result.net, net)


def test_an_optimizer_that_reads_the_loss_value_trains(cue_task):
    """``optax.contrib.reduce_on_plateau`` needs ``update(..., value=loss)``; without it a TypeError."""
    optimizer = optax.chain(optax.adam(1e-2), optax.contrib.reduce_on_plateau(patience=1, factor=0.5))
    result = learn.train(**_tiny_run(cue_task, optimizer=optimizer, steps=4))
    assert np.isfinite(result.metrics["loss"]).all() and len(result.metrics["loss"]) == 4


def test_the_identity_of_a_run_is_the_same_in_another_process(cue_task):
    # no memory addresses: two equal partials (as another process would build) give the same identity
    run = _tiny_run(cue_task)
    a, b = (
        learn.trainer.run_identity(
            run["net"], run["task"], "bptt", 2, run["key"], functools.partial(learn.cross_entropy)
        )
        for _ in range(2)
    )
    assert a == b and a["loss_fn"]["class"] == "functools.partial"
    assert a["loss_fn"]["func"] == "diffbrain.learn.loss.cross_entropy" and a["loss_fn"]["args"] == []
    assert a["task"]["class"].endswith("CueCounting") and a["task"]["delay"] == 5
