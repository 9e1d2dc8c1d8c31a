"""`Network`: populations of any zoo spiking neuron, wired per receptor by sparse synapses with delays,
driven by constant currents, Poisson background input and timed pulses, simulated with a jitted `lax.scan`.

Each step (``dt`` ms) does, in this order: every receptor takes the synaptic input that arrives now (the
current slot of its arrival ring, `DelayedCSR`) plus its Poisson background and updates its state; the
neurons integrate the summed receptor currents, ``I_ext``, gap-junction currents and active pulses; their
spikes' synapses are added to the arrival rings at the steps they reach (one `ops.arrival_scatter` per
receptor). A delay is a latency, as in NEST and Brian2: a spike
emitted in step ``t`` (at time ``(t + 1)·dt``) with a delay of ``D`` ms enters its receptor in step
``t + 1 + round(D/dt)``, so its current starts ``round(D/dt)·dt`` after the spike (``steps_of``: halves
round up, as NEST's ``ld_round(D·steps_per_ms)`` does, so 0.25 ms is 3 steps of 0.1 ms). A delay of 0 is
`EINetwork`'s convention (last step's spikes reach the synapses), and a network built with zero delays from
an `EINetwork`'s matrices reproduces it exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, UInt32

from ... import ops
from ..._time_step import step_ms
from ...ops import CSR, csr_matvec
from ...ops.csr import check_key
from ...ops.scan import checked_unroll
from .._checks import _rounding, check_dt, n_steps_of, refuse_half_precision, refuse_half_precision_run
from .._param import astype
from ..neurons._base import AbstractSpikingNeuron
from ..simulate import _fail_on_nonfinite
from ..synapses._base import AbstractKineticSynapse, AbstractSynapse
from ..synapses.nmda import NMDA
from .delays import DelayedCSR

MAX_INPUTS_PER_STEP = 50.0
"""The largest mean number of Poisson background inputs per neuron and step that `Background` accepts."""

_NEVER_STEP = 2**31 - 1  # the int32 step counter's largest value: a pulse edge there is never reached


class Edges(NamedTuple):
    """One receptor's synapses, as global neuron indices (0 … n − 1).

    Attributes:
        pre: ``[nnz]`` presynaptic neurons.
        post: ``[nnz]`` postsynaptic neurons.
        weight: ``[nnz]`` or one shared weight, in the receptor's unit: nS for a conductance-based
            (``mode="coba"``) receptor, where it must be ≥ 0 and the sign comes from the reversal potential
            ``E``; for a current-based one, the neuron's input unit (pA for `LIF` and `AdEx`; negative for
            inhibition).
        delay: ``[nnz]`` or one shared delay, ms ≥ 0: the latency from the spike to the start of the
            synaptic current, rounded to whole steps of ``dt`` at build time (0: the next step).
    """

    pre: Int[ArrayLike, " nnz"]
    post: Int[ArrayLike, " nnz"]
    weight: Float[ArrayLike, "*nnz"] | float
    delay: Float[ArrayLike, "*nnz"] | float


class Background(NamedTuple):
    """Independent Poisson input to every neuron, entering one receptor.

    Attributes:
        rate: ``[n]`` or one total input rate per neuron, Hz (e.g. ``K_ext · 8 Hz`` for ``K_ext`` inputs
            at 8 Hz); each step a neuron receives a Poisson number of inputs with mean ``rate·dt``, drawn
            with 24-bit uniforms: exact for the usual kHz totals, too frequent below about 10⁻⁶ inputs per
            step (+19 % at 10⁻⁷) and none below 6·10⁻⁸ (use `zoo.stimulus.poisson` for such rates).
        weight: ``[n]`` or one weight per input spike, in the receptor's unit (nS for a conductance-based
            receptor; for a current-based one, the neuron's input unit: pA for `LIF` and `AdEx`).
        receptor: the receptor it enters.
    """

    rate: Float[ArrayLike, "*n"] | float
    weight: Float[ArrayLike, "*n"] | float
    receptor: str


class GapJunctions(NamedTuple):
    """Electrical synapses: neuron ``post[k]`` receives ``conductance[k]·(V[pre[k]] − V[post[k]])`` pA.

    A physical gap junction conducts both ways: list it in both directions (a symmetric matrix). The current
    is in pA, so `Network.build` takes gap junctions only for a neuron whose input is in pA (`LIF`, `AdEx`).

    Attributes:
        pre, post: ``[k]`` neuron indices (global).
        conductance: ``[k]`` or one value, nS ≥ 0.
    """

    pre: Int[ArrayLike, " k"]
    post: Int[ArrayLike, " k"]
    conductance: Float[ArrayLike, "*k"] | float


class Pulse(NamedTuple):
    """A current step into some neurons: ``current`` (in the neuron's input unit: pA for `LIF` and `AdEx`)
    while ``start_ms ≤ t < stop_ms``.

    Times are measured from the network state's time zero (`Network.init_state`); a continued simulation
    keeps counting, so a pulse is placed in absolute time. The step counter is int32: a time of 2³¹ − 1
    steps or more (2.1·10⁸ ms at dt = 0.1 ms) counts as that step, never reached, so a ``stop_ms`` that far
    keeps the pulse on for the rest of the run and such a ``start_ms`` never turns it on.

    Attributes:
        neurons: indices of the neurons that receive it (global, 0 … n − 1).
        start_ms, stop_ms: the window, ms (rounded to steps).
        current: in the neuron's input unit (pA for `LIF` and `AdEx`), one value or one per listed neuron;
            it may be traced, so a loss has a gradient w.r.t. a pulse's amplitude.
    """

    neurons: Int[ArrayLike, " k"]
    start_ms: float
    stop_ms: float
    current: Float[ArrayLike, "*k"] | float


class NetworkState(NamedTuple):
    """The state of a `Network` between steps (`Network.init_state`, ``NetworkResult.final_state``)."""

    neurons: NamedTuple  # the neuron model's state, each field [n]
    receptors: dict[str, NamedTuple]  # each receptor's state, fields [n] (postsynaptic)
    ring: dict[str, Array]  # per receptor with synapses, its input of the coming steps [L, n]: step t's in
    # slot t mod L (`DelayedCSR`); the last step's spikes are not in it yet
    step: Array  # steps simulated since time zero, int32 scalar
    spikes: (
        Array  # the last step's spikes [n] (bool, or float surrogate spikes), added to the rings next step
    )


class AbstractPopulationResult(eqx.Module):
    """What every network simulation returns: spike counts per step and population, and the raster of
    recorded neurons. `EIResult` and `NetworkResult` share it.

    Times count from the run's start: spikes emitted in the run's step ``k`` (0-based) are stamped at the
    step's end, ``(k + 1)·dt`` ms, and `rate_trace`'s first bin starts at 0. A run continued from a
    ``final_state`` started later than the state's time zero, in which `Pulse` windows are placed: add
    `NetworkResult.start_ms` to compare its times with a pulse's.

    Subclasses hold ``dt`` (ms), ``counts`` ``[T, P]``, ``raster`` ``[T, r]`` (bool), ``record`` ``[r]``
    (the recorded neurons' global indices), ``sizes`` and ``names`` (one per population) and
    ``final_state`` (whose ``neurons.V`` has the run's floating dtype). They are not declared here as
    `eqx.AbstractVar`: Equinox rejects those under postponed (string) annotations.

    A result ``vmap``'d over runs has leading batch axes (``counts`` ``[..., T, P]``): `duration`, `rates`
    and `rate_trace` bin each run along time and keep the batch axes in front; `spike_trains` takes one run
    (``jax.tree.map(lambda x: x[i], result)``).
    """

    @property
    def duration(self) -> float:
        """Simulated time, ms (of each run, for a batch of runs)."""
        return self.counts.shape[-2] * self.dt

    def _float_counts(self) -> Float[Array, "*runs T P"]:
        """``counts`` to be summed, in the run's floating dtype (surrogate counts as they are,
        differentiable): an int32 sum wraps past 2³¹ spikes (10⁶ neurons at 10 Hz for 215 s)."""
        if jnp.issubdtype(self.counts.dtype, jnp.floating):
            return self.counts
        return self.counts.astype(self.final_state.neurons.V.dtype)

    def rates(self) -> Float[Array, "*runs P"]:
        """Mean firing rate per population over the whole run, Hz (order of `names`); ``[..., P]`` for a
        batch of runs."""
        return self._float_counts().sum(axis=-2) / np.asarray(self.sizes) / self.duration * 1000.0

    def rate_trace(self, bin_ms: float = 5.0) -> Float[Array, "*runs B P"]:
        """Population rates in consecutive bins of ``bin_ms`` ms from the run's start, a positive multiple of
        ``dt`` (a trailing partial bin is dropped), Hz, ``[bins, P]`` (``[..., bins, P]`` for a batch of
        runs). Raises ``ValueError`` for any other ``bin_ms``."""
        per_bin = round(bin_ms / self.dt) if np.isfinite(bin_ms) else 0
        if per_bin < 1 or abs(per_bin * self.dt - bin_ms) > 1e-6 * max(1.0, bin_ms):  # as `duration_ms`'s
            raise ValueError(
                f"`bin_ms` must be a positive multiple of dt = {self.dt} ms (whole steps), got {bin_ms!r}."
            )
        *runs, n_steps, n_pops = self.counts.shape
        n_bins = n_steps // per_bin
        counts = self._float_counts()[..., : n_bins * per_bin, :]
        binned = counts.reshape(*runs, n_bins, per_bin, n_pops).sum(axis=-2)
        return binned / np.asarray(self.sizes) / (per_bin * self.dt) * 1000.0

    def spike_trains(self) -> tuple[np.ndarray, np.ndarray]:
        """The recorded spikes as ``(times_ms, neuron_indices)`` NumPy arrays, sorted by time; times in ms
        from the run's start. Of one run: raises ``ValueError`` for a batch of runs."""
        self._check_one_run("spike_trains")
        steps, columns = np.nonzero(np.asarray(self.raster))
        return (steps + 1) * self.dt, np.asarray(self.record)[columns]

    def _check_one_run(self, method: str) -> None:
        """A ``ValueError`` naming ``method`` when this result holds a batch of runs (``counts`` with leading
        axes, from ``vmap``)."""
        runs = self.counts.shape[:-2]
        if runs:
            raise ValueError(
                f"`{method}` reads one run, and this result is a batch of {int(np.prod(runs))} runs (batch "
                f"shape {runs}, from `vmap`): take run i with `jax.tree.map(lambda x: x[i], result)`."
            )


class NetworkResult(AbstractPopulationResult):
    """The result of `Network.simulate`.

    Attributes:
        dt: the time step, ms.
        names: the populations' names; ``sizes``: their sizes.
        counts: spikes per step and population, ``[T, P]`` (float, differentiable, with surrogate spikes);
            ``[..., T, P]`` for a batch of runs from ``vmap`` (as every array here gets leading batch axes).
        raster: spikes of the recorded neurons per step, ``[T, len(record)]`` bool; None when they were
            kept as ``spikes``.
        record: the recorded neurons' global indices.
        final_state: the state after the last step (pass it as ``state`` to continue).
        spikes: with ``max_spikes_per_step=K``, the recorded spikes as indices: ``[T, K]``
            positions in ``record`` of the neurons that fired in each step, ascending, −1 where unused
            (4·K bytes per step instead of one byte per recorded neuron); else None.
    """

    dt: float = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True)
    sizes: tuple[int, ...] = eqx.field(static=True)
    counts: Float[Array, "T P"]
    raster: Bool[Array, "T r"] | None
    record: Array
    final_state: NetworkState
    spikes: Int[Array, "T K"] | None = None

    @property
    def start_ms(self) -> float:
        """When the run started, ms after its state's time zero (`Network.init_state`), the time in which
        `Pulse` windows are placed: 0 for a run from `init_state`, the earlier runs' total duration for one
        continued from a ``final_state``. From the final state's step counter, so read outside ``jit`` and
        ``vmap``; for a batch of runs (a ``vmap``'d result), their common start.

        Raises:
            ValueError: the step counter is traced (inside ``jit`` or ``vmap``), or the batch's runs started
                at different times.
        """
        step = self.final_state.step
        if isinstance(step, jax.core.Tracer):
            raise ValueError(
                "`start_ms` needs a concrete final state (its step counter), not a traced one; read it "
                "outside `jit` and `vmap`."
            )
        starts = (np.asarray(step, np.int64) - self.counts.shape[-2]) * self.dt
        if np.any(starts != starts.flat[0]):
            raise ValueError(
                f"`start_ms` is one time, and the runs of this batch started at different times "
                f"({np.unique(starts).tolist()} ms, by run: {starts.tolist()} ms); take run i with "
                "`jax.tree.map(lambda x: x[i], result)`."
            )
        return float(starts.flat[0])

    def spike_trains(self) -> tuple[np.ndarray, np.ndarray]:
        """The recorded spikes as ``(times_ms, neuron_indices)`` NumPy arrays, sorted by time (then by
        position in ``record``), from ``raster`` or ``spikes``; times in ms from the run's start (add
        `start_ms` for the state's time, in which pulses are placed). Of one run: raises ``ValueError`` for a
        batch of runs."""
        self._check_one_run("spike_trains")
        if self.spikes is None:
            return super().spike_trains()
        spikes = np.asarray(self.spikes)
        steps, slots = np.nonzero(spikes >= 0)
        return (steps + 1) * self.dt, np.asarray(self.record)[spikes[steps, slots]]


class _PoissonDrive(eqx.Module):
    """A `Background` resolved at build time: per-neuron mean inputs per step, weight and Poisson CDF."""

    mean: Float[Array, " n"]  # expected inputs per step, rate·dt
    weight: Float[Array, " n"]
    cdf: Float[Array, "K n"]  # P(count ≤ k), k = 0 … K − 1, with P(count > K) < 2⁻²⁴ at the largest mean
    receptor: str = eqx.field(static=True)

    @classmethod
    def build(cls, mean: Float[np.ndarray, " n"], weight: Float[Array, " n"], receptor: str) -> _PoissonDrive:
        """From the mean inputs per step (float64): the CDF rows computed once, in float64, for `counts`."""
        mean = np.asarray(mean, np.float64)
        p = np.exp(-mean)
        rows = [p.copy()]
        for k in range(1, _poisson_terms(float(mean.max(initial=0.0)))):
            p *= mean / k
            rows.append(rows[-1] + p)
        dtype = weight.dtype
        cdf = np.stack(rows) if mean.max(initial=0.0) > 0 else np.zeros((0, mean.size))
        return cls(jnp.asarray(mean, dtype), weight, jnp.asarray(cdf, dtype), receptor)

    def counts(self, seed: Array, step: Array, stream: int, first: Array | int = 0) -> Float[Array, " n"]:
        """Poisson counts for ``step``, by inverse CDF of one counter-based uniform per neuron: the number of
        CDF rows at or below it. The uniforms have 24 bits, so P(count ≥ 1) is resolved to 2⁻²⁴ against a
        float32 CDF: exact to 0.01 % down to 10⁻³ inputs per step, 1.3 % high at 10⁻⁶ (0.1 Hz at dt 0.01 ms),
        19 % at 10⁻⁷, and no input below 6·10⁻⁸ (background rates are kHz, 0.1–1 inputs per step). (The CDF
        was computed each step until the table replaced it: its ``exp`` and multiply chain cost ~half of the
        Potjans–Diesmann microcircuit's step at scale 0.1.) ``first``: the global index of this drive's first
        neuron (a device's block in `simulate_network_sharded`)."""
        u = _uniforms(seed, step, stream, self.mean.shape[0], first).astype(self.cdf.dtype)
        count = jnp.zeros_like(u)
        for k in range(self.cdf.shape[0]):
            count = count + (u >= self.cdf[k])
        return count


def _lowbias32(x: Array) -> Array:
    """A 32-bit integer hash with full avalanche (C. Wellons' "lowbias32", 2018)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _uniforms(seed: Array, step: Array, stream: int, n: int, first: Array | int = 0) -> Float[Array, " n"]:
    """``n`` uniforms in [0, 1) (24 bits) for one step, a hash of (seed, stream, step, neuron), for neurons
    ``first … first + n − 1``.

    A counter-based generator that costs a few integer operations per number and fuses with the step:
    inside the scan (5,800 neurons) it measured ~1 ns per number against ~12 ns for `jax.random` (threefry),
    which was 10–20× the whole neuron update; `jax.random.poisson` cost ~0.4 µs per number.
    """
    h = _lowbias32(_lowbias32(step.astype(jnp.uint32) ^ seed[0]) + seed[1] + jnp.uint32(stream))
    neuron = jnp.arange(n, dtype=jnp.uint32) + jnp.asarray(first).astype(jnp.uint32)
    x = _lowbias32(neuron * jnp.uint32(0x9E3779B9) + h)
    # A second, independent word of (seed, stream, step) mixed in non-linearly: with ``x`` alone, two steps
    # whose ``h`` differ by k·0x9E3779B9 (|k| < n; thousands of pairs in 10⁴ steps of 77k neurons) would
    # draw the same numbers, shifted by k neurons.
    x = _lowbias32(x ^ _lowbias32(h + jnp.uint32(0x2545F491)))
    return (x >> 8).astype(jnp.float32) * (1.0 / (1 << 24))


def _poisson_terms(mean_max: float) -> int:
    """The smallest K with P(X > K) < 2⁻²⁴ for X ~ Poisson(mean_max)."""
    if mean_max <= 0:
        return 0
    p = cdf = np.exp(-mean_max)
    k = 0
    while 1.0 - cdf >= 2.0**-24:
        k += 1
        p *= mean_max / k
        cdf += p
    return max(k, 1)


def _seed(key: PRNGKeyArray) -> Array:
    """Two uint32 words from a JAX key (typed or raw), for the counter-based background noise."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    words = jnp.asarray(key).ravel().astype(jnp.uint32)
    return jnp.stack([words[0], _lowbias32(words[-1] + jnp.uint32(0x632BE5AB))])


def _step_seed(seed) -> UInt32[Array, "2"]:
    """`Network.step`'s ``seed`` as the background's two uint32 words: a typed key derived as `simulate`
    derives its background's (`_seed` of the second half of ``jax.random.split``), the words as they are."""
    dtype = getattr(seed, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and jnp.ndim(seed) == 0:
        return _seed(jax.random.split(seed)[1])
    if dtype == jnp.uint32 and jnp.shape(seed) == (2,):
        return seed
    got = f"{dtype}{list(jnp.shape(seed))}" if dtype is not None else type(seed).__name__
    raise ValueError(
        "`seed` must be the simulation key, one jax.random.key(...) as passed to `simulate`, or the "
        f"uint32[2] words `simulate` derives from it, got {got}."
    )


class Network(eqx.Module):
    r"""A spiking network: named populations of one neuron model (parameters scalar or per neuron), named
    receptors on every neuron, sparse delayed synapses per receptor, constant and Poisson input.

    Per step of ``dt`` ms, for each receptor ``r``: ``x_r = Σ_delayed spikes·W_r`` (read from its arrival
    ring, see `DelayedCSR`) ``+ Σ_background counts·weight``; ``(state_r, g_r) = r.step(state_r, x_r, dt)``;
    then the neuron steps with ``I = Σ_r r.current(g_r, V) + I_ext + I_gap + pulses``
    (pA), with ``I_gap,i = Σ_j g_ji (V_j − V_i)`` over gap junctions (two `ops.csr_matvec`). Receptors hold
    their state on the postsynaptic side, so they must be linear in their input (`synapses.Expon`, `Alpha`,
    `DualExpon`); use ``g_max = 1`` so that the weights carry the unit (nS or pA).

    Build with `Network.build`; simulate with `Network.simulate`. The weights are the ``data`` of
    ``projections[receptor].W`` (differentiable; `weights` and `with_weights` read and set them per edge).

    Attributes:
        neuron: the neuron model, parameters scalar or ``[n]``.
        receptors: receptor name → synapse model (parameters scalar or ``[n]``).
        projections: receptor name → its synapses (`DelayedCSR`); receptors without synapses are absent.
        edge_slots: receptor name → for each edge given to `build`, its synapse's index in ``W.data``.
        drives: the Poisson backgrounds.
        gap: gap-junction conductances ``[n, n]`` (row: the neuron whose potential is felt), nS, or None.
        I_ext: constant current, pA, ``[n]``.
        dt: the time step, ms (static; `simulate` uses it).
        names, sizes: the populations, in order; population ``p`` is neurons ``offsets[p]:offsets[p + 1]``.
        receptor_names: the receptors in the order their currents are summed.
        ring_length: slots of each arrival ring: the longest delay in steps (``round(D/dt) + 1``).

    Examples:
        >>> import jax
        >>> from diffbrain import zoo
        >>> from diffbrain.zoo import networks
        >>> net = networks.Network.build(
        ...     sizes={"E": 2, "I": 1},
        ...     neuron=zoo.LIF(),
        ...     receptors={"exc": zoo.Expon(tau=5.0, mode="cuba")},
        ...     edges={"exc": networks.Edges(pre=[0, 1], post=[2, 2], weight=300.0, delay=1.5)},
        ...     dt=0.1,
        ...     I_ext=[500.0, 0.0, 0.0],
        ... )
        >>> net.n, net.ring_length, net.slices["I"]
        (3, 16, slice(2, 3, None))
        >>> result = net.simulate(100.0, jax.random.key(0))
        >>> result.counts.shape, result.rates().shape
        ((1000, 2), (2,))
    """

    neuron: AbstractSpikingNeuron
    receptors: dict[str, AbstractSynapse]
    projections: dict[str, DelayedCSR]
    edge_slots: dict[str, Int[Array, " nnz"]]
    drives: tuple[_PoissonDrive, ...]
    gap: CSR | None
    I_ext: Float[Array, " n"]
    dt: float = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True)
    sizes: tuple[int, ...] = eqx.field(static=True)
    receptor_names: tuple[str, ...] = eqx.field(static=True)
    ring_length: int = eqx.field(static=True)

    @property
    def n(self) -> int:
        """Number of neurons."""
        return sum(self.sizes)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Population boundaries: ``(0, n_0, n_0 + n_1, …, n)``."""
        return tuple(int(x) for x in np.cumsum((0, *self.sizes)))

    @property
    def slices(self) -> dict[str, slice]:
        """Population name → its neurons' slice of global indices."""
        offsets = self.offsets
        return {name: slice(offsets[p], offsets[p + 1]) for p, name in enumerate(self.names)}

    @classmethod
    def build(
        cls,
        *,
        sizes: Mapping[str, int],
        neuron: AbstractSpikingNeuron,
        receptors: Mapping[str, AbstractSynapse],
        edges: Mapping[str, Edges | Iterable[Edges]],
        dt: float = 0.1,
        background: Background | Sequence[Background] | None = None,
        I_ext: Float[ArrayLike, "*n"] | float = 0.0,
        gap_junctions: GapJunctions | None = None,
    ) -> Network:
        """A network from concrete NumPy-like arrays (outside ``jit``); never allocates an ``n × n`` matrix.

        The weights are used as given. Each step's receptor output ``g``, the end-of-step value with the
        spikes that just arrived, is held over the neuron's step, so with a `synapses.Expon` receptor of time
        constant ``τ`` (ms) a spike of weight ``w`` delivers ``w·dt/(1 − e^{−dt/τ})`` of charge (pA·ms with a
        current-based receptor) instead of the continuous PSC's ``w·τ``: +1 % at τ = 5 ms, +10 % at
        τ = 0.5 ms (dt = 0.1 ms), and the PSPs grow alike. To match the continuous PSC, pass weights scaled
        by ``τ(1 − e^{−dt/τ})/dt``, as `Microcircuit.build` does.

        Args:
            sizes: population name → number of neurons, in order.
            neuron: any zoo spiking neuron; its parameters scalar or ``[n]``; its floating dtype is the
                network's (cast it with `zoo.astype` for float64; float16 and bfloat16 are refused: their
                spike counts are wrong).
            receptors: receptor name → synapse model linear in its input, ``g_max`` 1 (see the class doc);
                its floating parameters are cast to the network's dtype.
            edges: receptor name → its synapses: `Edges`, a sequence of them (concatenated), or any other
                iterable of them (e.g. a generator), streamed: each part is validated and grouped before the
                next one is drawn, so that only one part's edges exist at once (`Microcircuit.build` streams
                3·10⁸ synapses so); a streamed part's presynaptic neurons must all be above those of the
                parts before it. Synapses that repeat (pre, post, delay step) are merged into one with the
                summed weight; either way the network is that of the concatenated edges, and its edge slots
                follow their order.
            dt: the time step, ms; a delay ``D`` becomes a lag of ``round(D/dt) + 1`` steps. A float32 (or
                narrower) ``dt`` stands for its shortest decimal (`step_ms`: ``np.float32(0.1)`` is 0.1 ms).
            background: Poisson input (`Background`, or several).
            I_ext: constant current per neuron, scalar or ``[n]``, in the neuron's input unit (pA for
                `LIF` and `AdEx`; current-based weights, pulses and background weights use it too).
            gap_junctions: electrical synapses (`GapJunctions`); repeated pairs are summed. Their currents
                are in pA, so the neuron must take its input in pA (``neuron.input_unit``).

        Raises:
            ValueError: naming the argument — bad sizes, unknown receptor names, indices out of range,
                non-finite weights or delays, negative delays, negative conductances, delays too long to
                keep, bad background rates, streamed parts out of presynaptic order, conductance-based
                receptors or gap junctions with a neuron whose input is not in pA.
            TypeError: the neuron or a receptor is not a zoo spiking neuron / synapse.
        """
        dt = step_ms(check_dt(dt))
        names, size_list = _check_sizes(sizes)
        n = sum(size_list)
        if not isinstance(neuron, AbstractSpikingNeuron):
            raise TypeError(f"`neuron` must be a zoo AbstractSpikingNeuron, got {type(neuron).__name__}.")
        _check_population_shape("neuron", neuron.shape, n)
        # float32 unless x64 is on (a neuron made while x64 was on may hold float64 arrays after it is off)
        dtype = jax.dtypes.canonicalize_dtype(neuron.init_state((n,)).V.dtype)
        refuse_half_precision("Network.build", dtype)
        receptors = dict(receptors)
        for name, receptor in receptors.items():
            if not isinstance(receptor, AbstractSynapse):
                raise TypeError(
                    f"`receptors[{name!r}]` must be a zoo AbstractSynapse (e.g. synapses.Expon), got "
                    f"{type(receptor).__name__}."
                )
            if isinstance(receptor, AbstractKineticSynapse | NMDA):
                raise ValueError(
                    f"`receptors[{name!r}]` is a saturating synapse ({type(receptor).__name__}): its "
                    "response to a summed weighted input is not the sum of its responses, so weights would "
                    "not be nS. Use a linear one (synapses.Expon, Alpha or DualExpon)."
                )
            _check_population_shape(f"receptors[{name!r}]", receptor.shape, n)
            if receptor.mode == "coba" and neuron.input_unit != "pA":
                raise ValueError(
                    f"`receptors[{name!r}]` is conductance-based (a current in pA) but "
                    f"{type(neuron).__name__} takes its input in {neuron.input_unit}; use current-based "
                    "receptors (mode='cuba') with weights in that unit."
                )
        if not receptors:
            raise ValueError("`receptors` must name at least one receptor, e.g. {'exc': Expon(...)}.")
        if gap_junctions is not None and neuron.input_unit != "pA":
            raise ValueError(
                f"`gap_junctions` carry currents in pA (nS × mV) but {type(neuron).__name__} takes its input "
                f"in {neuron.input_unit}; use a neuron that takes pA (e.g. LIF, AdEx) or leave them out."
            )
        # the receptors' states are carried with the neurons': one floating dtype, the network's
        receptors = {name: astype(receptor, dtype) for name, receptor in receptors.items()}
        projections, edge_slots = {}, {}
        for name, given in dict(edges).items():
            _known_receptor("edges", name, receptors)
            built = _projection(name, given, n, dt, receptors[name].mode, dtype)
            if built is not None:  # receptors without synapses have no projection
                projections[name], edge_slots[name] = built
            del built
        ring_length = max([1, *(projection.max_lag for projection in projections.values())])
        drives = tuple(_drive(b, i, n, dt, dtype, receptors) for i, b in enumerate(_as_list(background)))
        I_ext = _per_neuron("I_ext", I_ext, n, dtype)
        gap = None if gap_junctions is None else _gap_csr(gap_junctions, n, dtype)
        return cls(
            neuron,
            receptors,
            projections,
            edge_slots,
            drives,
            gap,
            I_ext,
            dt,
            names,
            size_list,
            tuple(receptors),
            ring_length,
        )

    def weights(self, receptor: str) -> Float[Array, " nnz"]:
        """The weight of each edge given to `build` for ``receptor``, in the given order. Edges merged into
        one synapse share its weight equally (100 and 200 merged report 150 each), so the weights sum to
        the synapses' and ``with_weights(receptor, weights(receptor))`` is the same network."""
        _known_receptor("receptor", receptor, self.receptor_names)
        if receptor not in self.projections:  # a receptor without synapses
            return jnp.zeros(0, self.I_ext.dtype)
        W = self.projections[receptor].W
        slots = self.edge_slots[receptor]
        per_synapse = jnp.broadcast_to(W.data, (W.nnz,))
        if slots.size == W.nnz:  # no merged edges
            return per_synapse[slots]
        merged = jnp.zeros(W.nnz, jnp.int32).at[slots].add(1)
        return (per_synapse / jnp.maximum(merged, 1).astype(per_synapse.dtype))[slots]

    def with_weights(self, receptor: str, weight: Float[ArrayLike, "*nnz"]) -> Network:
        """The same network with new weights for ``receptor``: ``[nnz]`` (one per edge given to `build`,
        summed into merged repeats; differentiable) or one shared scalar, in the receptor's unit: ≥ 0 nS
        for a conductance-based receptor, as `build` checks (traced weights, inside ``jit`` or ``grad``,
        are not checked). A receptor without synapses takes only an empty ``[0]`` array (its `weights`)
        and returns the network itself."""
        _known_receptor("receptor", receptor, self.receptor_names)
        if not isinstance(weight, jax.core.Tracer):  # a complex weight would lose its imaginary part
            dtype = getattr(weight, "dtype", None)  # an array's dtype alone: no copy from the device
            _real_array("weight", weight if dtype is None else np.empty(0, dtype))
        _check_conductances("weight", receptor, self.receptors[receptor].mode, weight)
        if receptor not in self.projections:
            if np.shape(weight) != (0,):
                raise ValueError(
                    f"`weight`: the receptor {receptor!r} has no synapses, so it takes no weights; pass an "
                    f"empty array (as `weights({receptor!r})` gives), got shape {np.shape(weight)}."
                )
            return self
        projection = self.projections[receptor]
        weight = jnp.asarray(weight, projection.W.data.dtype)
        slots = self.edge_slots[receptor]
        if weight.shape not in ((), slots.shape):
            raise ValueError(f"`weight` must be a scalar or have shape {slots.shape}, got {weight.shape}.")
        if weight.ndim or slots.size != projection.W.nnz:  # per edge, or shared by edges that were merged
            per_edge = jnp.broadcast_to(weight, slots.shape)
            weight = jnp.zeros(projection.W.nnz, weight.dtype).at[slots].add(per_edge)
        return eqx.tree_at(lambda net: net.projections[receptor].W, self, projection.W.with_data(weight))

    def init_state(
        self, key: PRNGKeyArray | None = None, V: Float[ArrayLike, "*n"] | None = None
    ) -> NetworkState:
        """Time zero: ``V`` as given, else uniform in ``[V_reset, V_th)`` drawn with ``key`` for neurons that
        have both (the neuron's resting state otherwise); receptors closed; no spikes in the history."""
        neurons = self.neuron.init_state((self.n,))
        dtype = jax.dtypes.canonicalize_dtype(neurons.V.dtype)
        if V is not None:
            neurons = neurons._replace(V=_per_neuron("V", V, self.n, dtype))
        elif key is not None and hasattr(self.neuron, "V_reset") and hasattr(self.neuron, "V_th"):
            low, high = self.neuron.V_reset, self.neuron.V_th
            neurons = neurons._replace(V=jax.random.uniform(key, (self.n,), dtype, low, high))
        receptors = {name: r.init_state((self.n,)) for name, r in self.receptors.items()}
        ring = {name: jnp.zeros((self.ring_length, self.n), dtype) for name in self.projections}
        return NetworkState(neurons, receptors, ring, jnp.zeros((), jnp.int32), jnp.zeros(self.n, bool))

    def step(
        self,
        state: NetworkState,
        seed: PRNGKeyArray | UInt32[Array, "2"],
        pulses: tuple[tuple[Array, Array, Array], ...] = (),
        surrogate: bool = False,
        detach_recurrent: bool = True,
    ) -> tuple[NetworkState, Array]:
        """One step of ``dt`` ms (see the class doc). ``seed`` drives the background: the simulation key
        itself, a typed ``jax.random.key`` as `simulate` takes it (the step then draws the background that
        ``simulate(..., key)`` draws at ``state.step``), or the uint32[2] words `simulate` derives from that
        key's second half, which is also how a raw uint32[2] ``jax.random.PRNGKey`` is taken (wrap it with
        ``jax.random.wrap_key_data`` to draw what `simulate` draws with it). ``pulses`` are
        ``(current [n] pA, start step, stop step)``. With ``surrogate`` spikes are floats from the neuron's
        surrogate Heaviside (differentiable); ``detach_recurrent`` stops the gradient through the spikes fed
        back into the network (it still reaches the weights, synapses and membranes). Returns the new state
        and the step's spikes ``[n]`` (bool, or float with ``surrogate``).

        Raises:
            ValueError: ``seed`` is neither one typed key nor a uint32[2] array.
        """
        seed = _step_seed(seed)
        fed = jax.lax.stop_gradient(state.spikes) if detach_recurrent else state.spikes
        return self._advance(state, fed, seed, pulses, surrogate, state.neurons.V, 0)

    def _advance(
        self,
        state: NetworkState,
        fed: Array,
        seed: Array,
        pulses: tuple[tuple[Array, Array, Array], ...],
        surrogate: bool,
        V_felt: Array,
        first: Array | int,
    ) -> tuple[NetworkState, Array]:
        """`step` given the spikes ``fed`` to the arrival rings (one per row of ``row_ptr``), the potentials
        ``V_felt`` that the gap junctions' rows read, and ``first``, the global index of this network's first
        neuron: on one device ``state.spikes``, ``V`` and 0; a device's block of neurons in
        `simulate_network_sharded` (whose synapses and gap junctions are that block's columns) feeds every
        neuron's spikes and potentials."""
        t = state.step
        V = state.neurons.V
        ring, inputs = {}, {}  # last step's spikes into the rings, and what arrives now out of them
        for name, projection in self.projections.items():
            ring[name], inputs[name] = projection.scatter(fed, state.ring[name], t - 1)
        for stream, drive in enumerate(self.drives):
            arriving = drive.counts(seed, t, stream, first) * drive.weight
            inputs[drive.receptor] = (
                inputs[drive.receptor] + arriving if drive.receptor in inputs else arriving
            )
        receptor_states, current = {}, None
        for name in self.receptor_names:
            receptor = self.receptors[name]
            x = inputs.get(name, jnp.zeros_like(V))
            receptor_states[name], g = receptor.step(state.receptors[name], x, self.dt)
            term = receptor.current(g, V)
            current = term if current is None else current + term
        current = current + self.I_ext
        if self.gap is not None:  # Σ_j g_ji (V_j − V_i): the neighbours' potentials minus the total leak
            leak = csr_matvec(jnp.ones_like(V_felt), self.gap)
            current = current + csr_matvec(V_felt, self.gap) - V * leak
        for amplitude, start, stop in pulses:
            current = current + jnp.where((t >= start) & (t < stop), amplitude, 0.0)
        neurons, spike = self.neuron.step(state.neurons, current, self.dt)
        spike = spike if surrogate else spike > 0
        return NetworkState(neurons, receptor_states, ring, t + 1, spike), spike

    def simulate(
        self,
        duration_ms: float,
        key: PRNGKeyArray | None,
        *,
        dt: float | None = None,
        record: int | Int[ArrayLike, " r"] = 0,
        state: NetworkState | None = None,
        surrogate: bool = False,
        detach_recurrent: bool = True,
        pulse: Pulse | Sequence[Pulse] | None = None,
        unroll: int = 1,
        checkpoint: int | None = None,
        max_spikes_per_step: int | None = None,
        check_finite: bool = True,
        event_scan: bool = False,
    ) -> NetworkResult:
        """Simulate for ``duration_ms`` ms with a jitted `lax.scan`.

        Args:
            duration_ms: simulated time, ms (a multiple of ``dt``).
            key: with ``k0, k1 = jax.random.split(key)``, ``k0`` draws the initial potentials (when
                ``state`` is None: ``simulate(T, key)`` is ``simulate(T, key, state=init_state(k0))``) and
                ``k1`` the Poisson background, whose numbers depend on the absolute step, so a run continued
                from its ``final_state`` with the same key continues the same background. May be None only
                for a network without background that continues from ``state``.
            dt: if given, must equal the network's ``dt`` (delays were rounded to it at build time), up to
                float rounding: ``np.float32(0.1)`` equals 0.1.
            record: neuron indices whose spikes to keep (or k: neurons 0 … k − 1).
            state: the state to continue from (of this network: `init_state` or a result's
                ``final_state``); default `init_state` with ``key``.
            surrogate: float surrogate spikes (differentiable counts) instead of bool events.
            detach_recurrent: with ``surrogate``, stop the gradient through recurrent spikes (see `step`).
            pulse: current pulses (`Pulse`), placed in the state's absolute time.
            unroll: steps unrolled per scan iteration, a positive integer or a bool (True: all), as for
                `lax.scan`.
            checkpoint: for gradients of long runs: keep the state every ``checkpoint`` steps and recompute
                the steps in between during the backward pass (`jax.checkpoint`), so memory holds
                ``T/checkpoint`` states (delay rings included) and ``checkpoint`` steps' residuals instead
                of ``T`` steps' residuals; with long delays the state is large and the best ``checkpoint``
                is above √T (see `diffbrain.ops.event_scan`; a small one can cost more than None). None:
                keep every step.
            max_spikes_per_step: keep the recorded spikes as indices (``result.spikes``, ``[T, K]`` int32)
                instead of a dense raster, at most this many per step; a step with more raises an error
                (`equinox.error_if`) that names this argument. None: the raster ``[T, len(record)]``.
            check_finite: raise (also inside ``jit``) if the final state holds NaN or inf, as `zoo.simulate`.
            event_scan: run the steps with `ops.event_scan` instead of `lax.scan`, for gradients w.r.t.
                per-synapse weights (``W.data``) of large networks: reverse mode then adds each step's
                weight gradient in place on the synapses of the neurons that fired, where `lax.scan` makes
                and sums an ``[nnz]`` array per step. The same values and gradients, and otherwise
                `lax.scan`'s reverse mode (its residuals, ``checkpoint``), forward mode and `jax.vmap`.
                Measured on 2 cores (``diffbrain bench network_gradient``, the leaderboard): the
                Potjans–Diesmann microcircuit at scale 0.1 (7,717 neurons, 2.9·10⁷ synapses), 100 ms with
                surrogate spikes, the gradient of every parameter took 9.0 s through `lax.scan` (54× the
                forward run, 447 MiB of temporaries) and 0.43 s with ``event_scan`` (2.6× the forward run,
                378 MiB; 0.61 s and 305 MiB with ``checkpoint=100``), the same gradient to the bit; 16×
                faster than `lax.scan` at scale 0.02, 21× at 0.05 and at 0.1.

        Returns:
            A `NetworkResult`; ``result.rates()`` in Hz per population.
        """
        n_steps, record = _check_run(self, duration_ms, dt, record)
        _check_count("checkpoint", checkpoint, "a positive number of steps")
        _check_count("max_spikes_per_step", max_spikes_per_step, "a positive integer")
        unroll = checked_unroll(unroll)
        state, seed = self._start(key, state, surrogate)
        refuse_half_precision_run("Network.simulate", self, state)
        pulses = tuple(self._pulse(p) for p in _as_list(pulse))
        counts, raster, state = _run(
            self,
            state,
            seed,
            pulses,
            jnp.asarray(record),
            self._population(),
            n_steps,
            surrogate,
            detach_recurrent,
            unroll,
            None if checkpoint is None else int(checkpoint),
            None if max_spikes_per_step is None else min(int(max_spikes_per_step), record.size),
            bool(event_scan),
        )
        if check_finite:
            state, counts = _fail_on_nonfinite(state, counts)
        spikes = None
        if max_spikes_per_step is not None:
            raster, spikes = None, raster
        return NetworkResult(
            self.dt, self.names, self.sizes, counts, raster, jnp.asarray(record), state, spikes
        )

    def _start(
        self, key: PRNGKeyArray | None, state: NetworkState | None, surrogate: bool
    ) -> tuple[NetworkState, Array]:
        """`simulate`'s initial state (given, or drawn with the first half of ``key``), its spikes as
        ``surrogate`` asks, and the background's seed (from the second half)."""
        if key is None and (state is None or self.drives):
            raise ValueError(
                "`key` may be None only when continuing from `state` in a network without background input."
            )
        if key is not None:  # the initial potentials and the background from independent keys
            check_key(key, "it draws the initial potentials and the background (see `simulate`)")
            init_key, key = jax.random.split(key)
        if state is None:
            state = self.init_state(init_key)
        else:
            _check_state(self, state)
        return with_spike_dtype(state, surrogate), _seed(key) if key is not None else jnp.zeros(2, jnp.uint32)

    def _population(self) -> Int[Array, " n"]:
        """Each neuron's population index."""
        return jnp.asarray(np.repeat(np.arange(len(self.sizes)), self.sizes), jnp.int32)

    def _pulse(self, pulse: Pulse) -> tuple[Array, Array, Array]:
        if not isinstance(pulse, Pulse):
            raise TypeError(
                f"`pulse` must be a networks.Pulse or a sequence of them, got {type(pulse).__name__}."
            )
        neurons = _indices("pulse.neurons", pulse.neurons, self.n)
        current = pulse.current  # traced under jax.grad of its amplitude: checked where concrete
        concrete = not isinstance(current, jax.core.Tracer)
        if np.shape(current) not in ((), neurons.shape) or (
            concrete and not np.all(np.isfinite(_real_array("pulse.current", current).astype(float)))
        ):
            raise ValueError(
                f"`pulse.current` must be finite, one value or one per neuron ({neurons.size}), got "
                f"shape {np.shape(current)}."
            )
        if not (
            np.isfinite(pulse.start_ms)
            and np.isfinite(pulse.stop_ms)
            and 0 <= pulse.start_ms <= pulse.stop_ms
        ):
            raise ValueError(
                f"`pulse` needs 0 ≤ start_ms ≤ stop_ms, got {pulse.start_ms} and {pulse.stop_ms}."
            )
        current = jnp.broadcast_to(jnp.asarray(current, self.I_ext.dtype), neurons.shape)
        amplitude = jnp.zeros(self.n, self.I_ext.dtype).at[neurons].add(current)  # a neuron listed twice: 2×
        # the int32 step counter's last step stands for "never": a later time cast to int32 would wrap
        start, stop = (
            jnp.asarray(np.minimum(steps_of(ms, self.dt), _NEVER_STEP), jnp.int32)
            for ms in (pulse.start_ms, pulse.stop_ms)
        )
        return amplitude, start, stop


@functools.partial(jax.jit, static_argnums=(6, 7, 8, 9, 10, 11, 12))
def _run(
    net,
    state,
    seed,
    pulses,
    record,
    population,
    n_steps,
    surrogate,
    detach_recurrent,
    unroll,
    checkpoint,
    capacity,
    event,
):
    def body(params, state, _):
        net, seed, pulses, record, population = params
        state, s = net.step(state, seed, pulses, surrogate, detach_recurrent)
        return state, _record_step(s, population, len(net.sizes), record, surrogate, capacity)

    params = (net, seed, pulses, record, population)
    state, (counts, raster) = _scan_steps(body, params, state, n_steps, unroll, checkpoint, event)
    return counts, raster, state


def _record_step(
    spikes: Array, population: Array, n_pops: int, record: Array, surrogate: bool, capacity: int | None
) -> tuple[Array, Array]:
    """What a simulation keeps of one step's spikes ``[n]``: the counts per population and the recorded
    neurons' raster row, or with ``capacity`` the positions in ``record`` of those that fired (−1 padded;
    an `equinox.error_if` when more fired)."""
    counts = jax.ops.segment_sum(
        spikes if surrogate else spikes.astype(jnp.int32), population, n_pops, indices_are_sorted=True
    )
    raster = (spikes[record] > 0) if surrogate else spikes[record]
    if capacity is not None:
        fired = raster
        raster = eqx.error_if(_fired_positions(fired, capacity), jnp.sum(fired) > capacity, _TOO_MANY_SPIKES)
    return counts, raster


_TOO_MANY_SPIKES = (
    "more recorded neurons fired in one step than `max_spikes_per_step`; raise it (or record fewer neurons)."
)


def _fired_positions(fired: Bool[Array, " r"], size: int) -> Int[Array, " size"]:
    """The positions of the neurons that fired (``fired``, one step's raster), ascending, −1 padded to
    ``size`` (those past ``size`` left out)."""
    return jnp.nonzero(fired, size=size, fill_value=-1)[0].astype(jnp.int32)


def with_spike_dtype(state, surrogate: bool):
    """``state`` (a NamedTuple with ``spikes`` and ``neurons.V``) with its spikes as a run takes them:
    floats of V's dtype for a surrogate run, bools otherwise, so a run continues another's final state."""
    return state._replace(spikes=state.spikes.astype(state.neurons.V.dtype if surrogate else bool))


def _scan_steps(body, params, carry, n_steps: int, unroll: int, checkpoint: int | None, event: bool = False):
    """``n_steps`` steps of ``body(params, carry, None) → (carry, y)``: `lax.scan` with ``unroll``, and with
    ``checkpoint`` in segments of that many steps whose insides the backward pass recomputes
    (`jax.checkpoint`); with ``event``, `ops.event_scan` (its own ``checkpoint``)."""
    if event:
        unroll = min(unroll, max(n_steps, 1))
        return ops.event_scan(body, params, carry, length=n_steps, unroll=unroll, checkpoint=checkpoint)

    def steps(carry, length):
        return jax.lax.scan(
            lambda carry, x: body(params, carry, x),
            carry,
            None,
            length=length,
            unroll=min(unroll, max(length, 1)),
        )

    if checkpoint is None or checkpoint >= n_steps:
        return steps(carry, n_steps)
    segments, rest = divmod(n_steps, checkpoint)
    segment = jax.checkpoint(lambda carry, _: steps(carry, checkpoint))
    carry, outputs = jax.lax.scan(segment, carry, None, length=segments)
    outputs = jax.tree.map(lambda x: x.reshape(segments * checkpoint, *x.shape[2:]), outputs)
    if rest:
        carry, tail = steps(carry, rest)
        outputs = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), outputs, tail)
    return carry, outputs


