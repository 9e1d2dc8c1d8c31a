"""A plain task (not a pytree, hashed by identity) changed in place between two calls of `learn.train` trains
with its new values, whatever holds them: ``__slots__``, a field JSON cannot hold (a complex number), or a
field whose state `_settings` cannot read (it is then compiled anew on every call); and ``run.json`` tells
such tasks apart."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffbrain import learn
from diffbrain.learn import trainer

ADAM = optax.adam(1e-3)  # one object: the runs below share their optimizer


def _sample(task, key, batch_size, level):
    """Trials whose inputs show the label at ``level``: the loss tells the level apart."""
    labels = jax.random.bernoulli(key, 0.5, (batch_size,)).astype(jnp.int32)
    shape = (5, batch_size)
    inputs = jnp.broadcast_to(jax.nn.one_hot(labels, 2) * level, (*shape, 2))
    return learn.SimpleBatch(inputs, jnp.broadcast_to(labels, shape), jnp.ones(shape, bool), labels)


class _SlotsTaskBase:
    """Fields in ``__slots__`` (no ``__dict__``), its subclasses' too."""

    __slots__ = ("dt", "n_inputs", "n_outputs")

    def __init__(self, level):
        self.dt, self.n_inputs, self.n_outputs = 10.0, 2, 2
        self.level = level

    def sample(self, key, batch_size):
        return _sample(self, key, batch_size, self.level)


class SlotsTask(_SlotsTaskBase):
    __slots__ = ("level",)


class MangledSlotsTask(_SlotsTaskBase):
    """Its level in a private (name-mangled) slot."""

    __slots__ = ("__level",)

    @property
    def level(self):
        return self.__level

    @level.setter
    def level(self, value):
        self.__level = value


class ComplexFieldTask:
    """A field JSON cannot hold: a NumPy complex number, whose magnitude is the level."""

    def __init__(self, level):
        self.dt, self.n_inputs, self.n_outputs = 10.0, 2, 2
        self.level = level

    @property
    def level(self):
        return self.phase

    @level.setter
    def level(self, value):
        self.phase = np.complex64(value * 1j)

    def sample(self, key, batch_size):
        return _sample(self, key, batch_size, float(abs(self.phase)))


class ViewTask:
    """A field whose state `_settings` cannot read: a memoryview (its repr holds an address) of the level."""

    def __init__(self, level):
        self.dt, self.n_inputs, self.n_outputs = 10.0, 2, 2
        self.view = memoryview(bytearray(4)).cast("f")
        self.view[0] = level

    @property
    def level(self):
        return self.view[0]

    @level.setter
    def level(self, value):
        self.view[0] = value

    def sample(self, key, batch_size):
        return _sample(self, key, batch_size, self.view[0])


def _net():
    return learn.EINetwork(2, 6, 2, key=jax.random.key(1), dt=10.0, in_scale=20.0)


def _loss(task, **changes):
    run = dict(optimizer=ADAM, steps=2, batch_size=4, key=jax.random.key(2), progress=False) | changes
    return learn.train(_net(), task, **run).metrics["loss"]


@pytest.mark.parametrize("make", [SlotsTask, MangledSlotsTask, ComplexFieldTask, ViewTask])
def test_a_plain_task_changed_in_place_between_runs_trains_with_its_new_values(make):
    """Review s27: a ``__slots__`` task or one with a complex field reused the compiled step of its old
    values (loss 0.6931 for level 1 instead of 140.09)."""
    task = make(0.0)
    before = _loss(task)
    task.level = 0.9
    after = _loss(task)
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, _loss(make(0.9)))


@pytest.mark.parametrize("make", [SlotsTask, MangledSlotsTask, ComplexFieldTask])
def test_a_task_whose_fields_are_read_shares_its_compiled_step_until_changed(make):
    task = make(0.0)
    assert trainer._static_task(task) == trainer._static_task(task)
    assert hash(trainer._static_task(task)) == hash(trainer._static_task(task))
    unchanged = trainer._static_task(task)
    task.level = 0.9
    assert trainer._static_task(task) != unchanged


def test_a_task_with_a_field_that_cannot_be_read_is_compiled_anew_on_every_call():
    """Its wrapper equals only itself: a new one per call of `train`, so a new compiled step."""
    task = ViewTask(0.5)
    assert trainer._static_task(task) != trainer._static_task(task)
    wrapped = trainer._static_task(task)
    assert wrapped == wrapped


def test_settings_read_every_slot_that_is_set():
    task = MangledSlotsTask(0.5)
    assert trainer._settings(task) == {
        "class": f"{__name__}.MangledSlotsTask",
        "dt": 10.0,
        "n_inputs": 2,
        "n_outputs": 2,
        "_MangledSlotsTask__level": 0.5,
    }
    unset = MangledSlotsTask.__new__(MangledSlotsTask)
    assert trainer._settings(unset) == {"class": f"{__name__}.MangledSlotsTask"}


@pytest.mark.parametrize(
    ("value", "recorded"),
    [
        (np.complex64(1 + 2j), "(1+2j)"),
        (np.asarray(1 - 1j), "(1-1j)"),
        (np.bytes_(b"ab"), "b'ab'"),
        (np.datetime64("2020-01-02"), "datetime.date(2020, 1, 2)"),
    ],
)
def test_a_scalar_json_cannot_hold_is_recorded_by_its_repr(value, recorded):
    assert trainer._settings(value)["repr"] == recorded


@pytest.mark.parametrize(
    ("make", "difference"),
    [
        (SlotsTask, "task.level: 0.0 there, 0.5 now"),
        (ComplexFieldTask, "task.phase.repr: '0j' there, '0.5j' now"),
    ],
)
def test_a_checkpoint_of_a_plain_task_resumes_only_with_its_values(make, difference, tmp_path):
    """Review s27: two ``__slots__`` tasks were recorded alike in run.json (a run resumed with another
    level), and a complex field failed with "Object of type complex is not JSON serializable"."""
    _loss(make(0.0), steps=1, checkpoint_dir=tmp_path)
    np.testing.assert_array_equal(_loss(make(0.0), checkpoint_dir=tmp_path), _loss(make(0.0)))
    with pytest.raises(trainer.CheckpointMismatch, match=re.escape(difference)):
        _loss(make(0.5), checkpoint_dir=tmp_path)
