"""The recurrent spiking E/I network trained on cognitive tasks."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from diffbrain import zoo

from .._time_step import step_ms
from ..ops import CSR, event_matmat
from ..ops.csr import derived


class NetState(NamedTuple):
    """The network's state; every leaf has a leading batch axis.

    ``hidden`` is the per-neuron state the online algorithms trace: the neuron model's own variables, then
    the excitatory and inhibitory conductances and the readout-filtered spike train (see `EINetwork`).
    ``spikes`` are the previous step's spikes, the presynaptic activity of the next step.
    """

    hidden: tuple[Array, ...]  # each [B, n_rec]
    spikes: Array  # [B, n_rec]


def _own_drive(neuron: zoo.AbstractSpikingNeuron, state: tuple[Array, ...]) -> tuple[Array, Array | float]:
    """``(own, to_input)``: the neuron's ``τ dV/dt`` without input, ``V_rest − V`` plus its own currents
    as ``R·I`` (mV), and the factor that turns an ``R·I`` in mV into its input unit."""
    if isinstance(neuron, zoo.ALIF):  # dimensionless: the input is R·I already
        return neuron.V_rest - state.V + state.I_adp, 1.0
    if isinstance(neuron, zoo.neurons.AbstractGIF):  # R in MΩ, input in nA
        return neuron.V_rest - state.V + neuron.R * (state.I1 + state.I2), 1 / neuron.R
    if isinstance(neuron, zoo.LIF):  # input in pA, g_L in nS
        return neuron.V_rest - state.V, neuron.g_L
    raise ValueError(
        f"EINetwork: `neuron` must be a zoo.ALIF, zoo.GIF, zoo.InterpolatedGIF or zoo.LIF (whose membrane "
        f"the conductances enter exactly), got {type(neuron).__name__}."
    )


def _conductance_input(
    neuron: zoo.AbstractSpikingNeuron,
    state: tuple[Array, ...],
    g_e: Float[Array, "*n"],
    g_i: Float[Array, "*n"],
    E_exc: float,
    E_inh: float,
    dt: float,
) -> Float[Array, "*n"]:
    r"""The constant input (in ``neuron.input_unit``) under which the neuron's exponential-Euler step lands
    on the exact solution for conductances ``g_e``, ``g_i`` (units of the leak conductance) held over the
    step.

    With ``own = V_rest − V + (the model's own currents as R·I)`` (mV), the membrane obeys
    ``τ dV/dt = own + g_e (E_exc − V) + g_i (E_inh − V)``, linear in V with rate ``g_tot/τ``,
    ``g_tot = 1 + g_e + g_i``, so ``V ← V∞ + (V − V∞) e^{−dt·g_tot/τ}`` with
    ``V∞ = V + (own + drive)/g_tot``, ``drive = g_e (E_exc − V) + g_i (E_inh − V)``. The neuron's own step
    ``V ← V + (1 − e^{−dt/τ})(own + R·I)`` lands there for

    ``R·I = ρ (own + drive) − own``, ``ρ = (1 − e^{−dt·g_tot/τ}) / (g_tot (1 − e^{−dt/τ}))`` ∈ (0, 1]
    (g_e, g_i ≥ 0).

    The neuron then applies its spike, reset, refractoriness and adaptation as for any input. This is exact
    for every step of ALIF, GIF and LIF (they reset on the time grid) and for `zoo.InterpolatedGIF`'s steps
    without a spike; InterpolatedGIF resets inside the step and then relaxes at rate 1/τ under this input
    (calibrated for the step-start V), so its spiking steps stay first-order: after a crossing at
    g_e = 10 g_L, dt = 1 ms, V is 7 mV below the exact event-driven value. Feeding the
    drive itself (ρ = 1, the explicit step) multiplies ``V − V∞`` by ``1 − (1 − e^{−dt/τ}) g_tot`` per step,
    which is unstable once that is below −1 (``g_tot > 5.1`` at dt = 10 ms, 21 at dt = 2 ms, τ = 20 ms:
    V ran to −3.5e37 in training); here the factor is ``e^{−dt·g_tot/τ}`` for any conductance, and the
    two agree to O(dt·g_tot/τ) when that is small. `EINetwork.cell` recomputes it in the backward pass
    (``jax.checkpoint``), so BPTT keeps no per-step intermediates of it: on the learn bench's sparse case
    (4,000 neurons, T = 200, batch 16) temporaries stay at the explicit step's 640 (dense) and 352 MiB (CSR),
    against 933 and 645 MiB without the checkpoint; the BPTT step on 200 neurons, T = 300, took 1.08× the
    explicit step's time.

    Elementwise: neuron ``j``'s input depends on its own state and conductances only.
    """
    own, to_input = _own_drive(neuron, state)
    V = state.V
    drive = g_e * (E_exc - V) + g_i * (E_inh - V)
    g_tot = 1 + g_e + g_i
    rate = dt / neuron.tau
    ratio = jnp.expm1(-rate * g_tot) / (g_tot * jnp.expm1(-rate))
    return (ratio * (own + drive) - own) * to_input


SLOW_ADAPTATION = (2000.0, 0.5)
"""``(τ_a ms, β mV)`` of the slowly adapting half of the default population: the working memory.

E-prop's LSNN (Bellec et al., 2020) holds evidence through a 1 s delay in adaptive thresholds with
τ_a = 2 s; here the same role falls to the ALIF's adaptation current. With the zoo default (τ_a = 200 ms)
nothing of the cues survives a 1,000 ms delay of evidence accumulation (the network is silent in the
delay and its adaptation decays by e⁻⁵), and training stayed at chance. β is lowered from 2 to 0.5 mV
because at τ_a = 2 s the adaptation piles up ten times longer: at 20 Hz, β·rate·τ_a = 20 mV."""


def default_neuron(n_rec: int | None = None) -> zoo.ALIF:
    """The task neuron: `zoo.ALIF` with a dampened piecewise-linear pseudo-derivative and, given ``n_rec``,
    per-neuron adaptation for working memory.

    The surrogate is e-prop's ``γ·max(0, 1 − |V − V_th|/w)/w`` (Bellec et al., 2020) with w = V_th −
    V_reset = 20 mV (`zoo.surrogate.ReLU` with alpha = γ/w², width = w) and γ = 0.1. Larger gains make
    BPTT's gradient through the recurrent spikes explode on the E/I network: on a 700-step evidence
    accumulation batch (200 neurons) its input-weight gradient norm was 2e5 at γ = 0.3 (and grew ~40×
    per 150 steps), against 0.15 at γ = 0.1 — where the online gradients' cosine to it is 0.95–0.99
    (0.00 at γ = 0.3, where BPTT's direction is the explosion's).

    With ``n_rec``, the even-numbered neurons (half the excitatory and half the inhibitory ones) adapt
    slowly (`SLOW_ADAPTATION`: τ_a = 2,000 ms, β = 0.5 mV), the others keep the zoo's τ_a = 200 ms,
    β = 2 mV, as e-prop's LSNN mixes adaptive and plain neurons.

    The reset is not detached (``detach_reset=False``): the ALIF's spike gate drives both the soft reset
    and the adaptation increment, and with a detached gate no gradient flows from a spike into the
    adaptation current — the one path that carries a cue across the delay. Detached, BPTT on evidence
    accumulation (3 cues, 100 ms delay, dt 10 ms, 50 neurons, batch 32, Adam 1e-2) first fell *below*
    chance (accuracy 0.28–0.40 for 50 steps: the gradient sees only that more input means more spikes,
    not more adaptation) and reached 0.68 after 120 steps; attached, 0.96. With γ = 0.1 the reset
    contributes −γ = −0.1 to ∂V_t/∂V_{t−1} at most, so it does not destabilise the backward pass.
    """
    width = 20.0
    surrogate = zoo.surrogate.ReLU(alpha=0.1 / width**2, width=width)
    if n_rec is None:
        return zoo.ALIF(spike_fn=surrogate, detach_reset=False)
    slow = jnp.arange(n_rec) % 2 == 0
    tau_a, beta = SLOW_ADAPTATION
    adaptation = {"tau_a": jnp.where(slow, tau_a, 200.0), "beta": jnp.where(slow, beta, 2.0)}
    return zoo.ALIF(**adaptation, spike_fn=surrogate, detach_reset=False)


def _inverse_softplus(x: Array) -> Array:
    return x + jnp.log(-jnp.expm1(-x))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _initial_weights(
    key, n_in, n_rec, n_out, n_exc, in_scale, exc_scale, inh_scale, out_scale, connectivity, presynaptic
):
    # One compiled function: drawn op by op, the initialisation took seconds of eager compilation.
    # ``presynaptic`` (the row of each synapse) draws one magnitude per synapse of a sparse pattern; None
    # draws the dense matrix and its Bernoulli mask.
    k_in, k_rec, k_out, k_mask = jax.random.split(key, 4)

    def lognormal(key, shape, scale):
        return _inverse_softplus(scale * jnp.exp(0.5 * jax.random.normal(key, shape)))

    rec_scales = jnp.where(jnp.arange(n_rec) < n_exc, exc_scale, inh_scale)
    w_out = out_scale / math.sqrt(n_rec) * jax.random.normal(k_out, (n_rec, n_out))
    w_in = lognormal(k_in, (n_in, n_rec), in_scale)
    if presynaptic is not None:
        w_rec = lognormal(k_rec, presynaptic.shape, rec_scales[presynaptic])
        return w_in, w_rec, w_out, jnp.zeros(n_out), None
    mask = jax.random.bernoulli(k_mask, connectivity, (n_rec, n_rec)) & ~jnp.eye(n_rec, dtype=bool)
    w_rec = lognormal(k_rec, (n_rec, n_rec), rec_scales[:, None])
    return w_in, w_rec, w_out, jnp.zeros(n_out), mask.astype(w_rec.dtype)


def presynaptic_rows(W: CSR) -> Array:
    """``[nnz]``: the row (presynaptic neuron) of each synapse of ``W``, in CSR order."""
    counts = jnp.diff(W.indptr)
    return jnp.repeat(jnp.arange(W.shape[0], dtype=W.indices.dtype), counts, total_repeat_length=W.nnz)


class EINetwork(eqx.Module):
    r"""A recurrent spiking network of excitatory and inhibitory neurons with a leaky readout.

    The first ``n_exc`` neurons are excitatory, the rest inhibitory (80 % / 20 % by default). Each step
    ``t`` with input spikes ``x_t``:

    * conductances (zoo `Expon` synapses, τ_syn, kept on the postsynaptic side because they are linear):
      ``g_e ← g_e e^{−dt/τ_syn} + x_t |W_in| + z_{t−1}^E |W_rec^{E·}|`` and
      ``g_i ← g_i e^{−dt/τ_syn} + z_{t−1}^I |W_rec^{I·}|``;
    * the membrane integrates ``τ dV/dt = (the neuron's own terms) + g_e (E_exc − V) + g_i (E_inh − V)``
      exactly for conductances held over the step (``V − V∞`` decays by ``e^{−dt(1 + g_e + g_i)/τ}``, stable
      for any conductance; see `_conductance_input`), then the neuron model spikes ``z_t`` and resets;
    * the readout-filtered spike train ``z̄_t = κ z̄_{t−1} + z_t`` (κ = e^{−dt/τ_out}; about the number of
      spikes in the last τ_out: at rate r its mean is r·dt/(1 − κ) ≈ r·τ_out for dt ≪ τ_out, 0.41 at
      20 Hz, τ_out = 20 ms and dt = 1 ms, 0.51 at dt = 10 ms) gives the leaky readout
      ``y_t = z̄_t W_out + b_out``.

    Units: conductances are dimensionless, in units of the neuron's leak conductance, so the drive is in mV
    (the ALIF's input scale; GIF divides by R, LIF multiplies by g_L). The reversal potentials are those
    of AMPA and GABA_A, E_exc = 0 mV and E_inh = −80 mV, on the neuron's own voltage scale (rest −70 mV,
    threshold −50 mV), so inhibition is shunting near rest and hyperpolarising near threshold.

    Dale's law: the weight parameters are unconstrained; the effective magnitudes are
    ``|W| = softplus(w)``, and the sign is that of the presynaptic type, carried by the reversal potential
    (input spikes are excitatory). A training step can never flip a synapse's sign. Weight decay on the
    parameters (``optax.adamw``) pulls ``w`` towards 0, so it strengthens the small initial synapses towards
    softplus(0) = ln 2; penalise ``net.weights()`` in the loss instead.

    Recurrent connectivity is dense or sparse. Dense: ``w_rec`` is an ``[n_rec, n_rec]`` matrix and
    ``rec_mask`` the fixed pattern (no autapses by default). Sparse (``sparse=True``, or a given
    `diffbrain.ops.CSR` pattern): ``w_rec`` is an `ops.CSR` (rows presynaptic) whose ``data`` ``[nnz]``
    are the unconstrained parameters of the existing synapses, ``rec_mask`` is None, and the recurrent
    input is `ops.event_matmat` of the spikes (exact 0/1 floats whose surrogate gradient flows through the
    operator), so a step costs the spikes' synapses, not n_rec². Gradients w.r.t. a sparse ``w_rec`` are
    a CSR of the same structure with the ``[nnz]`` gradient in ``data`` (indices ``None``), from `bptt`
    and `online` alike.

    Because the readout is linear, its leaky integration is a per-neuron state (``z̄``), so the loss at step
    ``t`` depends on the hidden state at ``t`` alone: the instantaneous learning signal of the online
    algorithms needs no look-ahead.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from diffbrain import learn
        >>> net = learn.EINetwork(n_in=20, n_rec=50, n_out=2, key=jax.random.key(0))
        >>> state = net.init_state(batch=4)
        >>> state, (spikes, readout) = net.step(state, jnp.zeros((4, 20)))
        >>> spikes.shape, readout.shape
        ((4, 50), (4, 2))
    """

    neuron: zoo.AbstractSpikingNeuron
    w_in: Float[Array, "n_in n_rec"]
    w_rec: Float[Array, "n_rec n_rec"] | CSR
    w_out: Float[Array, "n_rec n_out"]
    b_out: Float[Array, " n_out"]
    rec_mask: Float[Array, "n_rec n_rec"] | None
    n_exc: int = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    tau_syn: float = eqx.field(static=True)
    tau_out: float = eqx.field(static=True)
    E_exc: float = eqx.field(static=True)
    E_inh: float = eqx.field(static=True)

    def __init__(
        self,
        n_in: int,
        n_rec: int,
        n_out: int,
        *,
        key: PRNGKeyArray,
        neuron: zoo.AbstractSpikingNeuron | None = None,
        exc_fraction: float = 0.8,
        dt: float = 1.0,
        tau_syn: float = 10.0,
        tau_out: float = 20.0,
        E_exc: float = 0.0,
        E_inh: float = -80.0,
        in_scale: float = 0.03,
        rec_scale: float = 0.005,
        inh_ratio: float = 4.0,
        out_scale: float = 1.0,
        connectivity: float | CSR = 1.0,
        sparse: bool = False,
    ):
        """Random weights drawn log-normally (σ = 0.5 in log space) around the given scales.

        Args:
            n_in, n_rec, n_out: input channels, recurrent neurons, readout units.
            key: the random key for weights and connectivity.
            neuron: the neuron model (default ``default_neuron(n_rec)``): a `zoo.ALIF`, `zoo.GIF`,
                `zoo.InterpolatedGIF` or `zoo.LIF`.
            exc_fraction: the excitatory share of the recurrent neurons, in [0, 1].
            dt: time step, ms; a float32 one at its shortest decimal (``np.float32(0.1)`` is 0.1 ms), as
                the tasks read it. tau_syn, tau_out: synaptic and readout time constants, ms (all > 0).
            E_exc, E_inh: reversal potentials, mV.
            in_scale, rec_scale: median input and E→all magnitudes (units of the leak conductance);
                I→all synapses are ``inh_ratio`` times stronger.
            out_scale: readout weights are N(0, out_scale²/n_rec) (as in e-prop), a readout of std
                ~0.4·out_scale at 20 Hz.
            connectivity: the connection probability of the fixed recurrent pattern (no autapses), or
                a sparse pattern ``ops.CSR`` of shape ``(n_rec, n_rec)`` (e.g.
                ``ops.CSR.fixed_in_degree(key, n_rec, n_rec, k, allow_self=False)``; its ``data`` is
                ignored), which makes the network sparse.
            sparse: hold the recurrent weights in an `ops.CSR` (drawn with `ops.CSR.fixed_prob`) instead
                of a dense masked matrix.
        """
        for name, value in (("n_in", n_in), ("n_rec", n_rec), ("n_out", n_out)):
            if not (isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"`{name}` must be an integer ≥ 1, got {value!r}.")
        for name, value in (("dt", dt), ("tau_syn", tau_syn), ("tau_out", tau_out)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"`{name}` must be a finite time > 0 ms, got {value}.")
        for name, value in (
            ("in_scale", in_scale),
            ("rec_scale", rec_scale),
            ("inh_ratio", inh_ratio),
            ("out_scale", out_scale),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(
                    f"`{name}` must be a finite magnitude > 0, got {value}; the signs come from Dale's law "
                    "(E→ positive, I→ negative), not from the scales."
                )
        if not (math.isfinite(E_exc) and math.isfinite(E_inh) and E_inh < E_exc):
            raise ValueError(
                f"`E_inh` ({E_inh} mV) must be finite and below `E_exc` ({E_exc} mV), e.g. -80 and 0."
            )
        if not 0.0 <= exc_fraction <= 1.0:
            raise ValueError(f"`exc_fraction` must be a fraction in [0, 1], got {exc_fraction}.")
        if not (isinstance(connectivity, CSR) or 0.0 <= connectivity <= 1.0):
            raise ValueError(
                f"`connectivity` must be a connection probability in [0, 1] or an ops.CSR pattern, got "
                f"{connectivity!r}."
            )
        neuron = default_neuron(n_rec) if neuron is None else neuron
        _own_drive(neuron, neuron.init_state())  # refuses a model whose membrane the cell cannot integrate
        if neuron.shape not in ((), (1,), (n_rec,)):
            raise ValueError(
                f"`neuron` has parameters of shape {neuron.shape}; give scalars or one value per recurrent "
                f"neuron, shape ({n_rec},) (e.g. default_neuron(n_rec))."
            )
        n_exc = round(exc_fraction * n_rec)
        self.neuron = neuron
        pattern = connectivity if isinstance(connectivity, CSR) else None
        if pattern is not None and pattern.shape != (n_rec, n_rec):
            raise ValueError(
                f"`connectivity` as a CSR pattern must have shape (n_rec, n_rec) = ({n_rec}, {n_rec}), got "
                f"{pattern.shape}."
            )
        if pattern is None and sparse:
            k_mask = jax.random.split(key, 4)[3]  # the key of the dense mask
            pattern = CSR.fixed_prob(k_mask, n_rec, n_rec, connectivity, allow_self=False)
        p = 1.0 if pattern is not None else float(connectivity)
        scales = (in_scale, rec_scale, inh_ratio * rec_scale, out_scale, p)
        rows = None if pattern is None else presynaptic_rows(pattern)
        self.w_in, w_rec, self.w_out, self.b_out, self.rec_mask = _initial_weights(
            key, n_in, n_rec, n_out, n_exc, *scales, rows
        )
        self.w_rec = w_rec if pattern is None else pattern.with_data(w_rec)
        self.n_exc = n_exc
        self.dt, self.tau_syn, self.tau_out = step_ms(dt), float(tau_syn), float(tau_out)
        self.E_exc, self.E_inh = float(E_exc), float(E_inh)

    @property
    def n_rec(self) -> int:
        return self.w_rec.shape[0]

    @property
    def sparse(self) -> bool:
        """Whether the recurrent weights are an `ops.CSR`."""
        return isinstance(self.w_rec, CSR)

    @property
    def is_excitatory(self) -> Array:
        """``[n_rec]`` bool: which neurons are excitatory."""
        return jnp.arange(self.n_rec) < self.n_exc

    def weights(self) -> tuple[Array, Array]:
        """The effective magnitudes ``(|W_in| [n_in, n_rec], |W_rec|)``, all ≥ 0.

        ``|W_rec|`` is ``[n_rec, n_rec]`` (zero off the mask) for a dense network and ``[nnz]`` (the
        synapses in ``w_rec``'s CSR order) for a sparse one.
        """
        if self.sparse:
            return jax.nn.softplus(self.w_in), jax.nn.softplus(self.w_rec.data)
        return jax.nn.softplus(self.w_in), jax.nn.softplus(self.w_rec) * self.rec_mask

    def presynaptic_excitatory(self) -> Array:
        """Whether each recurrent weight's presynaptic neuron is excitatory, broadcastable against
        ``weights()[1]``: ``[n_rec, 1]`` dense, ``[nnz]`` sparse."""
        if self.sparse:
            return presynaptic_rows(self.w_rec) < self.n_exc
        return self.is_excitatory[:, None]

    def signed_weights(self) -> Array:
        """``|W_rec|`` with the sign of the presynaptic type (synapses of inhibitory neurons negative), in
        the layout of ``weights()[1]``."""
        return jnp.where(self.presynaptic_excitatory(), 1.0, -1.0) * self.weights()[1]

    def to_sparse(self) -> EINetwork:
        """The same network with its recurrent weights in an `ops.CSR`: one synapse per entry of the mask
        (outside ``jit``). Simulations and gradients are unchanged (the gradient then comes per synapse)."""
        if self.sparse:
            return self
        mask = jax.device_get(self.rec_mask) > 0
        rows, columns = mask.nonzero()
        pattern = CSR.from_edges(rows, columns, jax.device_get(self.w_rec)[rows, columns], mask.shape)
        return eqx.tree_at(lambda n: (n.w_rec, n.rec_mask), self, (pattern, None))

    def init_state(self, batch: int) -> NetState:
        """The resting state of ``batch`` independent copies of the network."""
        shape = (batch, self.n_rec)
        neuron_state = tuple(jnp.broadcast_to(v, shape) for v in self.neuron.init_state(shape))
        zeros = jnp.zeros(shape, self.w_in.dtype)
        return NetState(hidden=(*neuron_state, zeros, zeros, zeros), spikes=zeros)

    def recurrent_operator(self, magnitudes: Float[Array, " nnz"] | None = None) -> CSR:
        """The sparse recurrent weights as one `ops.CSR` of shape ``(n_rec, 2·n_rec)``: the synapses of
        excitatory neurons in columns ``[0, n_rec)``, those of inhibitory ones shifted by ``n_rec``.

        One `ops.event_matmat` of the spikes through it gives both conductance increments, ``[u_e, u_i]``,
        so the spikes' gradient (the CSR row-dot) touches each synapse once, not once per conductance. The
        synapses keep their CSR order: its ``data`` is ``magnitudes`` (default ``weights()[1]``), and its
        weight gradient is the ``[nnz]`` gradient of ``magnitudes``. Building it costs O(nnz): build it once
        per trial (as `bptt` does) and pass it to `step` or `synaptic_input` in ``weights``.
        """
        if not self.sparse:
            raise ValueError(
                "`recurrent_operator` is for sparse networks (`sparse=True`); this one is dense."
            )
        magnitudes = self.weights()[1] if magnitudes is None else magnitudes
        W, n = self.w_rec, self.n_rec
        shift = jnp.where(presynaptic_rows(W) < self.n_exc, 0, n).astype(W.indices.dtype)
        with derived(W):  # columns shifted by 0 or n_rec stay in [0, 2·n_rec)
            return CSR(W.indptr, W.indices + shift, magnitudes, (n, 2 * n))

    def synaptic_input(
        self, x: Float[Array, "B n_in"], spikes: Float[Array, "B n_rec"], weights: tuple[Array, Array | CSR]
    ) -> tuple[Array, Array]:
        """The conductance increments ``(u_e, u_i)`` [B, n_rec] from input and recurrent spikes, given the
        magnitudes ``weights`` (as `weights` returns them or, sparse, with ``|W_rec|`` as the
        `recurrent_operator`)."""
        w_in, w_rec = weights
        n = self.n_rec
        if isinstance(w_rec, CSR):
            if not self.sparse or w_rec.shape != (n, 2 * n):
                raise ValueError(
                    "`weights[1]` as an ops.CSR must be the network's `recurrent_operator` (a sparse "
                    f"network's, shape ({n}, {2 * n})), got shape {w_rec.shape}; or pass `weights()[1]`."
                )
            u = event_matmat(spikes, w_rec)
            return x @ w_in + u[:, :n], u[:, n:]
        exc = self.is_excitatory.astype(spikes.dtype)
        if self.sparse:
            W = self.w_rec.with_data(w_rec)
            return x @ w_in + event_matmat(spikes * exc, W), event_matmat(spikes * (1 - exc), W)
        u_e = x @ w_in + (spikes * exc) @ w_rec
        u_i = (spikes * (1 - exc)) @ w_rec
        return u_e, u_i

    def recurrent_outer(
        self, pre: Float[Array, "K n_rec"], post_e: Float[Array, "K n_rec"], post_i: Float[Array, "K n_rec"]
    ) -> Array:
        """``Σ_k pre_k ⊗ post_k`` in the layout of ``weights()[1]``, with ``post_e`` on the rows of
        excitatory and ``post_i`` on those of inhibitory neurons: the rank-K weight gradient of the online
        algorithms. Sparse, only the existing synapses are computed (the transpose of `ops.event_matmat`
        w.r.t. the weights: ``pre`` at the row, ``post`` at the column), never the dense matrix."""
        if not self.sparse:
            n_exc = self.n_exc
            return jnp.concatenate([pre[:, :n_exc].T @ post_e, pre[:, n_exc:].T @ post_i])
        exc = self.is_excitatory.astype(pre.dtype)
        split = jnp.concatenate([pre * exc, pre * (1 - exc)])  # E rows meet post_e, I rows post_i
        magnitudes = self.weights()[1]

        def product(data):
            return event_matmat(split, self.w_rec.with_data(data))

        (outer,) = jax.linear_transpose(product, magnitudes)(jnp.concatenate([post_e, post_i]))
        return outer

    def cell(
        self, hidden: tuple[Array, ...], u_e: Array, u_i: Array
    ) -> tuple[tuple[Array, ...], Float[Array, "B n_rec"]]:
        """One step of every neuron given its conductance increments: ``(hidden, spikes)``.

        Elementwise across neurons: neuron ``j``'s new state depends on its own state and ``u_e[j]``,
        ``u_i[j]`` only — the structure the online algorithms' per-neuron Jacobians rely on.
        """
        *neuron_state, g_e, g_i, filtered = hidden
        syn_e = zoo.Expon(tau=self.tau_syn, E=self.E_exc)
        syn_i = zoo.Expon(tau=self.tau_syn, E=self.E_inh)
        _, g_e = syn_e.step(syn_e.State(g_e), u_e, self.dt)
        _, g_i = syn_i.step(syn_i.State(g_i), u_i, self.dt)
        state = type(self.neuron.init_state())(*neuron_state)
        # Recomputed in the backward pass (elementwise, cheap) rather than keeping its intermediates per step.
        current = jax.checkpoint(_conductance_input, prevent_cse=False, static_argnums=(4, 5, 6))(
            self.neuron, state, g_e, g_i, self.E_exc, self.E_inh, self.dt
        )
        state, spikes = self.neuron.step(state, current, self.dt)
        kappa = math.exp(-self.dt / self.tau_out)
        filtered = kappa * filtered + spikes
        return (*state, g_e, g_i, filtered), spikes

    def conductance_decay(self) -> Array:
        """The conductances' factor per step without input, ``e^{−dt/τ_syn}`` (read off the `zoo.Expon`
        synapse the cell steps: ``g ← g·e^{−dt/τ_syn} + u``)."""
        synapse = zoo.Expon(tau=self.tau_syn, E=self.E_exc)
        one = jnp.ones((), self.w_in.dtype)
        return synapse.step(synapse.State(one), jnp.zeros_like(one), self.dt)[1]

    def readout(self, hidden: tuple[Array, ...]) -> Float[Array, "B n_out"]:
        """The leaky readout ``y = z̄ W_out + b_out`` of the hidden state."""
        return hidden[-1] @ self.w_out + self.b_out

    def step(
        self, state: NetState, x: Float[Array, "B n_in"], weights: tuple[Array, Array | CSR] | None = None
    ) -> tuple[NetState, tuple[Array, Array]]:
        """Advance one ``dt`` under input spikes ``x``; return ``(state, (spikes, readout))``.

        ``weights`` are the magnitudes as `synaptic_input` takes them; by default `weights` computes them
        from the parameters at every step. A loop over steps computes them once instead (and, sparse, the
        `recurrent_operator`), as `bptt` does.
        """
        weights = self.weights() if weights is None else weights
        u_e, u_i = self.synaptic_input(x, state.spikes, weights)
        hidden, spikes = self.cell(state.hidden, u_e, u_i)
        return NetState(hidden, spikes), (spikes, self.readout(hidden))


def trainable(net: EINetwork) -> EINetwork:
    """The filter spec of the learned leaves: the weights and readout bias (neuron parameters are fixed)."""
    spec = jax.tree.map(lambda _: False, net)
    if net.sparse:
        return eqx.tree_at(lambda n: (n.w_in, n.w_rec.data, n.w_out, n.b_out), spec, (True,) * 4)
    return eqx.tree_at(lambda n: (n.w_in, n.w_rec, n.w_out, n.b_out), spec, (True,) * 4)