def simulate_network(net: Network, duration_ms: float, key: PRNGKeyArray | None, **kwargs) -> NetworkResult:
    """`Network.simulate` as a function (``kwargs`` go to it)."""
    if not isinstance(net, Network):
        raise TypeError(f"`net` must be a networks.Network, got {type(net).__name__}.")
    return net.simulate(duration_ms, key, **kwargs)


# --- validation ---------------------------------------------------------------------------------------------


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # one NamedTuple, not a sequence of them
        return [value]
    return list(value)


def _check_sizes(sizes) -> tuple[tuple[str, ...], tuple[int, ...]]:
    if not isinstance(sizes, Mapping) or not sizes:
        raise ValueError(f"`sizes` must be a non-empty mapping population name → size, got {sizes!r}.")
    for name, size in sizes.items():
        if not isinstance(name, str):
            raise ValueError(f"`sizes` keys must be population names (str), got {name!r}.")
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ValueError(f"`sizes[{name!r}]` must be a positive integer, got {size!r}.")
    return tuple(sizes), tuple(int(s) for s in sizes.values())


def _check_population_shape(name: str, shape: tuple[int, ...], n: int) -> None:
    if shape not in ((), (n,)):
        raise ValueError(
            f"`{name}` has parameters of shape {shape}; give scalars or one value per neuron, shape ({n},)."
        )


