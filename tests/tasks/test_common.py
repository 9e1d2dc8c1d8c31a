"""The contract every task keeps: shapes, dtypes, one batch per key, jit and vmap, encodings, validation."""

import doctest
import importlib
import re
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffbrain import learn, tasks

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
    # Review s24: arrays were taken and broadcast over the sides or the trials (a side bias, a noiseless
    # side, a per-trial rate that failed at another batch size); lists failed only when sampled
    (tasks.PerceptualDecisionMaking, {"stimulus_rate": np.array([40.0, 20.0])}, "stimulus_rate"),
    (tasks.PerceptualDecisionMaking, {"sigma": np.array([0.5, 0.0])}, "sigma"),
    (tasks.EvidenceAccumulation, {"cue_rate": [40.0, 20.0]}, "cue_rate"),
    (tasks.DelayedMatchToSample, {"match_prob": [0.5, 0.9]}, "match_prob"),
    (tasks.ContextDecisionMaking, {"sigma": [0.5, 0.1]}, "sigma"),
    (tasks.ContextDecisionMaking, {"fixation_rate": jnp.ones((1,))}, "fixation_rate"),
    (tasks.EvidenceAccumulation, {"channels_per_group": True}, "channels_per_group"),
    (tasks.EvidenceAccumulation, {"n_cues": np.True_}, "n_cues"),
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


