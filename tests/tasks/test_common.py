"""The contract every task keeps: shapes, dtypes, one batch per key, jit and vmap, encodings, validation."""

import doctest
import importlib
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffbrain import tasks

SHORT_DMS = dict(fixation_duration=100.0, sample_duration=200.0, delay_duration=300.0)
SHORT_DMS |= dict(test_duration=200.0, decision_duration=200.0)
# Every task once, sized so that the whole suite stays fast; `reaction_time` is a variant worth its own row.
TASKS = {
    "evidence_accumulation": lambda **kw: tasks.EvidenceAccumulation.shortened(**kw),
    "decision_making": lambda **kw: tasks.PerceptualDecisionMaking(stimulus_duration=300.0, **kw),
    "decision_making_rt": lambda **kw: tasks.PerceptualDecisionMaking(
        stimulus_duration=300.0, reaction_time=True, min_reaction_time=100.0, **kw
    ),
    "delayed_match": lambda **kw: tasks.DelayedMatchToSample(**(SHORT_DMS | kw)),
    "context_decision": lambda **kw: tasks.ContextDecisionMaking(stimulus_duration=300.0, **kw),
}
DEFAULT_CLASSES = [
    tasks.EvidenceAccumulation,
    tasks.PerceptualDecisionMaking,
    tasks.DelayedMatchToSample,
    tasks.ContextDecisionMaking,
]
MODULES = ["evidence_accumulation", "decision_making", "delayed_match", "context_decision"]


def assert_batches_equal(a, b):
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(params=list(TASKS), scope="module")
def task(request):
    return TASKS[request.param]()


def test_shapes_and_dtypes(task):
    batch = task.sample(jax.random.key(0), 4)
    T, n_in = task.n_steps, task.n_inputs
    assert batch.inputs.shape == (T, 4, n_in) and batch.inputs.dtype == jnp.float32
    assert batch.targets.shape == (T, 4) and batch.targets.dtype == jnp.int32
    assert batch.mask.shape == (T, 4) and batch.mask.dtype == jnp.bool_
    assert batch.labels.shape == (4,) and batch.labels.dtype == jnp.int32
    assert set(np.unique(batch.inputs)) <= {0.0, 1.0}
    assert 0 <= int(batch.targets.min()) and int(batch.targets.max()) < task.n_outputs
    # Each label is the target of its trial's masked (response) steps, so accuracy compares like with like.
    masked_targets = np.where(np.asarray(batch.mask), np.asarray(batch.targets), -1)
    for b, label in enumerate(np.asarray(batch.labels)):
        assert set(masked_targets[:, b]) - {-1} == {label}
    assert bool(batch.mask.any())


def test_response_window_is_where_the_targets_are_the_label(task):
    # The steps the accuracy sums over (masked, target = label) are the task's public response window.
    batch = task.sample(jax.random.key(0), 4)
    respond = np.asarray(batch.mask) & (np.asarray(batch.targets) == np.asarray(batch.labels))
    window = task.response_window()
    assert window.dtype == bool and window.shape == (task.n_steps,)
    np.testing.assert_array_equal(respond, np.broadcast_to(window[:, None], respond.shape))


def test_same_key_same_batch_other_key_other_batch(task):
    a, b = task.sample(jax.random.key(5), 4), task.sample(jax.random.key(5), 4)
    assert_batches_equal(a, b)
    c = task.sample(jax.random.key(6), 4)
    assert not np.array_equal(np.asarray(a.inputs), np.asarray(c.inputs))


def test_trials_depend_on_the_batch_size_as_documented():
    # `sample` says so: a fixed evaluation set needs both the key and the batch size.
    task, key = TASKS["delayed_match"](), jax.random.key(0)
    assert not np.array_equal(task.sample(key, 8).inputs[:, :4], task.sample(key, 4).inputs)