def _known_receptor(argument: str, name, known) -> str:
    if name not in known:
        raise ValueError(f"`{argument}` names the receptor {name!r}, which is not one of {sorted(known)}.")
    return name


def _indices(name: str, value, n: int) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise ValueError(f"`{name}` must be a 1-D integer array, got {array.dtype}{list(array.shape)}.")
    if array.size and (array.min() < 0 or array.max() >= n):
        raise ValueError(
            f"`{name}` must hold neuron indices in [0, {n}), got values in [{array.min()}, {array.max()}]."
        )
    if not np.issubdtype(array.dtype, np.integer) or (array.dtype.kind == "u" and array.itemsize == 8):
        # an empty list; uint64 (< n here), which NumPy mixes with int64 into float64 (narrower ints: no copy)
        array = array.astype(np.int64)
    return array


def _per_edge(name: str, value, size: int) -> np.ndarray:
    """A validated scalar or ``[size]`` float array (float32 stays float32: no copy of a large input)."""
    array = _real_array(name, value)
    if not jnp.issubdtype(array.dtype, jnp.floating):  # (bfloat16 is floating too)
        array = array.astype(float)
    if array.shape not in ((), (size,)):
        raise ValueError(f"`{name}` must be a scalar or have shape ({size},), got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must be finite, got NaN or infinite values.")
    return array


