"""Backpropagation through time, optionally rematerialising each step (`jax.checkpoint`)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .loss import Batch, StepLoss, add_evidence, check_batch, cross_entropy, loss_scale
from .network import EINetwork, trainable


def bptt_with_evidence(
    net: EINetwork, batch: Batch, loss_fn: StepLoss = cross_entropy, checkpoint: bool = False
) -> tuple[Array, Float[Array, "B n_out"], EINetwork]:
    """`bptt` that also returns the readout summed over each trial's response steps (for the accuracy).

    The response steps are the masked steps whose target is the trial's label (`add_evidence`).
    """
    batch = check_batch(batch, net.w_in.shape[0], net.w_out.shape[1], net.w_in.dtype)
    params, static = eqx.partition(net, trainable(net))
    scale = loss_scale(batch.mask)

    def run(params):
        net = eqx.combine(params, static)
        # the magnitudes once per batch, not per step (their gradient is then summed over steps first)
        w_in, w_rec = net.weights()
        weights = (w_in, net.recurrent_operator(w_rec) if net.sparse else w_rec)

        def body(carry, inputs):
            state, loss, evidence = carry
            x, target, mask = inputs
            state, (_, readout) = net.step(state, x, weights)
            loss = loss + scale * loss_fn(readout, target, mask)
            evidence = add_evidence(evidence, readout, target, mask, batch.labels)
            return (state, loss, evidence), None

        if checkpoint:
            body = jax.checkpoint(body)
        batch_size = batch.inputs.shape[1]
        evidence = jnp.zeros((batch_size, net.w_out.shape[1]), net.w_out.dtype)
        init = (net.init_state(batch_size), jnp.zeros((), net.w_out.dtype), evidence)
        (_, loss, evidence), _ = jax.lax.scan(body, init, (batch.inputs, batch.targets, batch.mask))
        return loss, evidence

    (loss, evidence), grads = jax.value_and_grad(run, has_aux=True)(params)
    return loss, evidence, grads


def bptt(
    net: EINetwork, batch: Batch, loss_fn: StepLoss = cross_entropy, checkpoint: bool = False
) -> tuple[Array, EINetwork]:
    """The loss of ``batch`` and its exact gradient by backpropagation through time.

    Memory grows linearly with the number of steps T: the backward pass needs every step's residuals.
    ``checkpoint=True`` stores only each step's carry (the network state) and recomputes the step in the
    backward pass — less memory for about one more forward pass, still O(T).

    Args:
        net: the network.
        batch: inputs [T, B, n_in], targets [T, B] (class indices in [0, n_out) at the masked steps),
            mask [T, B], labels [B] (see `Batch`; checked by `diffbrain.learn.loss.check_batch`, inputs
            cast to the network's float dtype).
        loss_fn: the per-step loss (`StepLoss`); the total is normalised by the masked count.
        checkpoint: rematerialise each step in the backward pass.

    Returns:
        ``(loss, grads)``: grads has the network's structure, with the trainable leaves (`trainable`) set
        and ``None`` elsewhere — the same PyTree `online` returns.
    """
    loss, _, grads = bptt_with_evidence(net, batch, loss_fn, checkpoint)
    return loss, grads
