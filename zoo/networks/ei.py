"""The Brette et al. (2007) COBA and CUBA benchmark networks: excitatory/inhibitory LIF populations wired
with event-driven sparse projections (`diffbrain.ops`)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ..._time_step import step_ms
from ...ops import CSR, event_matvec
from ...ops.csr import check_key
from ...ops.scan import checked_unroll
from .._checks import check_dt, n_steps_of, refuse_half_precision, refuse_half_precision_run
from ..neurons.lif import LIF, LIFState
from ..simulate import _fail_on_nonfinite
from ..synapses.expon import Expon, ExponState
from .network import (
    AbstractPopulationResult,
    Network,
    NetworkResult,
    _scan_steps,
    record_indices,
    with_spike_dtype,
)


class EIState(NamedTuple):
    neurons: LIFState  # V (mV) and refractory time left (ms), each [n]
    exc: ExponState  # summed excitatory open fraction × weight per postsynaptic neuron, [n] (nS or pA)
    inh: ExponState  # the same for inhibition, [n]
    spikes: Array  # last step's spikes, [n] (bool, or float surrogate spikes)


class EIResult(AbstractPopulationResult):
    """The result of `simulate`: ``rates()``, ``rate_trace()``, ``spike_trains()`` as for every network
    (`AbstractPopulationResult`), with the populations ``names = ("E", "I")``.

    Attributes:
        dt: the time step, ms.
        counts: spikes per step and population, ``[T, 2]`` (column 0 excitatory, 1 inhibitory); float
            (surrogate spikes, differentiable) when simulated with ``surrogate=True``.
        raster: spikes of the recorded neurons per step, ``[T, len(record)]`` bool (``[T, 0]`` if none).
        record: the recorded neurons' indices (0 … n_e − 1 excitatory, then inhibitory).
        sizes: ``(n_e, n_i)``, the population sizes.
        final_state: the network state after the last step (to continue a simulation).
    """

    dt: float = eqx.field(static=True)
    counts: Float[Array, "T 2"]
    raster: Bool[Array, "T r"]
    record: Array
    sizes: tuple[int, int] = eqx.field(static=True)
    final_state: EIState

    @property
    def names(self) -> tuple[str, str]:
        """``("E", "I")``."""
        return ("E", "I")


def _check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating) or not 0 < value < 1:
        raise ValueError(f"`{name}` must be a number strictly between 0 and 1, got {value!r}.")
    return float(value)


def _is_real(array: np.ndarray) -> bool:
    """Whether ``array`` holds real numbers (not complex, whose imaginary part a cast would drop)."""
    return np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.complexfloating)


def _check_weights(mode: str, w_e, w_i, I_ext, n: int) -> None:
    for name, value in (("w_e", w_e), ("w_i", w_i)):
        array = np.asarray(value)
        if not (array.ndim == 0 and _is_real(array) and np.isfinite(array)):
            raise ValueError(f"`{name}` must be a finite real number, got {value!r}.")
    array = np.asarray(I_ext)
    if not (array.shape in ((), (n,)) and _is_real(array) and np.all(np.isfinite(array))):
        raise ValueError(
            f"`I_ext` must be finite and real, one value or one per neuron ({n}), got {array.dtype} of shape "
            f"{array.shape}."
        )
    if mode == "coba" and (w_e < 0 or w_i < 0):
        raise ValueError(
            f"`w_e` and `w_i` must be conductances ≥ 0 nS for mode='coba' (the reversal potentials `E_e`, "
            f"`E_i` give the sign), got w_e={w_e!r}, w_i={w_i!r}."
        )
    if mode == "cuba" and (w_e < 0 or w_i > 0):
        raise ValueError(
            f"for mode='cuba' `w_e` must be ≥ 0 pA and `w_i` ≤ 0 pA (currents carry their sign), got "
            f"w_e={w_e!r}, w_i={w_i!r}."
        )


class EINetwork(eqx.Module):
    r"""A recurrent network of excitatory (first ``n_e``) and inhibitory LIF neurons, the Brette et al.
    (2007) benchmark (after Vogels & Abbott 2005).

    Every neuron receives exactly ``k_e`` synapses from the excitatory and ``k_i`` from the inhibitory
    population (fixed in-degree, so the network scales in ``n`` at constant input statistics; 2 % of
    4,000 = 80 in the benchmark). Synaptic state is kept per postsynaptic neuron: each step
    ``g_e ← g_e·e^{−dt/τ_e} + Σ_i s_i W_E[i, ·]`` with one `ops.event_matvec` per projection.

    The neuron steps with this end-of-step ``g`` (the spikes that just arrived included) held over the step,
    so a spike of weight ``w`` delivers ``w·dt/(1 − e^{−dt/τ})`` of charge (or conductance·time) instead of
    the continuous PSC's ``w·τ`` (``τ`` = ``τ_e`` or ``τ_i``, ms): at dt = 0.1 ms +1 % for the benchmark's
    τ_e = 5 ms, +0.5 % for τ_i = 10 ms, +10 % at τ = 0.5 ms. The weights are used as given; scale them by
    ``τ(1 − e^{−dt/τ})/dt`` to match the continuous PSC.

    * ``mode="coba"``: ``I = g_e (E_e − V) + g_i (E_i − V) + I_ext`` (``W`` in nS, ``I`` in pA).
    * ``mode="cuba"``: ``I = g_e + g_i + I_ext`` (``W`` in pA; inhibitory weights negative).

    Units: V mV, W nS (coba) or pA (cuba), τ ms, I pA.

    Attributes:
        neuron: the LIF neuron shared by both populations.
        W_E, W_I: projections from the excitatory ``[n_e, n]`` and inhibitory ``[n_i, n]`` populations.
        exc, inh: the postsynaptic exponential synapses (``tau``, ``E``, ``mode``; ``g_max`` 1).
        I_ext: constant injected current, pA.
        mode: ``"coba"`` or ``"cuba"``, static.

    Examples:
        >>> import jax
        >>> from diffbrain.zoo import networks
        >>> net = networks.EINetwork.coba(jax.random.key(0), n=4000)
        >>> net.sizes, net.W_E.nnz // 4000 + net.W_I.nnz // 4000
        ((3200, 800), 80)

    ??? cite "Reference"
        Brette, R. et al. (2007). Simulation of networks of spiking neurons: a review of tools and
        strategies. J. Comput. Neurosci. 23, 349–398. Vogels, T. P. & Abbott, L. F. (2005). Signal
        propagation and logic gating in networks of integrate-and-fire neurons. J. Neurosci. 25, 10786.
    """

    neuron: LIF
    W_E: CSR
    W_I: CSR
    exc: Expon
    inh: Expon
    I_ext: Float[Array, ""]
    mode: str = eqx.field(static=True)

    @property
    def n(self) -> int:
        """Number of neurons."""
        return self.W_E.shape[1]

    @property
    def sizes(self) -> tuple[int, int]:
        """``(n_e, n_i)``."""
        return self.W_E.shape[0], self.W_I.shape[0]

    @classmethod
    def build(
        cls,
        key: PRNGKeyArray,
        n: int,
        *,
        mode: str,
        neuron: LIF,
        w_e: float,
        w_i: float,
        tau_e: float = 5.0,
        tau_i: float = 10.0,
        E_e: float = 0.0,
        E_i: float = -80.0,
        I_ext: float = 0.0,
        exc_fraction: float = 0.8,
        in_degree: int = 80,
        fixed_in_degree: bool = True,
    ) -> EINetwork:
        """A network of ``n`` neurons, ``round(exc_fraction·n)`` excitatory; each neuron receives
        ``round(exc_fraction·in_degree)`` excitatory and the rest inhibitory synapses, weights ``w_e`` and
        ``w_i`` (nS for coba, pA for cuba). With ``fixed_in_degree=False`` each synapse exists independently
        with probability ``k_e/n_e`` (``k_i/n_i``), as in the original benchmark: the in-degree is then
        binomial with the same mean. Weights and ``I_ext`` must be finite; for ``"coba"`` ``w_e`` and
        ``w_i`` are conductances ≥ 0 (the reversal potentials ``E_e``, ``E_i`` give the sign), for
        ``"cuba"`` currents with their sign, ``w_e`` ≥ 0 and ``w_i`` ≤ 0 (as `Network.build` checks
        conductances). Raises ``ValueError`` naming the bad argument."""
        if mode not in ("coba", "cuba"):
            raise ValueError(f"`mode` must be 'coba' or 'cuba', got {mode!r}.")
        exc_fraction = _check_fraction("exc_fraction", exc_fraction)
        if isinstance(in_degree, bool) or not isinstance(in_degree, int | np.integer) or in_degree < 2:
            raise ValueError(f"`in_degree` must be an integer ≥ 2, got {in_degree!r}.")
        k_e = round(exc_fraction * in_degree)
        k_i = in_degree - k_e
        if k_e < 1 or k_i < 1:
            raise ValueError(
                f"`in_degree` {in_degree} with `exc_fraction` {exc_fraction} leaves {k_e} excitatory and "
                f"{k_i} inhibitory inputs per neuron; both must be ≥ 1 (raise `in_degree`)."
            )
        if isinstance(n, bool) or not isinstance(n, int | np.integer):
            raise ValueError(f"`n` must be an integer number of neurons, got {n!r}.")
        _check_weights(mode, w_e, w_i, I_ext, n)
        n = int(n)
        n_e = round(exc_fraction * n)
        n_i = n - n_e
        if n_e < k_e or n_i < k_i:
            smallest = n + 1  # the fewest neurons that split (rounded as above) into enough of both
            while round(exc_fraction * smallest) < k_e or smallest - round(exc_fraction * smallest) < k_i:
                smallest += 1
            raise ValueError(
                f"`n` = {n} is too small: {n_e} excitatory and {n_i} inhibitory neurons cannot provide "
                f"{k_e} and {k_i} distinct inputs per neuron (in_degree {in_degree}); pass n ≥ {smallest} "
                "or a smaller `in_degree`."
            )
        check_key(key)
        key_e, key_i = jax.random.split(key)
        if fixed_in_degree:
            W_E = CSR.fixed_in_degree(key_e, n_e, n, k_e, weight=w_e)
            W_I = CSR.fixed_in_degree(key_i, n_i, n, k_i, weight=w_i)
        else:
            W_E = CSR.fixed_prob(key_e, n_e, n, k_e / n_e, weight=w_e)
            W_I = CSR.fixed_prob(key_i, n_i, n, k_i / n_i, weight=w_i)
        exc = Expon(tau=tau_e, g_max=1.0, E=E_e, mode=mode)
        inh = Expon(tau=tau_i, g_max=1.0, E=E_i, mode=mode)
        # float32 (the library's default), or the dtype the neuron was cast to (e.g. with zoo.astype)
        V = neuron.init_state((n,)).V
        dtype = jnp.float32 if V.weak_type else jax.dtypes.canonicalize_dtype(V.dtype)
        refuse_half_precision("EINetwork.build", dtype)
        W_E, W_I = (W.with_data(W.data.astype(dtype)) for W in (W_E, W_I))
        return cls(neuron, W_E, W_I, exc, inh, jnp.asarray(I_ext, dtype), mode)

    @classmethod
    def coba(cls, key: PRNGKeyArray, n: int = 4000, **overrides) -> EINetwork:
        """Brette et al. (2007) benchmark 1 (COBA): `LIF.coba` neurons (rest −60, θ −50, reset −60 mV,
        τ 20 ms, 5 ms refractory), ``w_e`` 6 nS and ``w_i`` 67 nS (0.6 and 6.7 × g_L), E_e 0 and
        E_i −80 mV, τ_e 5 and τ_i 10 ms, and the constant drive of the common implementations (Brian,
        ANNarchy, BrainPy): 20 mV × g_L = 200 pA. ``overrides`` go to `build`."""
        params = dict(mode="coba", neuron=LIF.coba(), w_e=6.0, w_i=67.0, I_ext=200.0)
        return cls.build(key, n, **(params | overrides))

    @classmethod
    def cuba(cls, key: PRNGKeyArray, n: int = 4000, **overrides) -> EINetwork:
        """Brette et al. (2007) benchmark 2 (CUBA): `LIF.cuba` neurons (rest −49, θ −50, reset −60 mV,
        τ 20 ms, 5 ms refractory), no external drive. Brian's weights are jumps of the synaptic
        variables in mV, ``w_e = 60·0.27/10 = 1.62`` and ``w_i = −20·4.5/10 = −9`` mV, entering as
        ``τ dV/dt = (V_rest − V) + g_e + g_i``; as currents that is × g_L (10 nS): ``w_e`` 16.2 pA and
        ``w_i`` −90 pA. ``overrides`` go to `build`."""
        params = dict(mode="cuba", neuron=LIF.cuba(), w_e=16.2, w_i=-90.0)
        return cls.build(key, n, **(params | overrides))

    def init_state(self, key: PRNGKeyArray) -> EIState:
        """Membrane potentials uniform in ``[V_reset, V_th)``, synapses closed, no spikes."""
        check_key(key, "it draws the initial potentials (`simulate` takes None when given a `state`)")
        low, high = self.neuron.V_reset, self.neuron.V_th
        V = jax.random.uniform(key, (self.n,), self.I_ext.dtype, low, high)
        zeros = jnp.zeros(self.n, self.I_ext.dtype)
        return EIState(LIFState(V, zeros), ExponState(zeros), ExponState(zeros), jnp.zeros(self.n, bool))

    def step(
        self, state: EIState, dt: float, surrogate: bool = False, detach_recurrent: bool = True
    ) -> EIState:
        """One step of ``dt`` ms: last step's spikes reach the synapses, then the neurons integrate.

        With ``surrogate=True`` spikes are floats from the neuron's surrogate Heaviside (differentiable);
        otherwise bool events (the fast path). ``detach_recurrent`` stops the gradient through the spikes
        fed back into the network (gradients still reach the weights, the synapses and the membranes).
        """
        n_e = self.sizes[0]
        spikes = jax.lax.stop_gradient(state.spikes) if detach_recurrent else state.spikes
        arriving = event_matvec(spikes[:n_e], self.W_E), event_matvec(spikes[n_e:], self.W_I)
        return self._integrate(state, *arriving, dt, surrogate)

    def _integrate(
        self, state: EIState, arriving_e: Array, arriving_i: Array, dt: float, surrogate: bool = False
    ) -> EIState:
        """`step` given the weighted spikes arriving at each neuron's synapses (``[n]`` each, or those of a
        block of neurons)."""
        exc, g_e = self.exc.step(state.exc, arriving_e, dt)
        inh, g_i = self.inh.step(state.inh, arriving_i, dt)
        V = state.neurons.V
        current = self.exc.current(g_e, V) + self.inh.current(g_i, V) + self.I_ext
        neurons, spike = self.neuron.step(state.neurons, current, dt)
        spike = spike if surrogate else spike > 0
        return EIState(neurons, exc, inh, spike)


def _validate(net, duration_ms, dt, record) -> tuple[int, np.ndarray]:
    if not isinstance(net, EINetwork):
        raise TypeError(f"`net` must be an EINetwork or a Network, got {type(net).__name__}.")
    return n_steps_of(duration_ms, dt), record_indices(record, net.n)


def _check_state(net: EINetwork, state: EIState) -> None:
    """Every array of ``state`` holds one value per neuron of ``net``."""
    wrong = [leaf.shape for leaf in jax.tree.leaves(state) if leaf.shape != (net.n,)]
    if wrong:
        raise ValueError(
            f"`state` must hold [n] = [{net.n}] arrays (an EIState of this network), got {wrong}."
        )


def simulate(
    net: EINetwork | Network,
    duration_ms: float,
    key: PRNGKeyArray,
    *,
    dt: float | None = None,
    record: int | np.ndarray = 0,
    state: EIState | None = None,
    surrogate: bool = False,
    detach_recurrent: bool = True,
    unroll: int = 1,
    check_finite: bool = True,
    event_scan: bool = False,
) -> EIResult | NetworkResult:
    """Simulate ``net`` for ``duration_ms`` ms with a jitted `lax.scan`.

    Args:
        net: the network; a generic `Network` is run by `Network.simulate` (its ``pulse`` option only there).
        duration_ms: simulated time, ms (a multiple of ``dt``).
        key: seeds the initial membrane potentials (`EINetwork.init_state`); ignored when ``state`` is given.
        dt: time step, ms (default 0.1 for an `EINetwork`; a `Network` has its own and checks a given one).
        record: neuron indices whose spikes to keep (or an int k: neurons 0 … k − 1); their raster is
            ``result.raster`` and `EIResult.spike_trains` gives (times, indices).
        state: initial state (to continue a run: a result's ``final_state`` of this network); default
            ``net.init_state(key)``.
        surrogate: float surrogate spikes (differentiable counts) instead of bool events.
        detach_recurrent: with ``surrogate``, stop the gradient through the recurrent spikes (see
            `EINetwork.step`). The full path explodes in these chaotic networks: at N = 200 the gradient of
            the E rate w.r.t. the excitatory weight reached 4·10¹⁰ after 20 ms and NaN after 100 ms
            (float32, any surrogate width); detached it stays finite.
        unroll: steps unrolled per scan iteration, a positive integer or a bool (True: all).
        check_finite: raise (also inside ``jit``) if the final state holds NaN or inf, as `zoo.simulate`.
        event_scan: run the steps with `ops.event_scan`, for gradients w.r.t. the per-synapse weights
            (``W_E.data``, ``W_I.data``): the same values and gradients, with each step's weight gradient
            added in place on the synapses of the neurons that fired (`Network.simulate`'s option).

    Returns:
        An `EIResult` with spike counts per step and population; ``result.rates()`` in Hz.

    Examples:
        >>> import jax
        >>> from diffbrain.zoo import networks
        >>> net = networks.EINetwork.coba(jax.random.key(0), n=400, in_degree=40)
        >>> result = networks.simulate(net, 50.0, jax.random.key(1), record=5)
        >>> result.counts.shape, result.raster.shape
        ((500, 2), (500, 5))
    """
    if isinstance(net, Network):
        options = dict(record=record, state=state, surrogate=surrogate, detach_recurrent=detach_recurrent)
        options |= dict(unroll=unroll, check_finite=check_finite, event_scan=event_scan)
        return net.simulate(duration_ms, key, dt=dt, **options)
    dt = step_ms(check_dt(0.1 if dt is None else dt))  # np.float32(0.1) is 0.1 ms, as in `Network`
    n_steps, record = _validate(net, duration_ms, dt, record)
    unroll = checked_unroll(unroll)
    if state is None:
        state = net.init_state(key)
    else:
        _check_state(net, state)
    refuse_half_precision_run("networks.simulate", net, state)
    state = with_spike_dtype(state, surrogate)
    counts, raster, state = _run(
        net, state, jnp.asarray(record), n_steps, dt, surrogate, detach_recurrent, unroll, bool(event_scan)
    )
    if check_finite:
        state, counts = _fail_on_nonfinite(state, counts)
    return EIResult(dt, counts, raster, jnp.asarray(record), net.sizes, state)


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7, 8))
def _run(
    net,
    state,
    record,
    n_steps: int,
    dt: float,
    surrogate: bool,
    detach_recurrent: bool,
    unroll: int,
    event: bool,
):
    def body(params, state, _):
        net, record = params
        state = net.step(state, dt, surrogate, detach_recurrent)
        return state, _counts_and_raster(state.spikes, net.sizes[0], net.n, record, surrogate)

    state, (counts, raster) = _scan_steps(body, (net, record), state, n_steps, unroll, None, event)
    return counts, raster, state


def _counts_and_raster(spikes, n_e: int, n: int, record, surrogate: bool) -> tuple[Array, Array]:
    """One step's outputs from the spikes of neurons ``0 … n − 1`` (of ``spikes``, which may be longer):
    spike counts ``[E, I]`` (int32, or float surrogate counts) and the recorded neurons' spikes (bool)."""
    dtype = spikes.dtype if surrogate else jnp.int32
    counts = jnp.stack([spikes[:n_e].sum(dtype=dtype), spikes[n_e:n].sum(dtype=dtype)])
    return counts, (spikes[record] > 0) if surrogate else spikes[record]


def rates(net: EINetwork | Network, duration_ms: float, key: PRNGKeyArray, **kwargs) -> Float[Array, " P"]:
    """Mean firing rate of each population over ``duration_ms``, Hz (excitatory and inhibitory for an
    `EINetwork`; `simulate` then ``rates()``; ``kwargs`` go to `simulate`)."""
    return simulate(net, duration_ms, key, **kwargs).rates()