def _real_array(name: str, value) -> np.ndarray:
    """``value`` as a NumPy array of real numbers (any real dtype, bool included), or a ``ValueError`` naming
    ``name``: a complex value would lose its imaginary part, a string is no number."""
    array = np.asarray(value)
    if jnp.issubdtype(array.dtype, jnp.floating):  # (bfloat16 is floating, though NumPy's kind is "V")
        return array
    if array.dtype == object:  # e.g. Python Fractions: real if they convert (complex numbers raise)
        try:
            return array.astype(float)
        except (TypeError, ValueError):
            pass
    elif array.dtype == bool or np.issubdtype(array.dtype, np.integer):
        return array
    if np.issubdtype(array.dtype, np.complexfloating):
        fix = "pass its real part (np.real) or magnitude (np.abs) explicitly"
    else:
        fix = "pass numbers (a float or an array of floats)"
    raise ValueError(f"`{name}` must hold real numbers, got dtype {array.dtype}; {fix}.")


def _edge_part(receptor: str, index: int | None, e, n: int, dt: float, mode: str):
    """Part ``index`` (None: the only one) of ``receptor``'s `Edges`, validated: (pre, post, weight, lag
    steps), the given arrays themselves when they have the right types (no copy of a large input)."""
    where = f"edges[{receptor!r}]" + ("" if index is None else f"[{index}]")
    if not isinstance(e, Edges):
        raise TypeError(f"`{where}` must be networks.Edges, got {type(e).__name__}.")
    pre, post = _indices(f"{where}.pre", e.pre, n), _indices(f"{where}.post", e.post, n)
    if pre.shape != post.shape:
        raise ValueError(
            f"`{where}.pre` and `.post` must have equal lengths, got {pre.size} and {post.size}."
        )
    weight = _per_edge(f"{where}.weight", e.weight, pre.size)
    _check_conductances(f"{where}.weight", receptor, mode, weight)
    delay = _per_edge(f"{where}.delay", e.delay, pre.size)
    if np.any(delay < 0):
        raise ValueError(f"`{where}.delay` must be ≥ 0 ms, got minimum {delay.min()}.")
    return pre, post, weight, np.broadcast_to(_steps(delay, dt), pre.shape)


