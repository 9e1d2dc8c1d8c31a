r"""Online gradients with eligibility traces: D-RTRL and ES-D-RTRL, memory independent of the sequence length.

Both algorithms run forward only, in one `lax.scan` whose carry holds the network state, the traces and
the gradient accumulators — nothing is stored per step, so memory does not grow with T (beyond the
batch itself and the copy of its mask, 1 byte per step and trial, that `check_batch`'s traced check makes).

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
* ES-D-RTRL factorises ``ε`` into presynaptic and postsynaptic traces, memory O(S·n_in + S²·n_rec) per trial
  (``timescales="single"``: O(n_in + S·n_rec)). By default (``timescales="per-state"``, `per_state_update`)
  with one presynaptic trace per state variable, decaying as that state does (``ε_x^(k) = a_k ε_x^(k) + x``,
  ``a_k`` the largest diagonal entry of ``D`` at rest, `state_decays`), each with its postsynaptic S-vector;
  what flows from a fast into a slow state (a cue's drive into the adaptation current) is handed to the slow
  state's trace, so the eligibility remembers *which* inputs fed the slow state when it later acts through the
  membrane on the readout. Exact for linear, diagonal state dynamics without recurrence when every neuron
  shares the state time constants: the traces are shared by all postsynaptic neurons, so per-neuron time
  constants (the default network's adaptation τ_a of 200 and 2,000 ms) are traced with the slowest decay
  (0.9 % off for two neurons of τ_a 200 and 2,000 ms in that linear case).
* ``timescales="single"`` is the original rank-one form: ``ε_x = α ε_x + x`` (per input) and
  ``ε_f = α D_t ε_f + (1 − α) D_f,t`` (per neuron), ``∇W += ε_x ⊗ (L_t · ε_f) / (1 − α^{t+1})``.
  ``ε_f`` is an exponential moving average started at zero, so the correction is Adam's ``1 − α^{t+1}``
  (written ``1 − (1 − α)^{t+1}`` when α denotes the average's weight rather than its decay).

The readout weights get their exact online gradient, ``∇W_out += z̄_tᵀ ∂ℓ_t/∂y_t``.

Measured on evidence accumulation (2.2 s trials at dt 2 ms, 50 neurons, batch 16, Adam 1e-2), where cues are
held across the 1 s delay by the slow adaptation current (τ_a 2 s): D-RTRL's accuracy per 10 steps followed
BPTT's (0.91 after 60 steps for both). The single-trace ES-D-RTRL stayed at chance (0.50–0.66 for 300 steps)
although its gradient's cosine to BPTT's on one batch is 0.96–0.99 per weight group: per neuron, the input
gradient of the left-cue channels minus that of the right-cue channels — the part that solves the task — has
cosine −0.58 to −0.76 to BPTT's (D-RTRL 1.00). One trace multiplies a presynaptic count of old cue spikes by a
postsynaptic sensitivity dominated by recent input and gets the sign of the delayed path wrong (more drive at
a cue, more adaptation, fewer spikes at recall); longer traces (300 ms, 1 s) did not help. Per state variable,
that cosine is +0.65 on the same batch (weights key 0, batch key 1, float32; group cosines 0.89–0.98; in
float64, where a few spikes flip, +0.87 with E→all and I→all at 0.84–0.85) and +0.87 on the network it trained
(the single trace's −0.65, D-RTRL's 0.99), and training reached 0.93 accuracy per 10 steps after 60 steps,
0.89–0.99 thereafter and 0.97 over the last 10 of 300 (seed 0, `diffbrain train --method es-d-rtrl --dt 2
--n-rec 50 --batch-size 16 --lr 1e-2`). The price is S presynaptic traces and S postsynaptic S-vectors per
neuron (S = 5 here), of which the factor carries only the 22 entries that can be
non-zero (`per_state_support`), and S JVPs per step for the Jacobians, not S + 2 (the conductance columns of
``D`` are ``e^{−dt/τ_syn} D_f``). CPU time per step over BPTT's, evidence accumulation at dt 2 ms (T = 1,100,
batch 16), side by side on the 2-core CPU at load 7–10: 1.02× at 200 neurons and 1.80× at 50 (the dense
factor with all S + 2 JVPs before: 1.73× and 2.76×; same gradient to 2·10⁻⁷ in float32, 2·10⁻¹⁶ in
float64). Memory stays flat (2.1 MiB of compiled temporaries at T = 100, 2.3 MiB at 10,000, 200 neurons,
batch 16; BPTT 11 → 980 MiB).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .loss import Batch, StepLoss, add_evidence, checked_batch_and_scale, cross_entropy
from .network import EINetwork, presynaptic_rows, trainable

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
    # The increments enter only through g ← c·g + u (`EINetwork.cell`), so D's conductance columns are
    # c·D_f: one JVP per other state variable and per increment, not one per state as well.
    g_e, g_i = n_state - 3, n_state - 2
    others = [k for k in range(n_state) if k not in (g_e, g_i)]
    basis = jnp.eye(n_state, dtype=h.dtype)[jnp.array(others)][:, None, None, :]
    tangents_h = jnp.concatenate(
        [jnp.broadcast_to(basis, (len(others), *h.shape)), jnp.zeros((2, *h.shape), h.dtype)]
    )
    ones, zeros = jnp.ones_like(u_e), jnp.zeros_like(u_e)
    tangents_e = jnp.stack([zeros] * len(others) + [ones, zeros])
    tangents_i = jnp.stack([zeros] * len(others) + [zeros, ones])
    columns, _ = jax.vmap(linear)(tangents_h, tangents_e, tangents_i)  # [S, B, n, S]
    D_fe, D_fi = columns[-2], columns[-1]
    c = net.conductance_decay()
    by_state = dict(zip(others, columns[: len(others)], strict=True)) | {g_e: c * D_fe, g_i: c * D_fi}
    D = jnp.stack([by_state[k] for k in range(n_state)], axis=-1)
    return h_new, spikes, D, D_fe, D_fi


TRACE_TIME = 100.0
"""The trace time constant of ES-D-RTRL with ``timescales="single"``, ms: between the membrane's (20 ms) and
the adaptation's (200 ms). Shorter traces forget the slow state variables: on the recurrent test network (60
ALIF, 40 steps, surrogate gain γ = 0.3) the cosine to BPTT of the input weights' gradient was 0.45 at α =
e^{−dt/τ_syn} (10 ms), 0.69 at 20 ms, 0.85 at 50 ms and 0.91 at 200 ms."""


TIMESCALES = ("per-state", "single")


def state_decays(D: Float[Array, "B n S S"]) -> Float[Array, " S"]:
    """The per-step decay of each state variable: the largest diagonal entry of ``D`` over batch and
    neurons (the slowest neuron sets it), clipped to [10⁻³, 1 − 10⁻⁶]."""
    diagonal = jnp.diagonal(D, axis1=-2, axis2=-1).reshape(-1, D.shape[-1])
    return jnp.clip(jnp.max(diagonal, axis=0), 1e-3, 1.0 - 1e-6)


def per_state_update(
    decays: Float[Array, " S"],
    t: Float[Array, ""],
    D: Float[Array, "*batch S S"],
    D_f: Float[Array, "*batch S"],
    f: Float[Array, "S S *batch"],
    pattern: tuple[tuple[bool, ...], ...] | None = None,
) -> Float[Array, "S S *batch"]:
    r"""One step of ES-D-RTRL's postsynaptic traces with one presynaptic timescale per state variable.

    The eligibility of a weight is ``Σ_m ε_x^(m) ⊗ f[:, m]``: ``ε_x^(m) = a_m ε_x^(m) + x`` with ``a_m =
    decays[m]``, and ``f[:, m]`` (an S-vector per neuron; ``f[s, m]`` is state ``s``) the postsynaptic
    factor of the part of the trace that remembers its input over state ``m``'s time. With ``k_m(t) =
    (1 − a_m)/(1 − a_m^{t+1})`` (an input count of ``ε_x^(m)``: ``x_t ≈ k_m ε_x^(m)_t``):

    1. propagate: ``G[:, m] = D f[:, m] / a_m`` (``ε_x^(m)_{t−1} = (ε_x^(m)_t − x_t)/a_m``);
    2. inject: ``f[:, m] = (1 − k_m) G[:, m] + k_m D_f,m e_m`` (the new input enters the trace of the
       state it drives, with that state's presynaptic timescale);
    3. hand over: a component ``s`` of ``f[:, m]`` whose state is slower (``a_s > a_m``) moves to
       ``f[s, s]``, scaled by ``k_s/k_m`` — what flows into a slow state keeps the slow state's memory of
       the input even when it later flows back into fast states (adaptation → membrane → readout).

    Exact when ``D`` is diagonal and constant with ``a_m = D_mm`` and ``D_f`` is constant (one neuron, no
    recurrence, linear state variables); one shared timescale cannot be, whatever its decay.

    Shapes: ``D[..., s, r] = ∂h_s/∂h_r``; ``f`` is laid out state first, rung second, then the batch axes
    (the S × S products are written out per state variable, as D-RTRL's are). ``pattern`` (static,
    ``pattern[s][r]`` false where ``D[..., s, r]`` is zero by construction, `jacobian_pattern`) skips the
    products with structural zeros; ``None`` multiplies every entry.
    """
    n_state = decays.shape[0]
    nonzero = pattern or ((True,) * n_state,) * n_state
    D = jnp.moveaxis(D, (-2, -1), (0, 1))  # [S, S, *batch]
    columns = [[D[s, r] if nonzero[s][r] else None for r in range(n_state)] for s in range(n_state)]
    entries = {(s, m): f[s, m] for s in range(n_state) for m in range(n_state)}
    new = per_state_entries(decays, t, columns, list(jnp.moveaxis(D_f, -1, 0)), entries)
    return jnp.stack([jnp.stack([new[s, m] for m in range(n_state)]) for s in range(n_state)])


def per_state_support(
    pattern: tuple[tuple[bool, ...], ...], injected: tuple[bool, ...]
) -> tuple[tuple[int, int], ...]:
    """The ``(state, rung)`` entries of ES-D-RTRL's postsynaptic factor ``f`` that can be non-zero, given
    where ``D`` can be (``pattern``) and which states the input drives directly (``injected[s]``: ``D_f``
    can be non-zero at ``s``): the input enters rung ``s`` at state ``s``, spreads along ``D`` within its
    rung and may be handed to rung ``s'`` at any state ``s'`` it reaches. The other entries stay zero."""
    n_state = len(injected)
    support = {(s, s) for s in range(n_state) if injected[s]}
    while True:
        grown = support | {
            entry for r, m in support for s in range(n_state) if pattern[s][r] for entry in ((s, m), (s, s))
        }
        if grown == support:
            return tuple(sorted(support))
        support = grown


def per_state_entries(
    decays: Float[Array, " S"],
    t: Float[Array, ""],
    D: list[list[Array | None]],
    D_f: list[Array | None],
    f: dict[tuple[int, int], Array],
) -> dict[tuple[int, int], Array]:
    """`per_state_update` on the entries ``f[(state, rung)]`` that can be non-zero (`per_state_support`),
    each ``[*batch]``; ``D[s][r]`` and ``D_f[s]`` are ``None`` where zero by construction.

    Written out entry by entry so XLA fuses the step into a few loops and skips the structural zeros: on
    the task network 22 of the 50 entries of the E and I factors are live. With the dense ``[S, S, 2, B,
    n]`` factor this update was 1.7× BPTT's whole step in CPU time at 50 neurons (of ES-D-RTRL's 2.8×).
    """
    n_state = decays.shape[0]
    k = (1 - decays) / (1 - decays ** (t + 1))
    faster = (decays[None, :] < decays[:, None]).astype(decays.dtype)  # [state s, rung m]
    propagated = {}  # ε_x^(m)_{t−1} in units of ε_x^(m)_t
    for s, m in f:
        terms = [D[s][r] * f[r, m] for r in range(n_state) if D[s][r] is not None and (r, m) in f]
        if terms:
            propagated[s, m] = sum(terms[1:], terms[0]) * ((1 - k[m]) / decays[m])
    new = {}
    for s, m in f:
        own = propagated.get((s, m), 0.0)
        if m != s:  # rungs faster than state s hand their component s over to rung s
            new[s, m] = (1 - faster[s, m]) * own
            continue
        handed = [
            faster[s, r] / k[r] * propagated[s, r] for r in range(n_state) if r != s and (s, r) in propagated
        ]
        handed += [D_f[s]] if D_f[s] is not None else []
        new[s, s] = own + k[s] * sum(handed[1:], handed[0]) if handed else own
    return {entry: jnp.broadcast_to(value, f[entry].shape) for entry, value in new.items()}


def jacobian_pattern(n_state: int) -> tuple[tuple[bool, ...], ...]:
    """Where `EINetwork.cell`'s own-state Jacobian ``D`` can be non-zero, for S = ``n_state`` states ordered
    (neuron model's own variables, g_e, g_i, filtered spikes): each conductance decays on its own
    (``g_new = e^{−dt/τ_syn} g + u``), and the filtered spikes drive no other state. Whatever the neuron
    model; `tests/learn/test_online_timescales.py` checks it against the computed ``D``."""
    g_e, g_i, filtered = n_state - 3, n_state - 2, n_state - 1
    return tuple(
        tuple(s == r or (s not in (g_e, g_i) and r != filtered) for r in range(n_state))
        for s in range(n_state)
    )


def injection_pattern(n_state: int) -> tuple[tuple[bool, ...], tuple[bool, ...]]:
    """Where ``D_fe`` and ``D_fi`` (`_jacobians`) can be non-zero, for `jacobian_pattern`'s state order: an
    excitatory increment enters g_e alone (``g_e ← e^{−dt/τ_syn} g_e + u_e``) and reaches the same step's
    states as g_e does; likewise inhibitory ones through g_i."""
    pattern = jacobian_pattern(n_state)
    return tuple(tuple(s == g or pattern[s][g] for s in range(n_state)) for g in (n_state - 3, n_state - 2))


def default_decay(net: EINetwork) -> float:
    """The trace decay α per step of ES-D-RTRL with ``timescales="single"``, ``e^{−dt/TRACE_TIME}``."""
    return math.exp(-net.dt / TRACE_TIME)


def online_with_evidence(
    net: EINetwork,
    batch: Batch,
    loss_fn: StepLoss = cross_entropy,
    algorithm: str = "es-d-rtrl",
    decay: float | None = None,
    timescales: str = "per-state",
) -> tuple[Array, Float[Array, "B n_out"], EINetwork]:
    """`online` that also returns the readout summed over each trial's response steps (for the accuracy).

    As in `diffbrain.learn.bptt.bptt_with_evidence`: the masked steps whose target is the trial's label.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"`algorithm` must be one of {ALGORITHMS}, got {algorithm!r}.")
    if timescales not in TIMESCALES:
        raise ValueError(f"`timescales` must be one of {TIMESCALES}, got {timescales!r}.")
    if timescales != TIMESCALES[0] and algorithm != "es-d-rtrl":
        raise ValueError(
            f"`timescales` chooses ES-D-RTRL's presynaptic traces; {algorithm!r} has none (a trace per "
            f"weight): leave timescales at {TIMESCALES[0]!r} or use algorithm='es-d-rtrl'."
        )
    if decay is not None and (algorithm != "es-d-rtrl" or timescales != "single"):
        raise ValueError("`decay` is the trace decay of ES-D-RTRL with timescales='single'; leave it None.")
    if decay is not None and not 0.0 <= decay < 1.0:
        raise ValueError(
            f"`decay` must be in [0, 1) (the traces' factor per step; 1 never forgets and divides by zero), "
            f"got {decay}."
        )
    batch, scale = checked_batch_and_scale(batch, net.w_in.shape[0], net.w_out.shape[1], net.w_in.dtype)
    per_state = algorithm == "es-d-rtrl" and timescales == "per-state"
    params, static = eqx.partition(net, trainable(net))

    def effective(params):
        net = eqx.combine(params, static)
        return (*net.weights(), net.w_out, net.b_out)

    (w_in, w_rec, w_out, b_out), pullback = jax.vjp(effective, params)
    weights = (w_in, w_rec)
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

    if net.sparse:  # per-synapse quantities of the recurrent weights: [..., B, nnz]
        presynaptic, postsynaptic = presynaptic_rows(net.w_rec), net.w_rec.indices

        def at_pre(v):
            return v[..., presynaptic]

        def at_post(v):
            return v[..., postsynaptic]
    else:  # [..., B, pre, post]

        def at_pre(v):
            return v[..., :, None]

        def at_post(v):
            return v[..., None, :]

    if algorithm == "d-rtrl":
        traces = (
            jnp.zeros((n_state, batch_size, n_in, n_rec), dtype),
            jnp.zeros((n_state, batch_size, *w_rec.shape), dtype),
        )
    elif per_state:
        rest = _jacobians(net, h0, jnp.zeros_like(h0[..., 0]), jnp.zeros_like(h0[..., 0]))[2]
        decays = state_decays(rest)
        pattern, filtered = jacobian_pattern(n_state), n_state - 1
        injected = injection_pattern(n_state)
        traces = (
            jnp.zeros((n_state, batch_size, n_in), dtype),
            jnp.zeros((n_state, batch_size, n_rec), dtype),
            tuple(  # the E and I factors' live (state, rung) entries, each [B, post]
                {entry: jnp.zeros((batch_size, n_rec), dtype) for entry in per_state_support(pattern, on)}
                for on in injected
            ),
        )
    else:
        traces = (
            jnp.zeros((batch_size, n_in), dtype),
            jnp.zeros((batch_size, n_rec), dtype),
            jnp.zeros((batch_size, n_rec, n_state), dtype),
            jnp.zeros((batch_size, n_rec, n_state), dtype),
        )

    def body(carry, inputs):
        t, h, spikes, traces, grads, loss, evidence = carry
        x, target, mask = inputs
        x = x.astype(net.w_in.dtype)  # one step at a time: a cast of all T steps would be a [T, B, n_in] copy
        u_e, u_i = net.synaptic_input(x, spikes, weights)
        h, new_spikes, D, D_fe, D_fi = _jacobians(net, h, u_e, u_i)
        (step, readout), (signal, g_out, g_b) = jax.value_and_grad(
            step_loss, argnums=(0, 1, 2), has_aux=True
        )(h, w_out, b_out, target, mask)
        g_in, g_rec, g_w_out, g_b_out = grads
        if algorithm == "d-rtrl":
            # Input traces are [S, B, pre, post], recurrent ones the same or [S, B, nnz] (sparse); the S × S
            # products are written out per state variable, which XLA runs ~4x faster than an einsum over
            # tiny (S × S) matrices.
            D_s = jnp.moveaxis(D, (2, 3), (0, 1))  # [S, S, B, post]
            fe, fi = (jnp.moveaxis(d, -1, 0) for d in (D_fe, D_fi))  # [S, B, post]
            learning_signal = jnp.moveaxis(signal, -1, 0)  # [S, B, post]
            nonzero = jacobian_pattern(n_state)

            def propagate(D_s, eps, drive):
                return jnp.stack(
                    [
                        sum(D_s[s, r] * eps[r] for r in range(n_state) if nonzero[s][r]) + drive(s)
                        for s in range(n_state)
                    ]
                )

            eps_in, eps_rec = traces
            fe_post, fi_post = at_post(fe), at_post(fi)
            exc_spikes, inh_spikes = at_pre(spikes * exc), at_pre(spikes * (1 - exc))
            eps_in = propagate(D_s[..., None, :], eps_in, lambda s: fe[s][:, None, :] * x[:, :, None])
            eps_rec = propagate(
                at_post(D_s), eps_rec, lambda s: fe_post[s] * exc_spikes + fi_post[s] * inh_spikes
            )
            g_in = g_in + jnp.sum(learning_signal[..., None, :] * eps_in, axis=(0, 1))
            g_rec = g_rec + jnp.sum(at_post(learning_signal) * eps_rec, axis=(0, 1))
            traces = (eps_in, eps_rec)
        elif per_state:
            x_in, x_rec, f = traces
            x_in = decays[:, None, None] * x_in + x
            x_rec = decays[:, None, None] * x_rec + spikes
            columns = [
                [D[..., s, r] if pattern[s][r] else None for r in range(n_state)] for s in range(n_state)
            ]
            f = tuple(
                per_state_entries(
                    decays, t, columns, [d[..., s] if on[s] else None for s in range(n_state)], f_x
                )
                for d, on, f_x in zip((D_fe, D_fi), injected, f, strict=True)
            )
            # The loss reads the filtered spikes alone: the learning signal's other components are zero.
            readout_signal = signal[..., -1]  # [B, post]

            def accumulate(g_in, g_rec):
                zeros = jnp.zeros_like(readout_signal)
                m_e, m_i = (  # [S · B, post], rung-major as the presynaptic traces
                    jnp.concatenate(
                        [
                            readout_signal * f_x[filtered, m] if (filtered, m) in f_x else zeros
                            for m in range(n_state)
                        ]
                    )
                    for f_x in f
                )
                pre_in, pre_rec = x_in.reshape(-1, n_in), x_rec.reshape(-1, n_rec)  # [S · B, pre]
                return g_in + pre_in.T @ m_e, g_rec + net.recurrent_outer(pre_rec, m_e, m_i)

            # Steps without a learning signal (outside the loss window) add nothing: skip their products.
            g_in, g_rec = jax.lax.cond(jnp.any(readout_signal != 0), accumulate, lambda *g: g, g_in, g_rec)
            traces = (x_in, x_rec, f)
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
            g_rec = g_rec + net.recurrent_outer(x_rec, m_e, m_i)
            traces = (x_in, x_rec, f_e, f_i)
        grads = (g_in, g_rec, g_w_out + g_out, g_b_out + g_b)
        evidence = add_evidence(evidence, readout, target, mask, batch.labels)
        return (t + 1, h, new_spikes, traces, grads, loss + step, evidence), None

    grads = jax.tree.map(jnp.zeros_like, (w_in, w_rec, w_out, b_out))
    evidence = jnp.zeros((batch_size, w_out.shape[1]), dtype)
    # the step index in the carry: a [T] array of them would make memory grow with T
    init = (jnp.zeros((), dtype), h0, state.spikes, traces, grads, jnp.zeros((), dtype), evidence)
    (_, _, _, _, grads, loss, evidence), _ = jax.lax.scan(
        body, init, (batch.inputs, batch.targets, batch.mask)
    )
    (grads,) = pullback(grads)
    return loss, evidence, grads


def online(
    net: EINetwork,
    batch: Batch,
    loss_fn: StepLoss = cross_entropy,
    algorithm: str = "es-d-rtrl",
    decay: float | None = None,
    timescales: str = "per-state",
) -> tuple[Array, EINetwork]:
    """The loss of ``batch`` and an online approximation of its gradient, in memory independent of T.

    Args:
        net: the network.
        batch: inputs [T, B, n_in], targets [T, B] (class indices in [0, n_out) at the masked steps),
            mask [T, B], labels [B] (see `diffbrain.learn.loss.Batch`; checked by
            `diffbrain.learn.loss.check_batch`, inputs cast to the network's float dtype).
        loss_fn: the per-step loss (`StepLoss`); the total is normalised by the masked count.
        algorithm: ``"d-rtrl"`` (a trace per weight) or ``"es-d-rtrl"`` (factored traces: S presynaptic
            traces per input with the default ``timescales="per-state"``, a rank-S product; one, a rank-one
            product, with ``"single"``).
        decay: the trace decay α per step of ES-D-RTRL with ``timescales="single"`` (default
            `default_decay`: ``e^{−dt/100 ms}``).
        timescales: ES-D-RTRL's presynaptic traces: ``"per-state"`` (one per state variable, decaying as
            it does; `per_state_update`) or ``"single"`` (one trace with decay ``decay``); ES-D-RTRL
            only (``"d-rtrl"`` refuses ``"single"``, as it refuses ``decay``).

    Returns:
        ``(loss, grads)`` with the same structure as `bptt`'s: the weight parameters' gradients through
        the Dale's-law magnitudes, the readout's exact gradient, ``None`` for fixed leaves.
    """
    loss, _, grads = online_with_evidence(net, batch, loss_fn, algorithm, decay, timescales)
    return loss, grads
