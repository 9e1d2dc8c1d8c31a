"""Training loop: optax updates from BPTT or online gradients, metrics per step, resumable checkpoints."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PRNGKeyArray

from .bptt import bptt_with_evidence
from .loss import StepLoss, accuracy, cross_entropy
from .network import EINetwork, trainable
from .online import online_with_evidence

METHODS = ("bptt", "d-rtrl", "es-d-rtrl")
CHECKPOINT, METRICS = "checkpoint.eqx", "metrics.json"


class TrainResult(NamedTuple):
    """What `train` returns."""

    net: EINetwork
    opt_state: Any
    metrics: dict[str, np.ndarray]  # "loss" and "accuracy", one value per step [steps]


@functools.cache
def gradient_function(method: str, loss_fn: StepLoss = cross_entropy) -> Callable:
    """``(net, batch) -> (loss, evidence, grads)`` for a method of `METHODS` (one object per arguments)."""
    if method == "bptt":
        return functools.partial(bptt_with_evidence, loss_fn=loss_fn)
    if method in METHODS:
        return functools.partial(online_with_evidence, loss_fn=loss_fn, algorithm=method)
    raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")


@eqx.filter_jit
def _update(net, opt_state, task, key, gradients, optimizer, batch_size):
    # Module level, so runs with equal settings (the same optimizer object) share the compiled step.
    batch = task.sample(key, batch_size)
    loss, evidence, grads = gradients(net, batch)
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(net, trainable(net)))
    return eqx.apply_updates(net, updates), opt_state, loss, accuracy(evidence, batch.labels)


def write_atomically(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> None:
    """Call ``write(file)`` on a temporary file next to ``path`` (opened with ``mode``), then move it onto
    ``path``: readers see the old file or the complete new one, never a partial write."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as file:
            write(file)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide results from the group
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


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
    """``(net, opt_state, step, metrics)`` from ``folder``, shaped like the given ones; None if absent."""
    folder = Path(folder)
    if not (folder / CHECKPOINT).exists():
        return None
    like = (net, opt_state, jnp.asarray(0))
    net, opt_state, step = eqx.tree_deserialise_leaves(folder / CHECKPOINT, like)
    step = int(step)
    metrics = json.loads((folder / METRICS).read_text())
    return net, opt_state, step, {name: values[:step] for name, values in metrics.items()}


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
    network, optimiser state, step and metrics are saved every ``checkpoint_every`` steps and at the end,
    and a later call with the same arguments continues from the last checkpoint (up to ``steps``).

    Args:
        net: the network to train.
        task: a task with ``sample(key, batch_size)`` returning a `diffbrain.learn.loss.Batch`.
        method: ``"bptt"``, ``"d-rtrl"`` or ``"es-d-rtrl"``.
        optimizer: an optax transformation (default ``optax.adam(1e-3)``).
        steps: total optimiser steps (including those of a resumed checkpoint).
        batch_size: trials per step.
        key: the random key of the run (default ``jax.random.key(0)``).
        checkpoint_dir: where to save and resume; None to keep nothing.
        checkpoint_every: steps between checkpoints.
        loss_fn: the per-step loss.
        progress: show a rich progress bar; default when standard output is a terminal.

    Returns:
        A `TrainResult`: the trained network, the optimiser state and the metrics of every step.
    """
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    key = jax.random.key(0) if key is None else key
    gradients = gradient_function(method, loss_fn)
    opt_state = optimizer.init(eqx.filter(net, trainable(net)))
    metrics: dict[str, list[float]] = {"loss": [], "accuracy": []}
    start = 0
    if checkpoint_dir is not None:
        loaded = load_checkpoint(checkpoint_dir, net, opt_state)
        if loaded is not None:
            net, opt_state, start, metrics = loaded

    show = sys.stdout.isatty() if progress is None else progress
    with _progress(steps, start, show) as advance:
        for step in range(start, steps):
            step_key = jax.random.fold_in(key, step)
            net, opt_state, loss, acc = _update(
                net, opt_state, task, step_key, gradients, optimizer, batch_size
            )
            metrics["loss"].append(float(loss))
            metrics["accuracy"].append(float(acc))
            advance(step + 1, metrics["loss"][-1], metrics["accuracy"][-1])
            done = step + 1
            if checkpoint_dir is not None and (done % checkpoint_every == 0 or done == steps):
                save_checkpoint(checkpoint_dir, net, opt_state, done, metrics)
    return TrainResult(net, opt_state, {name: np.asarray(values) for name, values in metrics.items()})