def _check_conductances(name: str, receptor: str, mode: str, weight) -> None:
    """A conductance-based (``mode="coba"``) receptor's weights are ≥ 0 nS: its reversal potential gives
    the sign. Traced weights (inside ``jit`` or ``grad``) are not checked."""
    if mode == "coba" and not isinstance(weight, jax.core.Tracer) and np.any(np.asarray(weight) < 0):
        raise ValueError(
            f"`{name}` must be ≥ 0 nS for the conductance-based receptor {receptor!r} (the reversal "
            "potential gives the sign); use a receptor with an inhibitory E instead."
        )


def _edge_arrays(receptor: str, given: Edges | Sequence[Edges], n: int, dt: float, mode: str):
    """Concatenated, validated (pre, post, weight, lag steps) of one receptor's `Edges`."""
    single = isinstance(given, Edges)
    parts = [
        _edge_part(receptor, None if single else i, e, n, dt, mode) for i, e in enumerate(_as_list(given))
    ]
    if not parts:
        return (np.zeros(0, np.int64),) * 2 + (np.zeros(0), np.zeros(0, np.int64))
    if len(parts) == 1:
        return parts[0]
    pre, post, weight, lag = zip(*parts, strict=True)
    weight = [np.broadcast_to(w, p.shape) for w, p in zip(weight, pre, strict=True)]
    return tuple(np.concatenate(x) for x in (pre, post, weight, lag))


