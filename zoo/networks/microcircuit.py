"""The Potjans & Diesmann (2014) cortical microcircuit: eight LIF populations of layers 2/3, 4, 5 and 6 wired
from the published connection probabilities, built as a generic `Network` at any scale."""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
from collections.abc import Iterator, Mapping

import jax
import numpy as np
from jaxtyping import Float, Int, PRNGKeyArray

from ..._time_step import step_ms
from ...ops.csr import check_key, numpy_generator
from .._checks import check_dt
from ..neurons.lif import LIF
from ..synapses.expon import Expon
from ._random import truncated_normal
from .network import Background, Edges, Network

POPULATIONS = ("L23e", "L23i", "L4e", "L4i", "L5e", "L5i", "L6e", "L6i")
"""Population names in the model's order (excitatory, inhibitory per layer)."""

DATA_FILE = "potjans_diesmann_2014_params.json"
"""The parameter file that `Microcircuit.from_data` reads from a data folder."""

_EXCITATORY = np.array([name.endswith("e") for name in POPULATIONS])
_RECEPTORS = (("exc", np.flatnonzero(_EXCITATORY)), ("inh", np.flatnonzero(~_EXCITATORY)))
"""Each receptor and the source populations whose synapses it receives."""
_KEYS = (
    "full_num_neurons",
    "conn_probs_target_by_source",
    "K_ext",
    "bg_rate_Hz",
    "PSP_exc_mean_mV",
    "PSP_L4E_to_L23E_factor",
    "g",
    "weight_rel_std",
    "delay_exc_mean_ms",
    "delay_inh_mean_ms",
    "delay_rel_std",
    "neuron_params",
    "full_mean_rates_Hz_reference",
)
_SIGNS = {"> 0": np.greater, "≥ 0": np.greater_equal, "≤ 0": np.less_equal}
_NUMBERS = (  # each scalar parameter and what it must be
    ("bg_rate_Hz", "≥ 0"),
    ("PSP_exc_mean_mV", "> 0"),  # negative, it would make the excitatory weights inhibitory
    ("PSP_L4E_to_L23E_factor", "> 0"),
    ("g", "≤ 0"),  # the inhibitory weights are g times the excitatory ones
    ("weight_rel_std", "≥ 0"),
    ("delay_exc_mean_ms", "> 0"),
    ("delay_inh_mean_ms", "> 0"),
    ("delay_rel_std", "≥ 0"),
)
_NEURON_NUMBERS = (
    ("E_L", None),
    ("V_th", None),
    ("V_reset", None),
    ("C_m", "> 0"),
    ("tau_m", "> 0"),
    ("tau_syn", "> 0"),
    ("t_ref", "≥ 0"),
)


def synapse_counts(
    conn_probs: Float[np.ndarray, "target source"],
    n_target: Int[np.ndarray, " target"],
    n_source: Int[np.ndarray, " source"],
) -> Float[np.ndarray, "target source"]:
    """The number of synapses ``K`` per projection that, drawn between uniformly chosen neuron pairs with
    repeats allowed (multapses), connects a fraction ``C`` of the pairs: Potjans & Diesmann (2014) eq. 1,
    ``C = 1 − (1 − 1/(N_pre N_post))^K``, i.e. ``K = log(1 − C) / log(1 − 1/(N_pre N_post))``.

    Args:
        conn_probs: connection probabilities ``C[target, source]`` in ``[0, 1)``.
        n_target, n_source: population sizes.

    Returns:
        ``K[target, source]`` (real-valued; round it to draw synapses).
    """
    pairs = np.outer(np.asarray(n_target, np.float64), np.asarray(n_source, np.float64))
    return np.log1p(-np.asarray(conn_probs, np.float64)) / np.log1p(-1.0 / pairs)


