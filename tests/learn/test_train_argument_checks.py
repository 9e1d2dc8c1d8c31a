"""`learn.train` takes a task that is a plain dataclass or class, and refuses a task class or a `progress`
that is not a bool or None, naming the argument."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffbrain import learn, tasks
from diffbrain.learn import trainer

ADAM = optax.adam(1e-3)  # one object: the runs below share their optimizer


@dataclasses.dataclass
class PlainTask:
    """A task that is a plain (unhashable) dataclass: the inputs show the label at ``level``."""

    level: float = 0.5
    dt: float = 10.0
    n_inputs: int = 2
    n_outputs: int = 2
    n_steps: int = 5

    def sample(self, key, batch_size):
        labels = jax.random.bernoulli(key, 0.5, (batch_size,)).astype(jnp.int32)
        shape = (self.n_steps, batch_size)
        inputs = jnp.broadcast_to(jax.nn.one_hot(labels, 2) * self.level, (*shape, 2))
        return learn.SimpleBatch(inputs, jnp.broadcast_to(labels, shape), jnp.ones(shape, bool), labels)


class PlainClassTask:
    """The same task as a plain class: hashed by identity."""

    def __init__(self, level):
        self.level, self.dt, self.n_inputs, self.n_outputs, self.n_steps = level, 10.0, 2, 2, 5

    sample = PlainTask.sample


def _net():
    return learn.EINetwork(2, 6, 2, key=jax.random.key(1), dt=10.0, in_scale=20.0)


def _loss(task, **changes):
    run = dict(optimizer=ADAM, steps=2, batch_size=4, key=jax.random.key(2), progress=False) | changes
    return learn.train(_net(), task, **run).metrics["loss"]


def test_a_plain_dataclass_task_trains():
    """Review s26: JAX refused it ("Non-hashable static arguments are not supported")."""
    loss = _loss(PlainTask())
    assert loss.shape == (2,) and np.isfinite(loss).all()


@pytest.mark.parametrize("make", [PlainTask, PlainClassTask])
def test_a_plain_task_changed_between_runs_trains_as_a_new_one_with_its_values(make):
    """A task hashed by value: the compiled step of the task before the change is not reused after it, and
    an equal task trains as it does."""
    task = make(0.0)
    before = _loss(task)
    task.level = 0.9
    after = _loss(task)
    np.testing.assert_array_equal(after, _loss(make(0.9)))
    assert not np.array_equal(after, before)
    assert trainer._static_task(task) == trainer._static_task(task)
    assert hash(trainer._static_task(task)) == hash(trainer._static_task(task))


class SlotsTask:
    """A plain class whose fields `_settings` cannot see (``__slots__``, no ``__dict__``)."""

    __slots__ = ("dt", "level", "n_inputs", "n_outputs", "n_steps")

    def __init__(self, level):
        self.level, self.dt, self.n_inputs, self.n_outputs, self.n_steps = level, 10.0, 2, 2, 5

    sample = PlainTask.sample


class ComplexFieldTask(PlainClassTask):
    """A plain class with a field JSON cannot hold."""

    def __init__(self, level):
        super().__init__(level)
        self.phase = np.complex64(1 + 2j)


@dataclasses.dataclass(frozen=True)
class FrozenArrayTask:
    """A frozen dataclass whose generated hash fails on its array field."""

    level: float
    weights: np.ndarray = dataclasses.field(default_factory=lambda: np.ones(2))
    dt: float = 10.0
    n_inputs: int = 2
    n_outputs: int = 2
    n_steps: int = 5

    sample = PlainTask.sample


@pytest.mark.parametrize("make", [SlotsTask, ComplexFieldTask, FrozenArrayTask])
def test_two_tasks_never_share_a_compiled_step_unless_hashed_equal(make):
    """Review of s26's fix: tasks keyed by their `_settings` alone made every `SlotsTask` equal (the second
    trained on the first's compiled values, loss 0.6931 for level 0.9 instead of 2.4343); a complex field
    failed in JSON, and a frozen dataclass with an array field failed to hash."""
    first = _loss(make(0.0))
    second = _loss(make(0.9))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(second, _loss(make(0.9)))
    assert trainer._static_task(make(0.9)) != trainer._static_task(make(0.9))


def test_a_hashable_or_pytree_task_is_passed_on_as_it_is():
    task = tasks.EvidenceAccumulation(dt=10.0)
    assert trainer._static_task(task) is task


@pytest.mark.parametrize("dt", [10.0, 1.0])
def test_a_task_class_is_refused_naming_task(dt):
    """Review s26: the class read as a task said "sampled every 1.0 ms but net steps 10.0 ms", or
    "gives <property object at 0x…> channels"."""
    net = learn.EINetwork(100, 6, 2, key=jax.random.key(1), dt=dt)
    message = (
        "`task` is the class EvidenceAccumulation, not a task; pass an instance, e.g. EvidenceAccumulation()."
    )
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        learn.train(net, tasks.EvidenceAccumulation, steps=1, batch_size=2, progress=False)


@pytest.mark.parametrize("progress", ["no", 0, 1.0])
def test_a_progress_that_is_not_a_bool_or_none_is_refused_naming_it(progress):
    """Review s26: progress="no" was accepted, and truthy: a bar was drawn."""
    with pytest.raises(ValueError, match=r"`progress` must be True, False or None .*, got " + repr(progress)):
        learn.train(_net(), PlainTask(), steps=1, batch_size=2, progress=progress)


def test_a_numpy_bool_progress_is_accepted():
    assert _loss(PlainTask(), steps=1, progress=np.bool_(False)).shape == (1,)
