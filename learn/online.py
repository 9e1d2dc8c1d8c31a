r"""Online gradients with eligibility traces: D-RTRL and ES-D-RTRL, memory independent of the sequence length.

Both algorithms run forward only, in one `lax.scan` whose carry holds the network state, the traces and
the gradient accumulators — nothing is stored per step, so memory does not grow with T.

Notation, per step ``t``: ``h_t`` is a neuron's hidden state (S variables: the neuron model's own, its two
conductances and the readout-filtered spikes), ``u_t`` its conductance increments, ``x_t`` the presynaptic
activity of a weight (input spikes, or recurrent spikes of the previous step). From the network's
`EINetwork.cell`, JAX computes per neuron

* ``D_t = ∂h_t/∂h_{t−1}`` (S × S, the own-state Jacobian), and
* ``D_f,t = ∂h_t/∂u_t`` (S, one for the excitatory and one for the inhibitory increment),

as forward-mode derivatives: the cell is elementwise across neurons, so one JVP with the tangent "1 on
state variable k, for every neuron" yields column k of every neuron's Jacobian at once — `jax.jacfwd` of
the per-neuron step, vmapped over neurons, at the cost of S + 2 JVPs of the population. No per-model
formula is written by hand.

The learning signal ``L_t = ∂ℓ_t/∂h_t`` is the instantaneous loss gradient; with the readout's leak inside
``h`` (see `EINetwork`) it is exact for the direct path. The recurrent paths (spikes of other neurons) are
dropped, which is what makes the traces local.

* D-RTRL (diagonal RTRL) keeps one S-vector per weight: ``ε_t = D_t ε_{t−1} + D_f,t x_t``, and
  ``∇W += L_t · ε_t``. Memory O(#weights · S · B). Exact when there is no recurrence.
* ES-D-RTRL factorises ``ε`` into a presynaptic and a postsynaptic trace:
  ``ε_x = α ε_x + x`` (per input) and ``ε_f = α D_t ε_f + (1 − α) D_f,t`` (per neuron), and
  ``∇W += ε_x ⊗ (L_t · ε_f) / (1 − α^{t+1})``. Memory O(n_in + n_rec) per trial. ``ε_f`` is an
  exponential moving average started at zero, so the correction is Adam's ``1 − α^{t+1}`` (written
  ``1 − (1 − α)^{t+1}`` when α denotes the average's weight rather than its decay).

The readout weights get their exact online gradient, ``∇W_out += z̄_tᵀ ∂ℓ_t/∂y_t``.

Which to choose: D-RTRL learns what BPTT learns when the memory lives in a neuron's own slow state. On
evidence accumulation (2.2 s trials at dt 2 ms, 50 neurons, batch 16, Adam 1e-2), where cues are held
across the 1 s delay by the slow adaptation current, D-RTRL's accuracy per 10 steps followed BPTT's
(0.91 after 60 steps for both). ES-D-RTRL stayed at chance (0.50–0.66 for 300 steps) although its
gradient's cosine to BPTT's on one batch is 0.96–0.998 per weight group, at the start and after
training (D-RTRL: 1.000). The part it gets wrong is the part that solves the task: per neuron, the
input gradient of the left-cue channels minus that of the right-cue channels has cosine −0.76 to
BPTT's (D-RTRL 1.00). The rank-one trace multiplies a presynaptic count of old cue spikes by a
postsynaptic sensitivity dominated by recent input (more drive, more spikes) and so gets the sign of
the delayed path wrong (more drive at a cue, more adaptation, fewer spikes at recall). Longer traces
(300 ms, 1 s) did not help. Use ES-D-RTRL where the memory is short compared with its trace time
(`TRACE_TIME`), D-RTRL where it lives in slow neuronal state.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .loss import Batch, StepLoss, cross_entropy, loss_scale
from .network import EINetwork, trainable

ALGORITHMS = ("d-rtrl", "es-d-rtrl")


def _jacobians(net: EINetwork, h: Array, u_e: Array, u_i: Array) -> tuple[Array, Array, Array, Array, Array]:
    """``(h_new, spikes, D, D_fe, D_fi)`` for stacked states ``h`` [B, n, S].

    Shapes: h_new [B, n, S], spikes [B, n], D [B, n, S, S] (``D[..., s, r] = ∂h_new_s/∂h_r``),
    D_fe and D_fi [B, n, S].
    """
    n_state = h.shape[-1]

    def cell(h, u_e, u_i):
        hidden, spikes = net.cell(tuple(h[..., k] for k in range(n_state)), u_e, u_i)
        return jnp.stack(hidden, axis=-1), spikes

    (h_new, spikes), linear = jax.linearize(cell, h, u_e, u_i)
    basis = jnp.broadcast_to(jnp.eye(n_state, dtype=h.dtype)[:, None, None, :], (n_state, *h.shape))
    tangents_h = jnp.concatenate([basis, jnp.zeros((2, *h.shape), h.dtype)])
    ones, zeros = jnp.ones_like(u_e), jnp.zeros_like(u_e)
    tangents_e = jnp.stack([zeros] * n_state + [ones, zeros])
    tangents_i = jnp.stack([zeros] * n_state + [zeros, ones])
    columns, _ = jax.vmap(linear)(tangents_h, tangents_e, tangents_i)  # [S + 2, B, n, S]
    D = jnp.moveaxis(columns[:n_state], 0, -1)
    return h_new, spikes, D, columns[n_state], columns[n_state + 1]


TRACE_TIME = 100.0
"""ES-D-RTRL's default trace time constant, ms: between the membrane's (20 ms) and the adaptation's
(200 ms). Shorter traces forget the slow state variables: on the recurrent test network (60 ALIF, 40
steps, surrogate gain γ = 0.3) the cosine to BPTT of the input weights' gradient was 0.45 at
α = e^{−dt/τ_syn} (10 ms), 0.69 at 20 ms, 0.85 at 50 ms and 0.91 at 200 ms."""


def default_decay(net: EINetwork) -> float:
    """ES-D-RTRL's trace decay α per step, ``e^{−dt/TRACE_TIME}``."""
    return math.exp(-net.dt / TRACE_TIME)