def psc_amplitude(psp_mV: float, C_m: float, tau_m: float, tau_syn: float) -> float:
    """The amplitude (pA) of an exponential postsynaptic current ``w·e^{−t/τ_syn}`` whose membrane response
    ``V(t) = w τ_m τ_syn / (C_m (τ_m − τ_syn)) · (e^{−t/τ_m} − e^{−t/τ_syn})`` peaks at ``psp_mV`` (mV);
    the peak lies at ``t* = τ_m τ_syn ln(τ_m/τ_syn) / (τ_m − τ_syn)``. Units: C_m pF, τ ms. For the
    microcircuit (0.15 mV, 250 pF, 10 ms, 0.5 ms) this is 87.81 pA, as in Potjans & Diesmann (2014)."""
    if not (C_m > 0 and tau_m > 0 and tau_syn > 0 and tau_m != tau_syn):
        raise ValueError(
            f"`C_m`, `tau_m`, `tau_syn` must be > 0 with tau_m ≠ tau_syn, got {C_m}, {tau_m}, {tau_syn}."
        )
    t_peak = tau_m * tau_syn * np.log(tau_m / tau_syn) / (tau_m - tau_syn)
    unit_peak = (
        tau_m * tau_syn / (C_m * (tau_m - tau_syn)) * (np.exp(-t_peak / tau_m) - np.exp(-t_peak / tau_syn))
    )
    return float(psp_mV / unit_peak)


def _empty_edges(count: int) -> Edges:
    """``count`` uninitialised edges: int32 neuron indices, float32 weights and delays."""
    return Edges(*(np.empty(count, dtype) for dtype in (np.int32, np.int32, np.float32, np.float32)))


def _fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"`{name}` must be a number in (0, 1], got {value!r}.")
    if not 0 < value <= 1:
        raise ValueError(f"`{name}` must lie in (0, 1] (1 = full scale), got {value!r}.")
    return float(value)


def read_data(source: str | os.PathLike | Mapping) -> Mapping:
    """The parameters of the ``conn-potjans-diesmann2014`` data (the folder, its JSON file, or that file
    loaded as a dict), checked as `Microcircuit.from_data` reads them. Raises ``ValueError`` for a missing or
    unreadable file and for a missing or malformed parameter."""
    if isinstance(source, Mapping):
        params = source
    else:
        path = os.fspath(source)
        if os.path.isdir(path):
            path = os.path.join(path, DATA_FILE)
        if not os.path.isfile(path):
            raise ValueError(
                f"`source` must be the conn-potjans-diesmann2014 data folder, its {DATA_FILE} or the loaded "
                f"dict; {path!r} does not exist."
            )
        try:
            with open(path) as file:
                params = json.load(file)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(
                f"`source` {path!r} is not the {DATA_FILE} of conn-potjans-diesmann2014 (not JSON: {error})."
            ) from error
    missing = [key for key in _KEYS if key not in params]
    if missing:
        raise ValueError(
            f"`source` lacks the parameter(s) {missing}; pass the {DATA_FILE} of the data folder."
        )
    sizes = np.asarray(params["full_num_neurons"])
    conn = np.asarray(params["conn_probs_target_by_source"], np.float64)
    if sizes.shape != (8,) or not np.issubdtype(sizes.dtype, np.integer) or np.any(sizes < 1):
        raise ValueError(f"`full_num_neurons` must be 8 positive integers, got {sizes!r}.")
    if conn.shape != (8, 8) or not np.all((conn >= 0) & (conn < 1)):
        raise ValueError("`conn_probs_target_by_source` must be an 8 × 8 matrix of probabilities in [0, 1).")
    for key in ("K_ext", "full_mean_rates_Hz_reference"):
        values = np.asarray(params[key], np.float64)
        if values.shape != (8,) or not np.all(np.isfinite(values) & (values >= 0)):
            raise ValueError(
                f"`{key}` must be 8 finite non-negative numbers, one per population, got {values!r}."
            )
    for key, condition in _NUMBERS:
        _check_number(key, params[key], condition)
    neuron = params["neuron_params"]
    if not isinstance(neuron, Mapping):
        raise ValueError(
            f"`neuron_params` must be a mapping of the neuron's parameters (E_L, V_th, …), got "
            f"{type(neuron).__name__}."
        )
    missing = [key for key, _ in _NEURON_NUMBERS if key not in neuron]
    if missing:
        raise ValueError(
            f"`neuron_params` lacks the parameter(s) {missing}; pass the {DATA_FILE} of the data folder."
        )
    for key, condition in _NEURON_NUMBERS:
        _check_number(f"neuron_params[{key!r}]", neuron[key], condition)
    return params