def _edge_parts(receptor: str, given, n: int, dt: float, mode: str) -> Iterator[tuple]:
    """One receptor's validated (pre, post, weight, lag steps) with the name of their argument: all at once
    for `Edges` or a sequence of them (concatenated), else one part at a time, each drawn from the iterable
    when the previous one is done."""
    if isinstance(given, Edges | Sequence):  # `Edges` is a tuple, hence a sequence
        yield f"edges[{receptor!r}]", *_edge_arrays(receptor, given, n, dt, mode)
        return
    if not isinstance(given, Iterable):
        raise TypeError(
            f"`edges[{receptor!r}]` must be networks.Edges, a sequence of them or an iterable (e.g. a "
            f"generator) yielding them, got {type(given).__name__}."
        )
    i = 0
    for e in given:  # `enumerate` would keep the last part alive while the next one is drawn
        yield f"edges[{receptor!r}][{i}]", *_edge_part(receptor, i, e, n, dt, mode)
        del e
        i += 1


def _projection(receptor: str, given, n: int, dt: float, mode: str, dtype) -> tuple[DelayedCSR, Array] | None:
    """One receptor's synapses (`DelayedCSR`) and edge slots from its ``edges`` entry, or None without
    synapses. Streamed parts are grouped one at a time and joined (`DelayedCSR.concatenate`): only one part's
    edges exist at once."""
    grouped, last = [], -1  # last: the largest presynaptic neuron so far
    for where, pre, post, weight, lag in _edge_parts(receptor, given, n, dt, mode):
        if pre.size:
            if pre.min() <= last:
                raise ValueError(
                    f"`{where}`: a streamed part's presynaptic neurons must all be above those of the "
                    f"parts before it (up to {last}), got {pre.min()}; give the parts as a list to "
                    "concatenate them."
                )
            last = int(pre.max())
            ring_length = int(lag.max())
            if ring_length * n >= 2**31:
                raise ValueError(
                    f"`{where}`: the longest delay, {ring_length} steps of dt = {dt} ms, needs a ring of "
                    f"{ring_length} × {n} entries; shorten the delays or raise `dt`."
                )
            grouped.append(DelayedCSR.from_edges(pre, post, weight, lag, n, dtype))
        del pre, post, weight, lag  # before the next part is drawn
    if not grouped:
        return None
    projection, slots = grouped[0] if len(grouped) == 1 else DelayedCSR.concatenate(grouped)
    return projection, jnp.asarray(slots)