def test_vmap_over_keys_under_jit_matches_eager(task):
    keys = jax.random.split(jax.random.key(1), 3)
    stacked = jax.jit(jax.vmap(lambda k: task.sample(k, 4)))(keys)
    assert stacked.inputs.shape == (3, task.n_steps, 4, task.n_inputs)
    assert_batches_equal(jax.tree.map(lambda x: x[2], stacked), task.sample(keys[2], 4))


def test_jit_with_static_batch_size():
    task, key = TASKS["evidence_accumulation"](), jax.random.key(1)
    assert_batches_equal(jax.jit(task.sample, static_argnums=1)(key, 4), task.sample(key, 4))


def test_jit_with_the_task_traced():
    # Rates, probabilities and noise levels are leaves: a jitted function may take the task as an argument.
    task, key = TASKS["decision_making"](), jax.random.key(1)
    leaves_as_arrays = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), task)
    traced = eqx.filter_jit(lambda t, k: t.sample(k, 4))(leaves_as_arrays, key)
    assert_batches_equal(traced, task.sample(key, 4))


@pytest.mark.parametrize("name", list(TASKS))
def test_encodings_share_trials_and_spikes_follow_rates(name):
    key, batch_size = jax.random.key(2), 4
    rates = TASKS[name](encoding="rate").sample(key, batch_size)
    spikes = TASKS[name](encoding="poisson").sample(key, batch_size)
    for field in ("targets", "mask", "labels"):
        np.testing.assert_array_equal(getattr(rates, field), getattr(spikes, field))
    p, s = np.asarray(rates.inputs, float), np.asarray(spikes.inputs, float)
    assert not s[p == 0].any(), "a channel spiked while its rate was zero"
    # Per channel group: spike count against its Poisson (Bernoulli) expectation, 5 standard deviations.
    n_groups = p.shape[-1] // TASKS[name]().channels_per_group
    for group_p, group_s in zip(np.split(p, n_groups, -1), np.split(s, n_groups, -1), strict=True):
        expected, sd = group_p.sum(), np.sqrt((group_p * (1 - group_p)).sum())
        assert abs(group_s.sum() - expected) <= 5 * sd + 1e-9


@settings(max_examples=25, deadline=None)
@given(
    cls=st.sampled_from(DEFAULT_CLASSES),
    dt=st.sampled_from([0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0]),
    batch_size=st.integers(1, 64),
    encoding=st.sampled_from(["poisson", "rate"]),
)
def test_shapes_over_dt_and_batch_size(cls, dt, batch_size, encoding):
    task = cls(dt=dt, encoding=encoding)
    total_ms = sum(getattr(task, field) for _, field in task.period_fields)
    assert task.n_steps == round(total_ms / dt)
    out = jax.eval_shape(lambda k: task.sample(k, batch_size), jax.random.key(0))
    assert out.inputs.shape == (task.n_steps, batch_size, task.n_inputs)
    assert out.inputs.dtype == jnp.float32
    assert out.targets.shape == out.mask.shape == (task.n_steps, batch_size)
    assert out.labels.shape == (batch_size,)


