"""Per-step losses and the batch contract shared by BPTT, online learning and the trainer."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

StepLoss = Callable[[Array, Array, Array], Array]
"""``loss_fn(readout [B, n_out], target [B], mask [B]) -> scalar``: the loss of one time step, summed over
the batch. The total loss is the sum over steps divided by the number of masked (step, trial) pairs, so
BPTT and the online algorithms, which see one step at a time, optimise the same number."""


class Batch(Protocol):
    """What the learning functions read from a task's batch (`diffbrain.tasks` batches fit)."""

    inputs: Float[Array, "T B n_in"]
    targets: Int[Array, "T B"]
    mask: Bool[Array, "T B"]
    labels: Int[Array, " B"]


def cross_entropy(
    readout: Float[Array, "B n_out"], target: Int[Array, " B"], mask: Bool[Array, " B"]
) -> Array:
    """Softmax cross-entropy of the readout as logits, summed over the masked trials of one step."""
    log_p = jax.nn.log_softmax(readout, axis=-1)
    nll = -jnp.take_along_axis(log_p, target[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return jnp.sum(jnp.where(mask, nll, 0.0))


def loss_scale(mask: Bool[Array, "T B"]) -> Array:
    """``1 / (number of masked (step, trial) pairs)``, at least one pair."""
    return 1.0 / jnp.maximum(jnp.sum(mask), 1)


def accuracy(evidence: Float[Array, "B n_out"], labels: Int[Array, " B"]) -> Array:
    """The fraction of trials whose readout summed over the masked steps is largest for the label."""
    return jnp.mean(jnp.argmax(evidence, axis=-1) == labels)


class SimpleBatch(NamedTuple):
    """A `Batch` made of given arrays (for tests, benchmarks and users without `diffbrain.tasks`)."""

    inputs: Float[Array, "T B n_in"]
    targets: Int[Array, "T B"]
    mask: Bool[Array, "T B"]
    labels: Int[Array, " B"]