@pytest.mark.parametrize("count", [np.int64(5), jnp.int32(5)])
def test_numpy_and_jax_integer_counts_are_stored_as_ints(count):
    """Review s24: they were stored as given: a NumPy integer warned "A JAX array is being set as static",
    and with a JAX integer `n_inputs` was an array that `learn.EINetwork` refused."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task = tasks.EvidenceAccumulation(dt=10.0, channels_per_group=count, n_cues=count)
        match = tasks.DelayedMatchToSample(n_stimuli=count, channels_per_group=count)
    assert type(task.channels_per_group) is int and type(task.n_cues) is int and task.n_inputs == 20
    assert type(match.n_stimuli) is int and type(match.n_inputs) is int
    learn.EINetwork(task.n_inputs, 8, task.n_outputs, key=jax.random.key(0), dt=task.dt)


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


# Review s22 findings.
@pytest.mark.parametrize(
    ("field", "value"),
    [("match_prob", 1.5), ("match_prob", -0.5), ("stimulus_rate", 5000.0), ("fixation_rate", -40.0)],
)
def test_fields_replaced_by_tree_at_are_checked_when_sampled(field, value):
    """`eqx.tree_at` skips `__check_init__`: a Python float put in its place sampled silently (match_prob
    1.5 gave P(match) = 1, stimulus_rate 5000 Hz a spike probability of 5 per step)."""
    task = tasks.DelayedMatchToSample(**SHORT_DMS, dt=10.0, encoding="rate")
    bad = eqx.tree_at(lambda t: getattr(t, field), task, value)
    with pytest.raises(ValueError, match=f"`{field}`"):
        bad.sample(jax.random.key(0), 4)
    with pytest.raises(ValueError, match=f"`{field}`"):  # a jitted function closing over the task
        jax.jit(lambda k: bad.sample(k, 4))(jax.random.key(0))


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("evidence_accumulation", "cue_rate"),
        ("decision_making", "stimulus_rate"),
        ("delayed_match", "stimulus_rate"),
        ("context_decision", "stimulus_rate"),
        ("context_decision", "context_rate"),
    ],
)
def test_traced_zero_rates_that_carry_the_answer_are_refused(name, field):
    """A traced cue_rate = 0 (the task as a jitted function's argument) sampled trials with no information;
    the constructor refuses it."""
    task = TASKS[name](dt=10.0, encoding="rate")
    sample = eqx.filter_jit(lambda t, k: t.sample(k, 2))
    sample(eqx.tree_at(lambda t: getattr(t, field), task, jnp.float32(40.0)), jax.random.key(0))  # fine
    bad = eqx.tree_at(lambda t: getattr(t, field), task, jnp.float32(0.0))
    with pytest.raises(eqx.EquinoxRuntimeError, match=f"`{field}`"):
        sample(bad, jax.random.key(0))
    with pytest.raises(ValueError, match=f"`{field}`"):
        eqx.tree_at(lambda t: getattr(t, field), task, 0.0).sample(jax.random.key(0), 2)


def test_float32_dt_and_durations_are_the_decimals_they_were_written_as():
    """np.float32(0.1) was stored as 0.10000000149011612 ms, which learn.train refused against a network
    built with dt=0.1 ("wrong speed"); a concrete 0-d JAX array was refused."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "JAX array set as static" warning: stored as Python floats
        task = tasks.EvidenceAccumulation(
            dt=np.float32(0.1), n_cues=1, cue_duration=np.float32(0.3), gap_duration=jnp.float32(0.2),
            delay_duration=jnp.asarray(1.0), recall_duration=np.float16(0.5),
        )  # fmt: skip
        one = tasks.PerceptualDecisionMaking(dt=jnp.float32(1.0), stimulus_duration=jnp.int32(300))
    assert (task.dt, task.cue_duration, task.gap_duration, task.delay_duration) == (0.1, 0.3, 0.2, 1.0)
    assert task.recall_duration == 0.5 and type(task.dt) is float and task.n_steps == 20
    assert (one.dt, one.stimulus_duration, one.n_steps) == (1.0, 300.0, 500)
    assert type(one.dt) is float and type(one.stimulus_duration) is float


@pytest.mark.parametrize(
    ("dt", "hinted"), [(np.float32(1 / 30), True), (1 / 3, False), (1 / 30, False), (0.3, False)]
)
def test_the_float32_hint_is_given_only_for_a_float32_dt(dt, hinted):
    """Review s24: a Python float such as 1/3 was told to "pass dt as a Python float"."""
    with pytest.raises(ValueError, match="whole number of steps") as refused:
        tasks.PerceptualDecisionMaking(dt=dt, stimulus_duration=100.01)
    assert ("came from a float32" in str(refused.value)) is hinted


@pytest.mark.parametrize("duration", [100000.05, 100000.04, 1000.05, 1e7 + 0.05, 10000.001])
def test_a_duration_off_the_step_grid_is_refused_at_any_length(duration):
    """The tolerance was relative to the step count: 100000.05 ms at dt 0.1 (1,000,000.5 steps) was rounded
    to a whole step."""
    with pytest.raises(ValueError, match="`stimulus_duration`"):
        tasks.PerceptualDecisionMaking(dt=0.1, stimulus_duration=duration)


@pytest.mark.parametrize(
    ("dt", "duration", "steps"),
    [
        (0.1, 100000.0, 1000000),
        (0.1, 0.3, 3),
        (0.1, 123456.7, 1234567),
        (np.float32(0.1), np.float32(300.1), 3001),
    ],
)
def test_durations_on_the_step_grid_are_accepted_despite_float_rounding(dt, duration, steps):
    task = tasks.PerceptualDecisionMaking(dt=dt, stimulus_duration=duration)
    assert task.periods["stimulus"].stop - task.periods["stimulus"].start == steps


def test_jit_without_a_static_batch_size_says_to_mark_it_static():
    task = TASKS["evidence_accumulation"](dt=10.0)
    with pytest.raises(ValueError, match=r"`batch_size` sets the shapes.*static_argnums=1"):
        jax.jit(task.sample)(jax.random.key(0), 4)


def test_the_batch_size_example_in_sample_s_docstring_holds():
    """The docstring said ``sample(key, 8)[:4]``, which slices the four fields of the Batch NamedTuple."""
    example = r"``(sample\(key, 8\)[^`]*)``\s+is not\s+``(sample\(key, 4\)[^`]*)``"
    code = re.search(example, tasks.AbstractTask.sample.__doc__)
    assert code is not None, tasks.AbstractTask.sample.__doc__
    task = TASKS["delayed_match"](dt=10.0)
    scope = {"sample": task.sample, "key": jax.random.key(0)}
    eight, four = (np.asarray(eval(expression, scope)) for expression in code.groups())
    assert eight.shape == four.shape == (task.n_steps, 4, task.n_inputs)
    assert not np.array_equal(eight, four)