def steps_of(ms: float | np.ndarray, dt: float) -> np.ndarray:
    """``ms`` in whole steps of ``dt``, to the nearest and halves up as NEST rounds delays, in float64.

    ``ms/dt`` just below a half counts as the half: by 10⁻⁹ (``0.25/0.1 = 2.4999…``) plus half the spacing
    of ``ms``'s own dtype there (float32 ``0.35`` is ``0.34999999…``; a value that close to a half may be
    one), at most a quarter step, so an exact value (float16 ``200.0``) keeps its step. A float32 (or
    narrower) ``dt`` counts as its shortest decimal (`step_ms`), so ``np.float32(0.1)`` rounds as 0.1.
    """
    ms = np.asarray(ms)
    dt = step_ms(dt) if np.ndim(dt) == 0 else dt
    ratio = ms.astype(np.float64) / dt
    if jnp.issubdtype(ms.dtype, jnp.floating) and ms.dtype != np.float64:
        near = np.minimum(np.abs(np.spacing(ms)).astype(np.float64) / (2 * dt), 0.25)
    else:
        near = 0.0
    return np.floor(ratio + (0.5 + 1e-9) + near)


def _steps(delay: np.ndarray, dt: float) -> np.ndarray:
    """``steps_of(delay, dt) + 1`` as the smallest signed integer type that holds the longest delay,
    computed in chunks (2 bytes per edge for delays under 3.2 s)."""
    longest = int(steps_of(delay.max(initial=0.0), dt)) + 1  # steps_of is monotonic
    steps = np.empty(delay.shape, np.int16 if longest < 2**15 else np.int32 if longest < 2**31 else np.int64)
    flat, out = delay.reshape(-1), steps.reshape(-1)
    for start in range(0, flat.size, 1 << 22):
        part = slice(start, start + (1 << 22))
        out[part] = steps_of(flat[part], dt) + 1.0
    return steps


