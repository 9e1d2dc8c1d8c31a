"""Training loop: optax updates from BPTT or online gradients, metrics per step, resumable checkpoints."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import json
import math
import os
import sys
import time
import types
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PRNGKeyArray

from .._atomic import write_atomically
from .._time_step import step_ms
from .bptt import bptt_with_evidence
from .loss import StepLoss, accuracy, cross_entropy
from .network import EINetwork, trainable
from .online import online_with_evidence

METHODS = ("bptt", "bptt-checkpoint", "d-rtrl", "es-d-rtrl")
"""How `train` computes gradients: BPTT (`bptt`; ``"bptt-checkpoint"``: ``checkpoint=True``, segments of
about √T steps recomputed in the backward pass — the same gradient in far less memory for long trials) or
online (`online`'s algorithms)."""
CHECKPOINT, METRICS, RUN = "checkpoint.eqx", "metrics.json", "run.json"


class CheckpointMismatch(ValueError):
    """``checkpoint_dir`` holds a run that the arguments of `train` cannot continue."""


class TrainResult(NamedTuple):
    """What `train` returns."""

    net: EINetwork
    opt_state: Any
    metrics: dict[str, np.ndarray]  # "loss", "accuracy" and "seconds" (wall time), one per step [steps]


class TrainingDiverged(FloatingPointError):
    """`train` met a step whose loss or updated parameters are not finite. ``result`` is the run up to the
    last finite step (a `TrainResult`), which ``checkpoint_dir``, when given, holds too."""

    def __init__(self, message: str, result: TrainResult):
        super().__init__(message)
        self.result = result

    def __reduce__(self):  # pickled with its result (a process pool's worker sends it to the parent)
        return type(self), (self.args[0], self.result)


def gradient_function(method: str, loss_fn: StepLoss = cross_entropy) -> Callable:
    """``(net, batch) -> (loss, evidence, grads)`` for a method of `METHODS` (one object per arguments; an
    unhashable ``loss_fn``, e.g. an Equinox module holding arrays, gets a new `jax.tree_util.Partial`, a
    pytree whose arrays `train`'s jit traces).

    Raises:
        ValueError: ``method`` is not one of `METHODS`.
    """
    # checked before the cache, which would meet an unhashable method (a list) with a TypeError
    if not (isinstance(method, str) and method in METHODS):
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    try:
        hash(loss_fn)
    except TypeError:  # e.g. an Equinox module holding arrays: built anew, as a pytree for `_update`'s jit
        return _build_gradient_function(method, loss_fn, jax.tree_util.Partial)
    return _cached_gradient_function(method, loss_fn)


def _build_gradient_function(method: str, loss_fn: StepLoss, partial: type = functools.partial) -> Callable:
    if method in ("bptt", "bptt-checkpoint"):
        return partial(bptt_with_evidence, loss_fn=loss_fn, checkpoint=method == "bptt-checkpoint")
    return partial(online_with_evidence, loss_fn=loss_fn, algorithm=method)


@functools.cache
def _cached_gradient_function(method: str, loss_fn: StepLoss) -> Callable:
    return _build_gradient_function(method, loss_fn)


@eqx.filter_jit
def _update(net, opt_state, task, key, gradients, optimizer, batch_size):
    # Module level, so runs with equal settings (the same optimizer object) share the compiled step.
    batch = task.sample(key, batch_size)
    loss, evidence, grads = gradients(net, batch)
    # the loss as `value` for the optimizers that read it (optax.contrib.reduce_on_plateau); others ignore it
    update = optax.with_extra_args_support(optimizer).update
    updates, opt_state = update(grads, opt_state, eqx.filter(net, trainable(net)), value=loss)
    net = eqx.apply_updates(net, updates)
    # one reduction per parameter: whether the loss and the updated parameters are all finite
    finite = jnp.isfinite(loss)
    for leaf in jax.tree.leaves(eqx.filter(net, trainable(net))):
        finite = finite & jnp.all(jnp.isfinite(leaf))
    return net, opt_state, loss, accuracy(evidence, batch.labels), finite


class _StaticTask:
    """A task that is a pytree leaf hashed by identity (a plain class) or not hashable (a plain dataclass, a
    frozen one with an array field), as `_update`'s static argument: hashed and compared by the object
    itself and its fields as they were when wrapped (`_settings`), so the same task changed between two
    calls is compiled anew, and two objects never share a compiled step. A task holding a value whose state
    `_settings` cannot read (an object without fields whose repr holds an address, e.g. a memoryview) equals
    only its wrapper, which `train` makes once per call: such a task is compiled anew on every call."""

    def __init__(self, task):
        self.task = task
        unread: list = []
        settings = _settings(task, _unread=unread)
        self.fields = None if unread else json.dumps(settings, sort_keys=True)

    def __hash__(self) -> int:
        return hash((id(self.task), self.fields)) if self.fields is not None else id(self)

    def __eq__(self, other) -> bool:
        if self.fields is None:
            return self is other
        return isinstance(other, _StaticTask) and self.task is other.task and self.fields == other.fields

    def sample(self, key, batch_size: int):
        return self.task.sample(key, batch_size)


def _static_task(task):
    """``task`` as `_update` takes it: a pytree (an Equinox module: its arrays traced) or a leaf hashed by
    its value (a frozen dataclass of hashable fields) as it is, another leaf as a `_StaticTask`."""
    leaves = jax.tree.leaves(task)
    if not (len(leaves) == 1 and leaves[0] is task):
        return task
    try:
        hash(task)
    except TypeError:
        return _StaticTask(task)
    return _StaticTask(task) if type(task).__hash__ is object.__hash__ else task


def save_checkpoint(folder: str | os.PathLike, net, opt_state, step: int, metrics: dict) -> None:
    """Write the network, optimiser state, step and metrics to ``folder``; each file atomically.

    The metrics go first: a run interrupted between the two writes resumes from the older checkpoint and
    truncates the newer metrics to its step.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plain = {name: [float(v) for v in values[:step]] for name, values in metrics.items()}
    write_atomically(folder / METRICS, lambda file: json.dump(plain, file), "w")
    leaves = (net, opt_state, jnp.asarray(step))
    write_atomically(folder / CHECKPOINT, lambda file: eqx.tree_serialise_leaves(file, leaves), "wb")


def load_checkpoint(folder: str | os.PathLike, net, opt_state) -> tuple[Any, Any, int, dict] | None:
    """``(net, opt_state, step, metrics)`` from ``folder``, shaped like the given ones; None if absent.

    Raises:
        CheckpointMismatch: the checkpoint does not fit ``net`` and ``opt_state``, or ``metrics.json`` is
            missing.
    """
    folder = Path(folder)
    if not (folder / CHECKPOINT).exists():
        return None
    if not (folder / METRICS).exists():
        raise CheckpointMismatch(
            f"{folder} holds {CHECKPOINT} but not {METRICS}; restore {METRICS} or delete {CHECKPOINT} to "
            "start over."
        )
    like = (net, opt_state, jnp.asarray(0))
    try:
        net, opt_state, step = eqx.tree_deserialise_leaves(folder / CHECKPOINT, like)
    except Exception as error:  # Equinox raises RuntimeError or a tree-path error for other structures
        raise CheckpointMismatch(
            f"{folder / CHECKPOINT} holds another network or optimiser state ({error}); pass the network "
            "and optimizer of that run, or choose another checkpoint_dir."
        ) from error
    step = int(step)
    metrics = json.loads((folder / METRICS).read_text())
    return net, opt_state, step, {name: values[:step] for name, values in metrics.items()}


def _name(function: Callable) -> str:
    """A name of ``function`` that is the same in every process (a repr may hold a memory address)."""
    if isinstance(function, functools.partial):
        return f"partial({_name(function.func)})"
    qualname = getattr(function, "__qualname__", type(function).__qualname__)
    return f"{getattr(function, '__module__', type(function).__module__)}.{qualname}"


def _sha256(arrays) -> str:
    """The SHA-256 of ``arrays``' dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.asarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _settings(value, _open: frozenset[int] = frozenset(), _unread: list | None = None) -> Any:
    """``value`` as JSON that is the same in every process (no memory addresses): numbers and strings as
    they are, a sequence as a list, a set as a sorted list, a mapping as its (key, value) items, a path as
    its text, a scalar array as its number (one JSON cannot hold, a complex number, bytes or a date, by its
    repr) and a larger one (a random key: its data) as its dtype, shape and SHA-256, a function by `_name`
    (a `functools.partial` with its arguments), and a dataclass (an Equinox module, a task) or another
    object as its class and its fields (`_fields`: its ``__dict__`` and every ``__slots__`` entry that is
    set; its ``repr`` if it has neither); an object met again inside itself as ``"<cycle>"``, a module as
    its name. An object without fields whose repr holds an address is its class alone, and is appended to
    ``_unread`` when given.

    A lambda or local function (closure), which its name does not tell apart, adds the SHA-256 of its
    bytecode (the same in every process of one Python version) and its default and captured values (not
    the globals it reads); a bound method adds its object, and a callable object its fields."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, os.PathLike):
        return os.fsdecode(value)
    if isinstance(value, types.ModuleType):
        return value.__name__
    if eqx.is_array(value) and jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
        value = jax.random.key_data(value)
    if isinstance(value, np.generic) or (eqx.is_array(value) and value.ndim == 0):
        value = np.asarray(value).item()  # a complex number, bytes or a date: by its repr below
        if value is None or isinstance(value, bool | int | float | str):
            return value
    if eqx.is_array(value):
        return f"{value.dtype}{list(value.shape)} sha256 {_sha256([value])}"
    if id(value) in _open:
        return "<cycle>"
    inner = functools.partial(_settings, _open=_open | {id(value)}, _unread=_unread)
    if isinstance(value, list | tuple):
        return [inner(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((inner(item) for item in value), key=repr)
    if isinstance(value, Mapping):  # items as pairs: keys of any type, none mistaken for "class"
        items = [[inner(k), inner(v)] for k, v in value.items()]
        return {"class": _name(type(value)), "items": sorted(items, key=lambda item: json.dumps(item[0]))}
    attributes = _fields(value)
    if isinstance(value, functools.partial):
        fields = {"func": value.func, "args": value.args, "keywords": value.keywords}
    elif dataclasses.is_dataclass(value):
        fields = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    elif isinstance(value, types.FunctionType) and any(
        part in value.__qualname__ for part in ("<lambda>", "<locals>")
    ):
        closure = [_cell_contents(cell) for cell in value.__closure__ or ()]
        code = json.dumps(_code_settings(value.__code__), sort_keys=True).encode()
        fields = {"function": _name(value), "bytecode_sha256": hashlib.sha256(code).hexdigest()}
        fields |= {"defaults": value.__defaults__, "kwdefaults": value.__kwdefaults__, "closure": closure}
    elif isinstance(value, types.MethodType):
        fields = {"function": value.__func__, "self": value.__self__}
    elif callable(value) and not (
        attributes is not None
        and isinstance(inspect.getattr_static(type(value), "__call__", None), types.FunctionType)
    ):  # a function, a class, a builtin: its name (an object whose class defines __call__: its fields)
        return _name(value)
    elif attributes is not None:
        fields = attributes
    elif " at 0x" in (text := repr(value)):  # a value without fields whose state its repr does not show
        fields = {}
        if _unread is not None:
            _unread.append(value)
    else:  # a value without fields (a range, bytes, a complex number, a date): its repr
        fields = {"repr": text}
    return {"class": _name(type(value)), **{name: inner(item) for name, item in fields.items()}}


def _fields(value) -> dict[str, Any] | None:
    """``value``'s ``__slots__`` entries that are set (of every class of its MRO, a private name as Python
    mangles it) and its ``__dict__``; None if it has neither (an object of a builtin or C type)."""
    names = []
    for cls in type(value).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in [slots] if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{cls.__name__.lstrip('_')}{name}"
            names.append((cls, name))
    if not names and not hasattr(value, "__dict__"):
        return None
    fields = {}
    for cls, name in names:
        try:  # the slot's own descriptor: not a property of the same name in a subclass
            fields[name] = cls.__dict__[name].__get__(value, cls)
        except AttributeError:  # not set
            pass
    return fields | (vars(value) if hasattr(value, "__dict__") else {})


def _cell_contents(cell) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # a captured name not yet assigned
        return "<empty>"


def _code_settings(code: types.CodeType) -> list:
    """A function's bytecode, names and constants (nested functions' code likewise) as JSON."""
    constants = [_code_settings(c) if isinstance(c, types.CodeType) else _settings(c) for c in code.co_consts]
    return [code.co_code.hex(), list(code.co_names), list(code.co_varnames), constants]


def run_identity(
    net: EINetwork, task, method: str, batch_size: int, key: PRNGKeyArray, loss_fn: StepLoss
) -> dict:
    """What identifies a run of `train` (saved as ``run.json`` next to its checkpoint): the task (its class
    and fields, e.g. its durations and rates), the method, batch size, key and loss (a function by name, a
    partial or callable object with its arguments or fields, a lambda or closure with its code and captured
    values), the network's static settings, its neuron (its class and fields: ``detach_reset``, the
    surrogate ``spike_fn`` and its settings) and a SHA-256 of its initial arrays (its weights, neuron
    parameters and connectivity). The optimizer is not in it (its state's shapes are checked).

    Raises:
        ValueError: ``key`` is not a JAX random key.
    """
    _check_key(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return {
        "task": _settings(task),
        "method": method,
        "batch_size": batch_size,
        "key": np.asarray(key).tolist(),
        "loss_fn": _settings(loss_fn),
        "n_in": net.w_in.shape[0],
        "n_rec": net.n_rec,
        "n_out": net.w_out.shape[1],
        "sparse": net.sparse,
        "neuron": _settings(net.neuron),
        **{name: getattr(net, name) for name in ("n_exc", "dt", "tau_syn", "tau_out", "E_exc", "E_inh")},
        "initial_arrays_sha256": _sha256(jax.tree.leaves(eqx.filter(net, eqx.is_array))),
    }


def _check_sizes(net: EINetwork, task, loss_fn: StepLoss) -> None:
    """Refuse a network whose input size differs from the task's channels, or, under the default
    `cross_entropy` (whose outputs are the task's classes), whose output size differs from its classes."""
    n_in, n_out = net.w_in.shape[0], net.w_out.shape[1]
    task_inputs, task_outputs = getattr(task, "n_inputs", None), getattr(task, "n_outputs", None)
    if task_inputs is not None and n_in != task_inputs:
        raise ValueError(
            f"`net` takes {n_in} inputs but `task` gives {task_inputs} channels; build the network with "
            "EINetwork(task.n_inputs, n_rec, task.n_outputs, ...)."
        )
    if loss_fn is cross_entropy and task_outputs is not None and n_out != task_outputs:
        raise ValueError(
            f"`net` has {n_out} outputs but `task` has {task_outputs} classes, and cross_entropy reads one "
            "output per class; build the network with EINetwork(task.n_inputs, n_rec, task.n_outputs, ...)."
        )


def _check_key(key) -> None:
    """Raise ``ValueError`` unless ``key`` is one JAX random key: a typed key (`jax.random.key`) or the raw
    ``uint32`` data of one (`jax.random.PRNGKey`)."""
    if eqx.is_array(key) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
        return
    if eqx.is_array(key) and key.dtype == np.uint32:
        with contextlib.suppress(Exception):  # a shape the default random implementation cannot take
            if jax.random.wrap_key_data(key).shape == ():
                return
    raise ValueError(
        f"`key` must be one JAX random key, e.g. jax.random.key(0) (not a seed: pass jax.random.key(seed)), "
        f"got {key!r}."
    )


def _legacy_identity(net: EINetwork, loss_fn: StepLoss) -> dict:
    """How a ``run.json`` written before diffbrain recorded their settings names the loss and the neuron."""
    return {"loss_fn": _name(loss_fn), "neuron": type(net.neuron).__name__}


_UNRECORDED = object()  # a setting that run.json does not hold


def _same_json(a, b) -> bool:
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except TypeError:  # _UNRECORDED
        return False


def _differences(name: str, saved, current) -> list[str]:
    """One line for each setting under ``name`` whose value in ``run.json`` (``saved``) is not ``current``;
    a task of the same class is compared field by field (``task.delay_duration``)."""
    if saved == current or _same_json(saved, current):  # as JSON, NaN equals NaN
        return []
    if saved is _UNRECORDED:
        return [f"{name}: not recorded there (its run.json was written before diffbrain recorded it)"]
    if name == "initial_arrays_sha256":
        return [f"{name}: differ (other initial weights, e.g. another seed)"]
    if isinstance(saved, dict) and isinstance(current, dict):
        names = {**saved, **current} if saved.get("class") == current.get("class") else ["class"]
        return [
            line
            for field in names
            for line in _differences(f"{name}.{field}", saved.get(field, _UNRECORDED), current.get(field))
        ]
    return [f"{name}: {_brief(saved)} there, {_brief(current)} now"]


def _brief(value) -> str:
    """``value``'s repr, or for settings of an object (a dict with its class) the class."""
    return f"a {value['class']}" if isinstance(value, dict) and "class" in value else repr(value)


def _check_run(folder: Path, identity: dict, legacy: Mapping | None = None) -> None:
    """Refuse to resume a checkpoint in ``folder`` that was written by a run with another identity.

    ``legacy`` (`_legacy_identity`): settings that an older ``run.json`` held by name only; such a name is
    not taken for the settings, but reported as recorded by name, with the advice to add the settings."""
    path = folder / RUN
    if not path.exists():
        return  # written before run.json existed: only the shapes are checked
    saved = json.loads(path.read_text())
    by_name = {
        name
        for name, old in (legacy or {}).items()
        if name in saved and _same_json(saved[name], old) and not _same_json(old, identity[name])
    }

    def lines(name: str, value) -> list[str]:
        if name in by_name:
            return [
                f"{name}: recorded there by name only ({saved[name]!r}; its run.json was written before "
                "diffbrain recorded its settings)"
            ]
        return _differences(name, saved.get(name, _UNRECORDED), value)

    listing = [line for name, value in identity.items() for line in lines(name, value)]
    if listing:
        unrecorded = {name: value for name, value in identity.items() if name not in saved or name in by_name}
        advice = (
            f" If that run had the same {', '.join(unrecorded)}, add {json.dumps(unrecorded)} to {path} to "
            "resume it."
            if unrecorded
            else ""
        )
        raise CheckpointMismatch(
            f"checkpoint_dir {folder} holds a run with other settings ({'; '.join(listing)}); pass that "
            f"run's network, task and arguments to resume it, or choose another checkpoint_dir.{advice}"
        )


@contextlib.contextmanager
def _progress(total: int, done: int, enabled: bool) -> Iterator[Callable[[int, float, float], None]]:
    if not enabled:
        yield lambda step, loss, acc: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.1%}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("train", total=total, completed=done, loss=float("nan"), acc=float("nan"))
        yield lambda step, loss, acc: bar.update(task, completed=step, loss=loss, acc=acc)


def train(
    net: EINetwork,
    task,
    method: str = "bptt",
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 100,
    batch_size: int = 16,
    key: PRNGKeyArray | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 10,
    loss_fn: StepLoss = cross_entropy,
    progress: bool | None = None,
) -> TrainResult:
    """Train ``net`` on batches of ``task`` for ``steps`` optimiser steps.

    Step ``k`` trains on ``task.sample(fold_in(key, k), batch_size)``, so a run is reproducible from its
    key, and a resumed run sees the same batches as an uninterrupted one: with ``checkpoint_dir``, the
    network, optimiser state, step and metrics are saved every ``checkpoint_every`` steps and at the end.
    A later call continues from the last checkpoint (up to ``steps``) when it passes the same initial
    network (its neuron's settings too), task (its class and fields), method, batch size, key and loss
    (`run_identity`, saved in ``run.json``; the optimizer is not checked beyond its state's shapes);
    otherwise it raises `CheckpointMismatch` naming the fields that differ. A checkpoint already at
    ``steps`` is returned as it is. A loss is identified by its name, a `functools.partial` or callable
    object with its arguments or fields too; a lambda or local function by its bytecode and captured values
    as well (so a resume under another Python version may refuse it: give such a loss a module-level name),
    not by the globals it reads. A task that is not a pytree and is hashed by identity or not at all (a
    plain class or dataclass) is compiled for that object and its fields' values (``__slots__`` too): one
    changed between calls is compiled anew; one holding a value whose state cannot be read (an object
    without fields whose repr holds a memory address, e.g. a memoryview) is compiled anew on every call,
    and its ``run.json`` records that value by its class alone.

    Training stops with `TrainingDiverged` (a ``FloatingPointError``) at the first step whose loss or updated
    parameters are not finite. The error's ``result`` is the run up to the last finite step, and
    ``checkpoint_dir`` is brought up to that step, so a call with a lower learning rate (the optimizer is
    not part of the run's identity) resumes from there.

    Weight decay (``optax.adamw``, ``optax.add_decayed_weights``) acts on the unconstrained parameters
    ``w`` of ``|W| = softplus(w)`` (`EINetwork`), pulling every magnitude towards softplus(0) = ln 2: from
    the initial ~0.03 (input) and ~0.005 (recurrent) it strengthens the synapses (decay 1.0 made the
    recurrent ones 10× stronger in 60 steps). To keep weights small, add a penalty on ``net.weights()`` to
    the loss instead.

    Args:
        net: the network to train.
        task: a task (an instance, not its class) with ``sample(key, batch_size)`` returning a
            `diffbrain.learn.loss.Batch`; its class and fields (an Equinox module's or dataclass's fields,
            another object's attributes) identify it.
        method: ``"bptt"``, ``"bptt-checkpoint"``, ``"d-rtrl"`` or ``"es-d-rtrl"`` (`METHODS`).
        optimizer: an optax transformation (default ``optax.adam(1e-3)``); one that reads the loss
            (``optax.contrib.reduce_on_plateau``) gets it as ``value``.
        steps: total optimiser steps (including those of a resumed checkpoint), ≥ 0.
        batch_size: trials per step, ≥ 1.
        key: the random key of the run (default ``jax.random.key(0)``; a typed key or the raw data of one).
        checkpoint_dir: a folder to save and resume in; None to keep nothing (``''`` is refused: it would be
            the current folder).
        checkpoint_every: steps between checkpoints, ≥ 1.
        loss_fn: the per-step loss.
        progress: True or False: show a rich progress bar or not; None: when standard output is a
            terminal.

    Returns:
        A `TrainResult`: the trained network, the optimiser state and the metrics of every step: its loss,
        accuracy and wall time in seconds (the first step's includes compiling; a resumed run keeps the
        earlier steps' times, NaN where their checkpoint did not record them).

    Raises:
        ValueError: ``steps``, ``batch_size`` or ``checkpoint_every`` out of range (or a bool), an unknown
            ``method``, a ``key`` that is not a JAX random key, a task class instead of a task, a task whose
            ``dt`` or input channels differ from the network's (or, with the default loss, whose classes
            differ from its outputs), ``checkpoint_dir=''``, or a ``progress`` that is not a bool or None.
        CheckpointMismatch: ``checkpoint_dir`` holds another run, or more than ``steps`` steps.
        TrainingDiverged: training diverged (see above); a ``FloatingPointError``.
    """
    for name, value, least in (
        ("steps", steps, 0),
        ("batch_size", batch_size, 1),
        ("checkpoint_every", checkpoint_every, 1),
    ):
        if not (isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= least):
            raise ValueError(f"`{name}` must be an integer ≥ {least}, got {value!r}.")
    # NumPy integers as Python ones: a static batch size for jit, and JSON for the checkpoint's run.json
    steps, batch_size, checkpoint_every = int(steps), int(batch_size), int(checkpoint_every)
    if not (progress is None or isinstance(progress, bool | np.bool_)):
        raise ValueError(
            f"`progress` must be True, False or None (a bar when standard output is a terminal), got "
            f"{progress!r}."
        )
    if isinstance(task, type):  # its properties and class-level defaults read as nonsense below
        raise ValueError(
            f"`task` is the class {task.__name__}, not a task; pass an instance, e.g. {task.__name__}()."
        )
    task_dt = getattr(task, "dt", None)
    # at the decimal it was written as, as EINetwork keeps its dt: np.float32(0.1) is 0.1 ms
    if task_dt is not None and not math.isclose(step_ms(task_dt), net.dt, rel_tol=1e-9):
        raise ValueError(
            f"`task` is sampled every {task_dt} ms but `net` steps {net.dt} ms: the network would run the "
            f"trials at the wrong speed. Build the network with the task's step, EINetwork(..., dt=task.dt)."
        )
    _check_sizes(net, task, loss_fn)
    if checkpoint_dir is not None and not os.fspath(checkpoint_dir):
        raise ValueError(
            "`checkpoint_dir` is '', which would save and resume in the current folder; pass a folder, "
            "or None to keep nothing."
        )
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    key = jax.random.key(0) if key is None else key
    _check_key(key)
    gradients = gradient_function(method, loss_fn)
    opt_state = optimizer.init(eqx.filter(net, trainable(net)))
    metrics: dict[str, list[float]] = {"loss": [], "accuracy": [], "seconds": []}
    start = 0
    if checkpoint_dir is not None:
        folder = Path(checkpoint_dir)
        identity = run_identity(net, task, method, batch_size, key, loss_fn)
        if (folder / CHECKPOINT).exists():
            _check_run(folder, identity, _legacy_identity(net, loss_fn))
        else:  # a new run: its identity goes first, so every checkpoint has one
            folder.mkdir(parents=True, exist_ok=True)
            write_atomically(folder / RUN, lambda file: json.dump(identity, file, indent=1), "w")
        loaded = load_checkpoint(folder, net, opt_state)
        if loaded is not None:
            net, opt_state, start, metrics = loaded
            metrics.setdefault("seconds", [float("nan")] * start)  # a checkpoint that did not record them
            if start > steps:
                raise CheckpointMismatch(
                    f"checkpoint_dir {folder} holds {start} steps, more than steps={steps}; pass steps ≥ "
                    f"{start} (at steps = {start} the checkpoint is returned as it is) or choose another "
                    "checkpoint_dir."
                )

    saved = start  # the step of the checkpoint in checkpoint_dir (0: none yet)
    show = sys.stdout.isatty() if progress is None else bool(progress)
    sampled = _static_task(task)
    with _progress(steps, start, show) as advance:
        for step in range(start, steps):
            began = time.perf_counter()
            step_key = jax.random.fold_in(key, step)
            updated, updated_state, loss, acc, finite = _update(
                net, opt_state, sampled, step_key, gradients, optimizer, batch_size
            )
            finite = bool(finite)  # waits for the step
            seconds = time.perf_counter() - began
            if not finite:
                _diverged(step, float(loss), net, opt_state, metrics, checkpoint_dir, saved)
            net, opt_state = updated, updated_state
            metrics["loss"].append(float(loss))
            metrics["accuracy"].append(float(acc))
            metrics["seconds"].append(seconds)
            advance(step + 1, metrics["loss"][-1], metrics["accuracy"][-1])
            done = step + 1
            if checkpoint_dir is not None and (done % checkpoint_every == 0 or done == steps):
                save_checkpoint(checkpoint_dir, net, opt_state, done, metrics)
                saved = done
    return _train_result(net, opt_state, metrics)


def _train_result(net, opt_state, metrics: dict[str, list[float]]) -> TrainResult:
    return TrainResult(net, opt_state, {name: np.asarray(values) for name, values in metrics.items()})


def _diverged(step: int, loss: float, net, opt_state, metrics: dict, checkpoint_dir, saved: int) -> NoReturn:
    """Raise `TrainingDiverged` for step ``step + 1`` with the run up to ``step`` (the last finite state),
    first saving it to ``checkpoint_dir`` when given and beyond its checkpoint (at step ``saved``; none
    when 0, and a divergence at the first step leaves none either)."""
    kept = ""
    if checkpoint_dir is not None and step > saved:
        save_checkpoint(checkpoint_dir, net, opt_state, step, metrics)
    if checkpoint_dir is not None and step > 0:
        kept = f"; {checkpoint_dir} holds the run up to step {step}, the last finite one"
    raise TrainingDiverged(
        f"training diverged at step {step + 1}: the loss ({loss}) or the updated parameters are not "
        f"finite{kept}. Lower the learning rate or clip the gradients (optax.clip_by_global_norm); the "
        "error's `result` is the run up to the last finite step.",
        _train_result(net, opt_state, metrics),
    )