def _check_number(name: str, value, condition: str | None) -> None:
    """``value`` is a finite real number, and ``condition`` (a key of `_SIGNS`) holds for it."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if not real or (condition is not None and not _SIGNS[condition](value, 0)):
        must = "a finite number" if condition is None else f"a finite number {condition}"
        raise ValueError(f"`{name}` must be {must}, got {value!r}.")


@dataclasses.dataclass(frozen=True, eq=False)
class Microcircuit:
    r"""The Potjans & Diesmann (2014) model of the cortical microcircuit under 1 mm² of surface: 77,169
    current-based LIF neurons in eight populations (L2/3, L4, L5, L6; excitatory and inhibitory) and
    ≈ 3·10⁸ synapses, at a chosen ``scale``. Make it with `Microcircuit.from_data`, then `build` the
    `Network` (or draw the connectivity alone with `edges`).

    The model, with the values of the data file (PD 2014; connection probabilities: its Table 5):

    * neurons ``iaf_psc_exp``: τ_m 10 ms, C_m 250 pF, E_L −65, θ −50, reset −65 mV, t_ref 2 ms;
    * synapses: exponential currents, τ_syn 0.5 ms; ``w`` 87.8 pA (a 0.15 mV PSP, `psc_amplitude`), doubled
      for L4e → L2/3e, ``g = −4`` times it from inhibitory neurons; each weight normal with 10 % s.d.,
      redrawn when its sign flips;
    * connectivity: ``K = synapse_counts(C, N, N)`` synapses per projection between uniformly random pairs,
      multapses allowed ("fixed total number"; `Network.build` merges those of one pair and delay step);
    * delays normal, 1.5 ± 0.75 ms from excitatory and 0.75 ± 0.375 ms from inhibitory neurons, redrawn
      below ``dt`` (to ≥ ``dt``, as NEST's ``redraw``) and rounded to steps;
    * background: Poisson input at ``K_ext`` × 8 Hz per neuron with weight ``w`` (``background="poisson"``),
      or its mean as a constant current ``K_ext·8 Hz·w·τ_syn`` (``background="dc"``).

    Downscaling follows the literature. ``scale`` multiplies the neuron numbers and keeps the in-degrees
    (the synapse numbers scale with ``scale`` too), as NEST's microcircuit example does at its default
    ``N_scaling``; mean and variance of every neuron's input are unchanged, so rates stay close to full
    scale while correlations grow. ``k_scale`` < 1 also multiplies the in-degrees (recurrent and external),
    divides the weights by ``√k_scale`` (keeping the input variance) and adds the DC that restores the
    mean input, ``τ_syn (1 − √k_scale) Σ_j K_ij w_ij ν_j`` with the full-scale rates ``ν_j`` of the data
    file (van Albada, Helias & Diesmann 2015).

    Measured here (rates after a 100–200 ms start, relative to the full-scale reference): full scale
    (0.2–0.6 s, one seed; 3.0·10⁸ synapses) 0.98–1.04; ``scale=0.1`` (0.2–1 s, the means of three
    init/background seeds) 0.96–1.80, L2/3e the highest (1.69 against
    0.94 Hz; NEST on the same synapses 1.85 Hz); ``scale=0.04, k_scale=0.25`` (3·10⁶ synapses, the test
    circuit; 0.1–0.6 s) 0.77–1.31 (three network and init keys); ``scale=0.02`` alone is bursty (L2/3e
    5 Hz): its tiny populations receive hundreds of synapses from a few dozen neurons. Below ``k_scale`` 1
    the DC of ``background="dc"`` no longer reaches threshold on its own and the silent state is stable
    (no activity at ``k_scale=0.1``);
    use the Poisson background there.

    Exponential-Euler time steps hold a current constant over each step, so a PSC of amplitude ``w`` would
    carry ``w·dt/(1 − e^{−dt/τ_syn})`` instead of ``w τ_syn`` of charge (+10 % at dt = 0.1 ms). `build`
    therefore scales every weight by ``τ_syn (1 − e^{−dt/τ_syn}) / dt``: the current held over each step
    is then the exact mean of the continuous PSC over that step.

    Attributes (at the chosen scale; matrices are ``[target, source]``):
        scale, k_scale: the neuron-number and in-degree factors, in (0, 1].
        background: ``"poisson"`` or ``"dc"``.
        sizes: neurons per population ``[8]``.
        synapses: synapses per projection ``[8, 8]`` (multapses counted).
        weight: mean PSC amplitude per projection ``[8, 8]``, pA (negative from inhibitory populations).
        weight_rel_std: relative s.d. of the weights.
        delay: mean delay per projection ``[8, 8]``, ms; ``delay_rel_std`` its relative s.d.
        k_ext: external (background) in-degree per population ``[8]``; ``bg_rate`` Hz per input;
            ``weight_ext`` pA per input spike.
        I_dc: constant current per population ``[8]``, pA (background mean for ``"dc"``, plus the
            ``k_scale`` compensation).
        tau_syn: synaptic time constant, ms.
        neuron: the `LIF` neuron (E_L, θ, reset mV; C pF; g_L = C/τ_m nS; t_ref ms).
        reference_rates: the full-scale population rates of the data file ``[8]``, Hz.

    Examples:
        >>> import jax
        >>> mc = Microcircuit.from_data(folder, scale=0.01)
        >>> mc.names[:2], mc.sizes.tolist(), mc.n
        (('L23e', 'L23i'), [207, 58, 219, 55, 48, 11, 144, 29], 771)
        >>> net = Microcircuit.from_data(folder, scale=0.01, k_scale=0.1).build(jax.random.key(0))
        >>> net.names == mc.names, net.n, sorted(net.receptors), len(net.drives)
        (True, 771, ['exc', 'inh'], 1)

    ??? cite "Reference"
        Potjans, T. C. & Diesmann, M. (2014). The cell-type specific cortical microcircuit: relating
        structure and activity in a full-scale spiking network model. Cereb. Cortex 24, 785–806.
        van Albada, S. J., Helias, M. & Diesmann, M. (2015). Scalability of asynchronous networks is
        limited by one-to-one mapping between effective connectivity and correlations. PLoS Comput. Biol.
        11, e1004490.
    """

    scale: float
    k_scale: float
    background: str
    sizes: Int[np.ndarray, " 8"]
    synapses: Int[np.ndarray, "8 8"]
    weight: Float[np.ndarray, "8 8"]
    weight_rel_std: float
    delay: Float[np.ndarray, "8 8"]
    delay_rel_std: float
    k_ext: Int[np.ndarray, " 8"]
    bg_rate: float
    weight_ext: float
    I_dc: Float[np.ndarray, " 8"]
    tau_syn: float
    neuron: LIF
    reference_rates: Float[np.ndarray, " 8"]
    names: tuple[str, ...] = POPULATIONS

    @classmethod
    def from_data(
        cls,
        source: str | os.PathLike | Mapping,
        *,
        scale: float = 0.1,
        k_scale: float = 1.0,
        background: str = "poisson",
    ) -> Microcircuit:
        """The microcircuit from the ``conn-potjans-diesmann2014`` data (the folder, its JSON file, or that
        file loaded as a dict) at ``scale`` × the neuron numbers and ``k_scale`` × the in-degrees (see the
        class docstring). Raises ``ValueError`` naming a bad argument or a missing or malformed parameter
        (`read_data`)."""
        params = read_data(source)
        scale, k_scale = _fraction("scale", scale), _fraction("k_scale", k_scale)
        if background not in ("poisson", "dc"):
            raise ValueError(f"`background` must be 'poisson' or 'dc', got {background!r}.")
        full_sizes = np.asarray(params["full_num_neurons"], np.int64)
        sizes = np.round(full_sizes * scale).astype(np.int64)
        if np.any(sizes < 1):
            empty = [name for name, size in zip(POPULATIONS, sizes, strict=True) if size < 1]
            raise ValueError(
                f"`scale` = {scale} leaves population(s) {empty} empty; "
                f"pass scale ≥ {0.5 / full_sizes.min():.2g}."
            )
        full_k = synapse_counts(params["conn_probs_target_by_source"], full_sizes, full_sizes)
        synapses = np.round(full_k * scale * k_scale).astype(np.int64)
        k_ext = np.round(np.asarray(params["K_ext"], np.float64) * k_scale).astype(np.int64)

        neuron_params = params["neuron_params"]
        C_m, tau_m, tau_syn = neuron_params["C_m"], neuron_params["tau_m"], neuron_params["tau_syn"]
        w = psc_amplitude(params["PSP_exc_mean_mV"], C_m, tau_m, tau_syn)
        weight = np.where(_EXCITATORY, w, params["g"] * w)[None, :].repeat(8, axis=0)
        weight[0, 2] *= params["PSP_L4E_to_L23E_factor"]  # L4e → L2/3e
        delay = np.where(_EXCITATORY, params["delay_exc_mean_ms"], params["delay_inh_mean_ms"])
        rates = np.asarray(params["full_mean_rates_Hz_reference"], np.float64)
        bg_rate = float(params["bg_rate_Hz"])

        # mean input current (pA) of the full-scale network: recurrent Σ_j K_ij/N_i w_ij ν_j τ, external
        tau_s = tau_syn * 1e-3  # s, so that Hz · s · pA = pA
        rec_mean = tau_s * (full_k / full_sizes[:, None] * weight * rates).sum(axis=1)
        ext_mean = tau_s * np.asarray(params["K_ext"], np.float64) * bg_rate * w
        root = np.sqrt(k_scale)
        I_dc = (1.0 - root) * rec_mean
        if background == "dc":
            I_dc = I_dc + ext_mean
        else:
            I_dc = I_dc + (1.0 - root) * ext_mean
        neuron = LIF(
            V_rest=neuron_params["E_L"],
            V_reset=neuron_params["V_reset"],
            V_th=neuron_params["V_th"],
            C=C_m,
            g_L=C_m / tau_m,
            t_ref=neuron_params["t_ref"],
        )
        return cls(
            scale=scale,
            k_scale=k_scale,
            background=background,
            sizes=sizes,
            synapses=synapses,
            weight=weight / root,
            weight_rel_std=float(params["weight_rel_std"]),
            delay=np.broadcast_to(delay, (8, 8)).copy(),
            delay_rel_std=float(params["delay_rel_std"]),
            k_ext=k_ext,
            bg_rate=bg_rate,
            weight_ext=w / root,
            I_dc=I_dc,
            tau_syn=float(tau_syn),
            neuron=neuron,
            reference_rates=rates,
        )

    @property
    def n(self) -> int:
        """Number of neurons."""
        return int(self.sizes.sum())

    @property
    def offsets(self) -> Int[np.ndarray, " 9"]:
        """Population ``p`` holds the neurons ``offsets[p] : offsets[p + 1]``."""
        return np.concatenate([[0], np.cumsum(self.sizes)])

    @property
    def in_degrees(self) -> Float[np.ndarray, "8 8"]:
        """Mean number of synapses a neuron of population ``target`` receives from ``source``."""
        return self.synapses / self.sizes[:, None]

    def _check_dt(self, dt) -> float:
        """``dt`` as `Network.build` takes it (one real number, a 0-d array too; a float32 0.1 is 0.1 ms),
        refused above 0.5 ms."""
        dt_ms = step_ms(check_dt(dt))
        if dt_ms > 0.5:
            raise ValueError(f"`dt` must be a time step in (0, 0.5] ms (the model's is 0.1), got {dt!r}.")
        return dt_ms

    def _check_delays(self, dt: float) -> None:
        """Every drawn delay is redrawn until ≥ ``dt``: refuse a mean delay too far below ``dt`` for that
        (`truncated_normal`'s bound), naming its parameter."""
        for source in range(8):
            if not self.synapses[:, source].any():
                continue
            name = "delay_exc_mean_ms" if _EXCITATORY[source] else "delay_inh_mean_ms"
            for mean in np.unique(self.delay[:, source]):
                if dt > mean + 6.0 * (mean * self.delay_rel_std):  # as `truncated_normal` tests it
                    raise ValueError(
                        f"`{name}` = {mean:g} ms is too far below `dt` = {dt:g} ms: each delay is drawn from "
                        f"Normal({mean:g}, {mean * self.delay_rel_std:g}) ms (`delay_rel_std` = "
                        f"{self.delay_rel_std:g}) and redrawn until ≥ dt, which hardly any draw reaches; "
                        f"pass `{name}` ≥ {dt:g} ms or a smaller `dt`."
                    )

    def step_factor(self, dt: float) -> float:
        """``τ_syn (1 − e^{−dt/τ_syn}) / dt``, the factor `build` applies to every weight (class doc)."""
        dt = self._check_dt(dt)
        return float(self.tau_syn * -np.expm1(-dt / self.tau_syn) / dt)

    def edges(self, key: PRNGKeyArray, dt: float = 0.1) -> dict[str, Edges]:
        """Draw the recurrent synapses: ``{"exc": Edges, "inh": Edges}`` with global int32 neuron indices,
        float32 weights (pA, the step-averaged amplitudes of `step_factor`; inhibitory ones negative) and
        float32 delays (ms, ≥ ``dt``; `Network.build` rounds them to steps). One edge per synapse
        (multapses repeat a pair), ordered by source population, then target population; each source
        population's synapses are drawn with ``jax.random.fold_in(key, source)``, so the same key gives the
        same connectivity whichever part is drawn first (`draw_edges`, `build`).

        Memory: 16 bytes per synapse (4.8 GB at full scale); no dense matrix."""
        return dict(self.draw_edges(key, dt))

    def draw_edges(self, key: PRNGKeyArray, dt: float = 0.1) -> Iterator[tuple[str, Edges]]:
        """`edges` one receptor at a time: yields ``("exc", Edges)``, then ``("inh", Edges)``, each drawn
        when it is asked for (a consumer that drops one before asking for the next holds one receptor's
        edges at a time)."""
        dt = self._check_dt(dt)
        self._check_delays(dt)
        check_key(key, "it draws the synapses")
        for receptor, sources in _RECEPTORS:
            edges = _empty_edges(int(self.synapses[:, sources].sum()))
            stop = 0
            for source in sources:
                part = slice(stop, stop + int(self.synapses[:, source].sum()))
                self._draw_source(key, source, dt, Edges(*(field[part] for field in edges)))
                stop = part.stop
            yield receptor, edges
            del edges

    def _draw_source(self, key: PRNGKeyArray, source: int, dt: float, out: Edges) -> None:
        """Fill ``out`` with the synapses of population ``source`` onto every target population, in target
        order, drawn with ``fold_in(key, source)``."""
        rng = numpy_generator(jax.random.fold_in(key, source))
        offsets, factor = self.offsets, self.step_factor(dt)
        stop = 0
        for target in range(8):
            count = int(self.synapses[target, source])
            part = slice(stop, stop + count)
            stop += count
            # uniformly random pairs, repeats allowed (PD 2014: a "fixed total number" of synapses)
            out.pre[part] = rng.integers(offsets[source], offsets[source + 1], count, np.int32)
            out.post[part] = rng.integers(offsets[target], offsets[target + 1], count, np.int32)
            w, d = self.weight[target, source] * factor, self.delay[target, source]
            where = f"{POPULATIONS[source]} → {POPULATIONS[target]}"
            if w == 0:  # g = 0: no inhibition, exactly (a normal of mean and s.d. 0 has no draw above 0)
                out.weight[part] = 0.0
            else:
                label = f"the weights {where} (`PSP_exc_mean_mV`, `g`, `weight_rel_std`)"
                truncated_normal(
                    rng, abs(w), abs(w) * self.weight_rel_std, 0.0, out.weight[part], label=label
                )
                np.copysign(out.weight[part], w, out=out.weight[part])
            name = "delay_exc_mean_ms" if _EXCITATORY[source] else "delay_inh_mean_ms"
            label = f"the delays {where} (`{name}`, `delay_rel_std`, redrawn until ≥ `dt`)"
            truncated_normal(rng, d, d * self.delay_rel_std, dt, out.delay[part], label=label, inclusive=True)

    def build(self, key: PRNGKeyArray, dt: float = 0.1) -> Network:
        """The microcircuit as a `Network` simulated at ``dt`` ms: the `edges` drawn with ``key``, two
        current-based exponential receptors (``"exc"``, ``"inh"``, τ_syn), the background (Poisson into
        ``"exc"``, or folded into ``I_ext``) and ``I_dc`` as ``I_ext`` (pA).

        The network is `Network.build` of `edges`, streamed one source population at a time: `Network.build`
        takes each receptor's edges as a generator of source populations, and groups each population's
        synapses by delay before the next one is drawn (its rows are contiguous and in order, so the parts
        join into the same network as all `edges` at once). The network keeps ~12 bytes per synapse (column,
        weight, edge slot; 3.4 GiB at full scale); the peak adds the drawing (16 bytes per synapse) and
        grouping of one population's synapses (L2/3e's at most, 31 % of them). Peak resident memory of a
        fresh process (float32; this build in three runs), with `Network.build` of all `edges` at once → with
        this build: scale 0.1 (3.0·10⁷ synapses) 1.5 → 0.88–0.97 GiB, 0.25 (7.5·10⁷) 3.2 → 1.5–1.7 GiB, 0.5
        (1.5·10⁸) 5.6 → 2.7–2.9 GiB, i.e. ~40 → 17–27 bytes per synapse above the runtime's 0.21 GiB; full
        scale (3.0·10⁸) 4.8 GiB (4.5 GiB resident once built; 2 min on a shared 2-core CPU), where all edges
        at once would need ~11 GiB (39 bytes per synapse, extrapolated from scale 0.5)."""
        dt = self._check_dt(dt)
        self._check_delays(dt)
        check_key(key, "it draws the synapses")
        population = np.repeat(np.arange(8), self.sizes)
        background = None
        if self.background == "poisson":
            rate = (self.k_ext * self.bg_rate)[population].astype(np.float32)
            background = Background(rate, self.weight_ext * self.step_factor(dt), "exc")
        synapse = Expon(tau=self.tau_syn, g_max=1.0, mode="cuba")
        return Network.build(
            sizes=dict(zip(self.names, self.sizes.tolist(), strict=True)),
            neuron=self.neuron,
            receptors={"exc": synapse, "inh": synapse},
            edges={receptor: self._source_edges(key, sources, dt) for receptor, sources in _RECEPTORS},
            dt=dt,
            background=background,
            I_ext=self.I_dc[population].astype(np.float32),
        )

    def _source_edges(self, key: PRNGKeyArray, sources, dt: float) -> Iterator[Edges]:
        """The synapses of each population in ``sources``, one `Edges` each, drawn when asked for (and
        released before the next is drawn, once the consumer drops it)."""
        for source in sources:
            edges = _empty_edges(int(self.synapses[:, source].sum()))
            self._draw_source(key, source, dt, edges)
            yield edges
            del edges