def online_with_evidence(
    net: EINetwork,
    batch: Batch,
    loss_fn: StepLoss = cross_entropy,
    algorithm: str = "es-d-rtrl",
    decay: float | None = None,
) -> tuple[Array, Float[Array, "B n_out"], EINetwork]:
    """`online` that also returns the readout summed over each trial's masked steps (for the accuracy)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"`algorithm` must be one of {ALGORITHMS}, got {algorithm!r}.")
    params, static = eqx.partition(net, trainable(net))

    def effective(params):
        net = eqx.combine(params, static)
        return (*net.weights(), net.w_out, net.b_out)

    (w_in, w_rec, w_out, b_out), pullback = jax.vjp(effective, params)
    weights = (w_in, w_rec)
    scale = loss_scale(batch.mask)
    alpha = default_decay(net) if decay is None else float(decay)
    batch_size, n_in = batch.inputs.shape[1:]
    state = net.init_state(batch_size)
    h0 = jnp.stack(state.hidden, axis=-1)
    n_rec, n_state = h0.shape[1:]
    dtype = h0.dtype
    exc = net.is_excitatory

    def step_loss(h, w_out, b_out, target, mask):
        readout = h[..., -1] @ w_out + b_out
        return scale * loss_fn(readout, target, mask), readout

    if algorithm == "d-rtrl":
        traces = (
            jnp.zeros((n_state, batch_size, n_in, n_rec), dtype),
            jnp.zeros((n_state, batch_size, n_rec, n_rec), dtype),
        )
    else:
        traces = (
            jnp.zeros((batch_size, n_in), dtype),
            jnp.zeros((batch_size, n_rec), dtype),
            jnp.zeros((batch_size, n_rec, n_state), dtype),
            jnp.zeros((batch_size, n_rec, n_state), dtype),
        )

    def body(carry, inputs):
        h, spikes, traces, grads, loss, evidence = carry
        t, x, target, mask = inputs
        u_e, u_i = net.synaptic_input(x, spikes, weights)
        h, new_spikes, D, D_fe, D_fi = _jacobians(net, h, u_e, u_i)
        (step, readout), (signal, g_out, g_b) = jax.value_and_grad(
            step_loss, argnums=(0, 1, 2), has_aux=True
        )(h, w_out, b_out, target, mask)
        g_in, g_rec, g_w_out, g_b_out = grads
        if algorithm == "d-rtrl":
            # Traces are [S, B, pre, post]; the S × S products are written out per state variable, which
            # XLA runs ~4x faster than an einsum over tiny (S × S) matrices.
            D_s = jnp.moveaxis(D, (2, 3), (0, 1))[:, :, :, None, :]  # [S, S, B, 1, post]
            fe, fi = (jnp.moveaxis(d, -1, 0)[:, :, None, :] for d in (D_fe, D_fi))  # [S, B, 1, post]
            exc_spikes = (spikes * exc)[:, :, None]
            inh_spikes = (spikes * (1 - exc))[:, :, None]
            eps_in, eps_rec = traces
            eps_in = jnp.stack(
                [
                    sum(D_s[s, r] * eps_in[r] for r in range(n_state)) + fe[s] * x[:, :, None]
                    for s in range(n_state)
                ]
            )
            eps_rec = jnp.stack(
                [
                    sum(D_s[s, r] * eps_rec[r] for r in range(n_state))
                    + fe[s] * exc_spikes
                    + fi[s] * inh_spikes
                    for s in range(n_state)
                ]
            )
            learning_signal = jnp.moveaxis(signal, -1, 0)[:, :, None, :]  # [S, B, 1, post]
            g_in = g_in + jnp.sum(learning_signal * eps_in, axis=(0, 1))
            g_rec = g_rec + jnp.sum(learning_signal * eps_rec, axis=(0, 1))
            traces = (eps_in, eps_rec)
        else:
            x_in, x_rec, f_e, f_i = traces
            x_in = alpha * x_in + x
            x_rec = alpha * x_rec + spikes
            f_e = alpha * jnp.einsum("bjsr,bjr->bjs", D, f_e) + (1 - alpha) * D_fe
            f_i = alpha * jnp.einsum("bjsr,bjr->bjs", D, f_i) + (1 - alpha) * D_fi
            correction = 1 - alpha ** (t + 1)
            m_e = jnp.sum(signal * f_e, axis=-1) / correction
            m_i = jnp.sum(signal * f_i, axis=-1) / correction
            g_in = g_in + x_in.T @ m_e
            g_rec = g_rec + jnp.where(exc[:, None], x_rec.T @ m_e, x_rec.T @ m_i)
            traces = (x_in, x_rec, f_e, f_i)
        grads = (g_in, g_rec, g_w_out + g_out, g_b_out + g_b)
        evidence = evidence + jnp.where(mask[:, None], readout, 0.0)
        return (h, new_spikes, traces, grads, loss + step, evidence), None

    grads = jax.tree.map(jnp.zeros_like, (w_in, w_rec, w_out, b_out))
    evidence = jnp.zeros((batch_size, w_out.shape[1]), dtype)
    init = (h0, state.spikes, traces, grads, jnp.zeros((), dtype), evidence)
    steps = jnp.arange(batch.inputs.shape[0], dtype=dtype)
    (_, _, _, grads, loss, evidence), _ = jax.lax.scan(
        body, init, (steps, batch.inputs, batch.targets, batch.mask)
    )
    (grads,) = pullback(grads)
    return loss, evidence, grads


def online(
    net: EINetwork,
    batch: Batch,
    loss_fn: StepLoss = cross_entropy,
    algorithm: str = "es-d-rtrl",
    decay: float | None = None,
) -> tuple[Array, EINetwork]:
    """The loss of ``batch`` and an online approximation of its gradient, in memory independent of T.

    Args:
        net: the network.
        batch: inputs [T, B, n_in], targets [T, B], mask [T, B] (see `diffbrain.learn.loss.Batch`).
        loss_fn: the per-step loss (`StepLoss`); the total is normalised by the masked count.
        algorithm: ``"d-rtrl"`` (a trace per weight) or ``"es-d-rtrl"`` (rank-one traces).
        decay: ES-D-RTRL's trace decay α per step (default `default_decay`: ``e^{−dt/100 ms}``).

    Returns:
        ``(loss, grads)`` with the same structure as `bptt`'s: the weight parameters' gradients through
        the Dale's-law magnitudes, the readout's exact gradient, ``None`` for fixed leaves.
    """
    loss, _, grads = online_with_evidence(net, batch, loss_fn, algorithm, decay)
    return loss, grads