RT = {"reaction_time": True}
BAD_CONFIGS = [
    (tasks.EvidenceAccumulation, {"delay_duration": 1000.5}, "delay_duration"),
    (tasks.EvidenceAccumulation, {"dt": 0.3}, "gap_duration"),
    (tasks.EvidenceAccumulation, {"recall_duration": -150.0}, "recall_duration"),
    (tasks.EvidenceAccumulation, {"cue_rate": 2000.0}, "cue_rate"),
    (tasks.EvidenceAccumulation, {"dt": 50.0}, "cue_rate"),  # 40 Hz · 50 ms = 2 spikes per step
    (tasks.EvidenceAccumulation, {"noise_rate": -1.0}, "noise_rate"),
    (tasks.EvidenceAccumulation, {"n_cues": -3}, "n_cues"),
    (tasks.EvidenceAccumulation, {"n_cues": 4}, "n_cues"),
    (tasks.EvidenceAccumulation, {"channels_per_group": -1}, "channels_per_group"),
    (tasks.EvidenceAccumulation, {"channels_per_group": 0}, "channels_per_group"),
    (tasks.EvidenceAccumulation, {"majority_prob": 1.2}, "majority_prob"),
    (tasks.EvidenceAccumulation, {"encoding": "spikes"}, "encoding"),
    (tasks.EvidenceAccumulation, {"dt": 0.0}, "dt"),
    (tasks.PerceptualDecisionMaking, {"stimulus_duration": 99.5}, "stimulus_duration"),
    (tasks.PerceptualDecisionMaking, {"coherences": (0.5, 1.5)}, "coherences"),
    (tasks.PerceptualDecisionMaking, {"sigma": -0.1}, "sigma"),
    (tasks.PerceptualDecisionMaking, {"fixation_rate": 1001.0}, "fixation_rate"),
    (tasks.PerceptualDecisionMaking, {**RT, "min_reaction_time": 0.5}, "min_reaction_time"),
    (tasks.PerceptualDecisionMaking, {**RT, "min_reaction_time": 5e3}, "min_reaction_time"),
    (tasks.DelayedMatchToSample, {"n_stimuli": 1}, "n_stimuli"),
    (tasks.DelayedMatchToSample, {"match_prob": -0.5}, "match_prob"),
    (tasks.DelayedMatchToSample, {"test_duration": 0.0}, "test_duration"),
    (tasks.DelayedMatchToSample, {"channels_per_group": -2}, "channels_per_group"),
    (tasks.ContextDecisionMaking, {"delay_duration": 12.3}, "delay_duration"),
    (tasks.ContextDecisionMaking, {"context_rate": 5000.0}, "context_rate"),
    # Values that made the task unlearnable or were silently ignored.
    (tasks.EvidenceAccumulation, {"cue_duration": 0.0}, "cue_duration"),
    (tasks.EvidenceAccumulation, {"cue_rate": 0.0}, "cue_rate"),
    (tasks.PerceptualDecisionMaking, {"stimulus_rate": 0.0}, "stimulus_rate"),
    (tasks.DelayedMatchToSample, {"stimulus_rate": 0.0}, "stimulus_rate"),
    (tasks.ContextDecisionMaking, {"context_rate": 0.0}, "context_rate"),
    (tasks.PerceptualDecisionMaking, {"sigma": float("inf")}, "sigma"),
    (tasks.ContextDecisionMaking, {"sigma": float("nan")}, "sigma"),
    (tasks.PerceptualDecisionMaking, {"min_reaction_time": 100.0}, "min_reaction_time"),
    # Wrong types, and the dt of the reaction-time variant (checked before it is divided by).
    (tasks.PerceptualDecisionMaking, {**RT, "dt": 0.0}, "dt"),
    (tasks.PerceptualDecisionMaking, {**RT, "dt": -1.0}, "dt"),
    (tasks.EvidenceAccumulation, {"delay_duration": True}, "delay_duration"),
    (tasks.EvidenceAccumulation, {"n_cues": 3.0}, "n_cues"),
    (tasks.DelayedMatchToSample, {"fixation_duration": "300"}, "fixation_duration"),
    (tasks.PerceptualDecisionMaking, {"coherences": "0.5"}, "coherences"),
    (tasks.PerceptualDecisionMaking, {"coherences": ()}, "coherences"),
    (tasks.ContextDecisionMaking, {"coherences": (True,)}, "coherences"),
    # Review s20: flags took any truthy value ("no" switched them on), numbers as strings passed the checks
    (tasks.PerceptualDecisionMaking, {"supervise_fixation": "no"}, "supervise_fixation"),
    (tasks.PerceptualDecisionMaking, {"reaction_time": "False"}, "reaction_time"),
    (tasks.PerceptualDecisionMaking, {"reaction_time": 1}, "reaction_time"),
    (tasks.DelayedMatchToSample, {"supervise_fixation": "yes"}, "supervise_fixation"),
    (tasks.ContextDecisionMaking, {"supervise_fixation": 0}, "supervise_fixation"),
    (tasks.PerceptualDecisionMaking, {"stimulus_rate": "40"}, "stimulus_rate"),
    (tasks.PerceptualDecisionMaking, {"fixation_rate": True}, "fixation_rate"),
    (tasks.PerceptualDecisionMaking, {"sigma": "0.5"}, "sigma"),
    (tasks.DelayedMatchToSample, {"match_prob": "0.5"}, "match_prob"),
    (tasks.ContextDecisionMaking, {"context_rate": b"40"}, "context_rate"),
    (tasks.EvidenceAccumulation, {"noise_rate": ["10"]}, "noise_rate"),
    (tasks.EvidenceAccumulation, {"majority_prob": np.array(True)}, "majority_prob"),
]