def _per_neuron(name: str, value, n: int, dtype) -> Array:
    """A validated finite scalar or ``[n]`` real value, as ``[n]`` of ``dtype``."""
    array = _real_array(name, value).astype(float)
    if array.shape not in ((), (n,)) or not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must be finite, a scalar or shape ({n},), got shape {array.shape}.")
    return jnp.asarray(np.broadcast_to(array, (n,)), dtype)


def _drive(background, index: int, n: int, dt: float, dtype, receptors) -> _PoissonDrive:
    where = "background" if index == 0 else f"background[{index}]"
    if not isinstance(background, Background):
        raise TypeError(f"`{where}` must be networks.Background, got {type(background).__name__}.")
    receptor = _known_receptor(f"{where}.receptor", background.receptor, receptors)
    rate = _real_array(f"{where}.rate", background.rate).astype(float)
    if rate.shape not in ((), (n,)) or not np.all(np.isfinite(rate)) or np.any(rate < 0):
        raise ValueError(f"`{where}.rate` must be ≥ 0 Hz and finite, a scalar or shape ({n},).")
    mean = np.broadcast_to(rate * dt / 1000.0, (n,))
    if mean.max(initial=0.0) > MAX_INPUTS_PER_STEP:
        raise ValueError(
            f"`{where}.rate` gives up to {mean.max():.3g} inputs per neuron and step (dt = {dt} ms); above "
            f"{MAX_INPUTS_PER_STEP:g} drive the neurons with its mean as a current (`I_ext`) instead."
        )
    weight = _per_neuron(f"{where}.weight", background.weight, n, dtype)
    _check_conductances(f"{where}.weight", receptor, receptors[receptor].mode, weight)
    return _PoissonDrive.build(mean, weight, receptor)


def _gap_csr(gap: GapJunctions, n: int, dtype) -> CSR:
    if not isinstance(gap, GapJunctions):
        raise TypeError(f"`gap_junctions` must be networks.GapJunctions, got {type(gap).__name__}.")
    pre, post = _indices("gap_junctions.pre", gap.pre, n), _indices("gap_junctions.post", gap.post, n)
    if pre.shape != post.shape:
        raise ValueError(
            f"`gap_junctions.pre` and `.post` must have equal lengths, got {pre.size} and {post.size}."
        )
    conductance = _per_edge("gap_junctions.conductance", gap.conductance, pre.size)
    if np.any(conductance < 0):
        raise ValueError("`gap_junctions.conductance` must be ≥ 0 nS.")
    keep = pre != post  # a junction of a neuron with itself carries no current
    keys, slot = np.unique(pre[keep].astype(np.int64) * n + post[keep], return_inverse=True)
    summed = np.bincount(slot, np.broadcast_to(conductance, pre.shape)[keep], keys.size)
    return CSR.from_edges(keys // n, keys % n, jnp.asarray(summed, dtype), (n, n))


def _check_count(name: str, value, what: str) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1
    ):
        raise ValueError(f"`{name}` must be None or {what}, got {value!r}.")


def _check_state(net: Network, state: NetworkState) -> None:
    """``state`` has the structure and shapes of ``net``'s (its neurons, receptors and ring length)."""
    expected = jax.eval_shape(net.init_state)
    shapes = jax.tree.map(lambda x: x.shape, (expected, state))
    if jax.tree.structure(expected) != jax.tree.structure(state) or shapes[0] != shapes[1]:
        raise ValueError(
            f"`state` must be a NetworkState of this network ({net.n} neurons, receptors "
            f"{list(net.receptor_names)}, rings of {net.ring_length} steps), as from `net.init_state` or a "
            "result's final_state."
        )


def _check_run(net, duration_ms, dt, record) -> tuple[int, np.ndarray]:
    """The step count and recorded neurons of a run; a ``dt`` given must be the network's, up to the float
    rounding that `whole_steps` allows for (a float32 ``dt`` is its shortest decimal, `step_ms`)."""
    if dt is not None:
        check_dt(dt)
        rtol = 1e-9 + _rounding(np.asarray(dt)) + _rounding(np.asarray(net.dt))
        if not abs(step_ms(dt) - net.dt) <= rtol * net.dt:
            raise ValueError(
                f"`dt` = {dt} ms differs from the network's dt = {net.dt} ms, to which its delays were "
                "rounded; omit `dt` or rebuild the network with it."
            )
    return n_steps_of(duration_ms, net.dt), record_indices(record, net.n)


def record_indices(record, n: int) -> Int[np.ndarray, " r"]:
    """The neurons to record as int32 indices: a count ``k`` ≥ 0 (a Python or NumPy integer, or a 0-d integer
    array) means neurons ``0 … k − 1``; a sequence or array of integers lists neurons in ``[0, n)``.

    Raises:
        ValueError: ``record`` is a float, bool or other non-integer (``5.0`` would be ambiguous: neuron 5
            or five neurons), a negative count, or holds indices outside ``[0, n)``.
    """
    array = np.asarray(record)
    if array.size == 0 and array.ndim > 0:
        return np.zeros(0, np.int32)  # an empty list: record nothing
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"`record` must be a neuron count (int) or integer neuron indices, got {record!r} of dtype "
            f"{array.dtype}; pass int(count) or integer indices."
        )
    if array.ndim == 0:
        if array < 0:
            raise ValueError(f"`record` must be a neuron count ≥ 0, got {record!r}.")
        array = np.arange(int(array))
    array = array.astype(np.int64).ravel()
    if array.size and (array.min() < 0 or array.max() >= n):
        raise ValueError(f"`record` must hold neuron indices in [0, {n}), got {array.min()}…{array.max()}.")
    return array.astype(np.int32)
