"""Per-step losses and the batch contract shared by BPTT, online learning and the trainer."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
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


def check_batch(batch: Batch, n_in: int, n_out: int, dtype: jnp.dtype) -> SimpleBatch:
    """``batch`` checked against a network with ``n_in`` inputs and ``n_out`` readout units, its inputs cast
    to the network's float ``dtype`` (spikes: the cast is exact), as a `SimpleBatch`.

    Shapes and dtypes are checked in Python (free, also under ``jit``): inputs ``[T, B, n_in]``
    (time-major) with T ≥ 1 steps and B ≥ 1 trials, targets and mask ``[T, B]``, labels ``[B]``; targets
    and labels of an integer dtype (a float class such as 1.7 is refused, not truncated). The targets must
    be class indices in ``[0, n_out)`` at the masked steps, and so must the labels: checked in Python when
    the arrays are concrete, with `eqx.error_if` (one comparison per (step, trial)) when traced. The inputs
    must be finite and ≥ 0 (they are conductances), checked the same way. The mask must be bool (an integer
    one is read as ``mask != 0``): it selects the steps, it does not weight them. The traced check is
    attached to the mask (`checked_batch_and_scale` also attaches it to the loss scale, so that with
    ``EQX_ON_ERROR=nan`` a bad batch's loss and gradients are NaN: a bool mask cannot carry a NaN).

    The network must be float32 or float64: in half precision the loss and gradient sums over T steps drop
    their small terms (bfloat16, T = 2,000: the loss 3× and the readout gradient 2× too small) and the
    online traces' decays round to 1 (NaN gradients), so ``dtype`` float16 or bfloat16 is refused.

    Raises:
        ValueError: naming the field of ``batch`` that does not fit, or a half-precision ``dtype``.
    """
    checked = checked_batch_and_scale(batch, n_in, n_out, dtype)[0]
    return checked._replace(inputs=checked.inputs.astype(dtype))


def checked_batch_and_scale(
    batch: Batch, n_in: int, n_out: int, dtype: jnp.dtype
) -> tuple[SimpleBatch, Array]:
    """`check_batch`'s batch and its `loss_scale`, the traced check attached to both (the gradients of
    `learn.bptt` and `learn.online` read the scale, so under ``EQX_ON_ERROR=nan`` a bad batch's loss and
    gradients are NaN).

    The inputs keep their own dtype (spikes as uint8 or bool, a float32 batch for a float64 network): the
    scans cast one step's inputs at a time, since casting all ``[T, B, n_in]`` of them here made XLA keep a
    cast copy, and online learning's memory grew with T (81 bytes per step and trial for 20 uint8 inputs).
    """
    if jnp.finfo(dtype).bits < 32:
        raise ValueError(
            f"learn needs a float32 or float64 network, got {jnp.dtype(dtype).name}: its sums over the steps "
            "and its online traces lose their small terms in half precision. Cast it with "
            "zoo.astype(net, jnp.float32)."
        )
    inputs, targets, mask, labels = (
        jnp.asarray(a) for a in (batch.inputs, batch.targets, batch.mask, batch.labels)
    )
    if inputs.ndim != 3 or inputs.shape[2] != n_in:
        raise ValueError(
            f"`batch.inputs` must be [T, B, n_in] (time-major) with n_in = {n_in}, the network's input "
            f"channels; got shape {inputs.shape}."
        )
    time_and_batch = inputs.shape[:2]
    if 0 in time_and_batch:
        raise ValueError(
            f"`batch` must hold at least one step and one trial; got T = {time_and_batch[0]} steps and "
            f"B = {time_and_batch[1]} trials (`batch.inputs` is [T, B, n_in] = {inputs.shape}), which have "
            "no loss to learn from. Sample a batch size ≥ 1 of trials at least one step long."
        )
    for name, array in (("targets", targets), ("mask", mask)):
        if array.shape != time_and_batch:
            raise ValueError(
                f"`batch.{name}` must be [T, B] = {time_and_batch}, like `batch.inputs`' first two axes; got "
                f"shape {array.shape} (broadcast it to [T, B] yourself)."
            )
    if not (mask.dtype == bool or jnp.issubdtype(mask.dtype, jnp.integer)):
        raise ValueError(
            f"`batch.mask` must be bool, True at the steps the loss is taken at; got {mask.dtype} (a mask "
            "selects steps, it does not weight them: pass `mask > 0`)."
        )
    mask = mask.astype(bool)
    for name, array in (("targets", targets), ("labels", labels)):
        # the dtype is known under jit too; a float index would be truncated (1.7 read as class 1)
        if not jnp.issubdtype(array.dtype, jnp.integer):
            raise ValueError(
                f"`batch.{name}` must be integer class indices; got dtype {array.dtype}. Whole numbers "
                f"stored as floats: pass `batch.{name}.astype(jnp.int32)`."
            )
    if labels.shape != time_and_batch[1:]:
        raise ValueError(
            f"`batch.labels` must be [B] = {time_and_batch[1:]} (B = `batch.inputs.shape[1]`); got shape "
            f"{labels.shape}. A batch-major batch ([B, T, ...]) must be made time-major: "
            "jnp.swapaxes(array, 0, 1)."
        )
    outside = mask.astype(bool) & ((targets < 0) | (targets >= n_out))
    messages = (
        f"`batch.targets` must be class indices in [0, n_out) = [0, {n_out}) at the masked steps (1-based "
        "labels? subtract 1; no target at a step? set the mask False there).",
        "`batch.inputs` must be finite and >= 0: they are presynaptic spikes (or spike probabilities) that "
        "open excitatory conductances, and a negative or infinite conductance has no steady state (each "
        f"step casts them to the network's {jnp.dtype(dtype).name}, where they must be finite too).",
        f"`batch.labels` must be class indices in [0, n_out) = [0, {n_out}), one per trial (the class the "
        "accuracy is scored against; 1-based labels? subtract 1).",
    )
    wrong_labels = (labels < 0) | (labels >= n_out)
    largest = jnp.finfo(dtype).max  # each step casts the inputs to `dtype`: a larger one would be infinite
    if any(isinstance(a, jax.core.Tracer) for a in (outside, inputs, wrong_labels)):
        # One check on the mask, which every loss reads, and a min-reduction of the inputs: the checked array
        # is copied, and a copy of the targets (4 bytes per step and trial, not the mask's 1), of the inputs
        # or a [T, B, n_in] comparison made online learning's compiled memory grow with T.
        valid_inputs = (jnp.min(inputs, initial=0.0) >= 0) & (jnp.max(inputs, initial=0.0) <= largest)
        bad = jnp.stack([jnp.any(outside), ~valid_inputs, jnp.any(wrong_labels)])
        mask = eqx.branched_error_if(mask, jnp.any(bad), jnp.argmax(bad), messages)
        scale = eqx.branched_error_if(loss_scale(mask), jnp.any(bad), jnp.argmax(bad), messages)
        return SimpleBatch(inputs, targets, mask, labels), scale
    if np.any(outside):
        raise ValueError(f"{messages[0]} Got {np.asarray(targets)[np.asarray(outside)][:5].tolist()}.")
    host_inputs = np.asarray(inputs)  # one copy to the host, not one per comparison
    if np.any(invalid := ~((host_inputs >= 0) & (host_inputs <= largest))):
        raise ValueError(f"{messages[1]} Got {host_inputs[invalid][:5].tolist()}.")
    if np.any(wrong_labels):
        raise ValueError(f"{messages[2]} Got {np.asarray(labels)[np.asarray(wrong_labels)][:5].tolist()}.")
    return SimpleBatch(inputs, targets, mask, labels), loss_scale(mask)


def cross_entropy(
    readout: Float[Array, "B n_out"], target: Int[Array, " B"], mask: Bool[Array, " B"]
) -> Array:
    """Softmax cross-entropy of the readout as logits, summed over the masked trials of one step.

    ``target`` holds class indices in ``[0, n_out)`` (`check_batch` checks a batch's); one outside (negative
    included) gives NaN at a masked trial.
    """
    log_p = jax.nn.log_softmax(readout, axis=-1)
    target = target.astype(jnp.int32)
    nll = -jnp.take_along_axis(log_p, target[:, None], axis=-1)[:, 0]
    nll = jnp.where((target >= 0) & (target < readout.shape[-1]), nll, jnp.nan)
    return jnp.sum(jnp.where(mask, nll, 0.0))


def loss_scale(mask: Bool[Array, "T B"]) -> Array:
    """``1 / (number of masked (step, trial) pairs)``, at least one pair.

    Counted step by step: XLA sums a whole ``[T, B]`` bool array through an int32 copy of it, which made
    online learning's memory grow with T (4 bytes per step and trial).
    """

    def add_step(count, row):
        return count + jnp.sum(row, dtype=jnp.int32), None

    count, _ = jax.lax.scan(add_step, jnp.zeros((), jnp.int32), mask, unroll=8)
    return 1.0 / jnp.maximum(count, 1)


def add_evidence(
    evidence: Float[Array, "B n_out"],
    readout: Float[Array, "B n_out"],
    target: Int[Array, " B"],
    mask: Bool[Array, " B"],
    labels: Int[Array, " B"],
) -> Float[Array, "B n_out"]:
    """``evidence`` plus one step's ``readout`` on the trials where the step is a response step.

    The response steps are the masked steps whose target is the trial's label; masked steps with another
    target (the fixation steps a task's ``supervise_fixation`` adds, target 0) enter the loss, not the
    evidence, so the argmax of the summed evidence is the trial's answer.
    """
    respond = mask & (target == labels)
    return evidence + jnp.where(respond[:, None], readout, 0.0)


def accuracy(evidence: Float[Array, "B n_out"], labels: Int[Array, " B"]) -> Array:
    """The fraction of trials whose summed response-step readout (`add_evidence`) is largest for the label.

    Ties go to the lowest class (`jnp.argmax`): a trial without response steps has evidence 0 and scores as
    class 0. Every `diffbrain.tasks` trial has a response window.
    """
    return jnp.mean(jnp.argmax(evidence, axis=-1) == labels)


class SimpleBatch(NamedTuple):
    """A `Batch` made of given arrays (for tests, benchmarks and users without `diffbrain.tasks`)."""

    inputs: Float[Array, "T B n_in"]
    targets: Int[Array, "T B"]
    mask: Bool[Array, "T B"]
    labels: Int[Array, " B"]