@pytest.mark.parametrize(("cls", "kwargs", "name"), BAD_CONFIGS)
def test_bad_configs_raise_naming_the_argument(cls, kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        cls(**kwargs)


def test_numpy_scalars_and_a_scalar_coherence_are_accepted():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "JAX array set as static" warning: stored as Python floats
        task = tasks.PerceptualDecisionMaking(
            dt=np.float32(10.0), stimulus_duration=np.int64(300), coherences=0.5
        )
    assert (task.dt, task.stimulus_duration, task.coherences) == (10.0, 300.0, (0.5,))
    assert type(task.dt) is float and task.n_steps == 50
    coherences = tasks.ContextDecisionMaking(coherences=np.array([0.1, 0.2])).coherences
    assert coherences == (0.1, 0.2) and all(type(c) is float for c in coherences)


@pytest.mark.parametrize("coherences", [[0.1, 0.2], 0.5])
def test_jax_array_coherences_are_taken_as_numpy_ones(coherences):
    """Review s20: a JAX array was refused as "not a sequence of fractions", a NumPy one accepted."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stored as Python floats, not arrays in a static field
        from_jax = tasks.PerceptualDecisionMaking(coherences=jnp.asarray(coherences)).coherences
    as_numpy = np.asarray(jnp.asarray(coherences))
    from_numpy = tasks.PerceptualDecisionMaking(coherences=as_numpy).coherences
    assert from_jax == from_numpy == tuple(np.atleast_1d(as_numpy).tolist())
    assert all(type(c) is float for c in from_jax)


def test_numpy_bool_flags_are_accepted_as_bools():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "JAX array set as static" warning: stored as Python bools
        task = tasks.PerceptualDecisionMaking(supervise_fixation=np.bool_(True), reaction_time=np.False_)
    assert task.supervise_fixation is True and task.reaction_time is False


@pytest.mark.parametrize(
    ("field", "value", "name"),
    [
        ("match_prob", 1.5, "match_prob"),
        ("stimulus_rate", 5000.0, "stimulus_rate"),
        ("fixation_rate", -1.0, "fixation_rate"),
    ],
)
def test_traced_fields_are_checked_inside_jit(field, value, name):
    # An outer jit that takes the task as an argument hides its leaves from __check_init__.
    task = tasks.DelayedMatchToSample(**SHORT_DMS, dt=10.0, encoding="rate")
    bad = eqx.tree_at(lambda t: getattr(t, field), task, jnp.float32(value))
    with pytest.raises(eqx.EquinoxRuntimeError, match=f"`{name}`"):
        eqx.filter_jit(lambda t, k: t.sample(k, 4))(bad, jax.random.key(0))


@pytest.mark.parametrize("batch_size", [0, -4, 2.5])
def test_bad_batch_size_raises(batch_size):
    with pytest.raises(ValueError, match="`batch_size`"):
        TASKS["evidence_accumulation"]().sample(jax.random.key(0), batch_size)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    with jax.enable_x64(False):
        result = doctest.testmod(importlib.import_module(f"diffbrain.tasks.{name}"))
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
