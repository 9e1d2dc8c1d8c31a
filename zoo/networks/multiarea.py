"""The Joglekar et al. (2018) spiking model of 29 macaque cortical areas, wired by the Markov et al. (2014)
connectome, as a `Network`: `MultiArea.from_connectome`.

What the model is (Joglekar et al. 2018, STAR Methods "Spiking network model"; numbers from the authors'
Brian code, OpenSourceBrain/JoglekarEtAl18 ``rishimodelpython_brian2_spiking.py``, asynchronous regime):

* each area: excitatory (80 %) and inhibitory LIF neurons — V_rest −70, θ −50, reset −60 mV, τ 20 ms (E)
  and 10 ms (I), 2 ms refractory; a constant drive μ_E 14.2 and μ_I 14.7 mV and white noise σ 3 mV;
* local wiring with probability 0.1 and voltage jumps (mV): E→E ``(1 + α h)·0.01``, E→I
  ``(1 + α h)·0.075``, I→E 0.0375 (weak global balanced amplification, "GBA") or 0.05 (strong), I→I 0.075;
  ``h`` the area's hierarchy value normalised to [0, 1], α = 4; local delay 2 ms;
* long range, from the E neurons of area s to area t with probability 0.1: E→E ``(1 + α h_t)·μ_EE·FLN[t, s]``
  with μ_EE 0.0375 (weak GBA) or 0.05 (strong), E→I ``(1 + α h_t)·0.0475·FLN[t, s]``; each synapse delayed
  by a normal draw of mean ``distance[t, s]/3.5 m/s`` and standard deviation 10 % of it;
* 1,600 E and 400 I neurons per area; a current pulse into V1's E neurons.

Deviations, and why:

* Size: ``n_per_area`` (default 50) instead of 2,000. The expected in-degree of every projection is kept
  (160 E and 40 I inputs per source area): the connection probability becomes ``min(1, 0.1·2000/n)``; below
  200 neurons per area every pair is connected and the jumps grow by ``200/n`` so that each neuron's mean
  input stays that of the original (its fluctuations grow).
* Synapses: the original's instantaneous voltage jumps are current-based `synapses.Expon` receptors with
  τ = dt/10 — all of a spike's charge arrives within its step — with weights ``J·g_L/(1 − e^{−dt/τ_m})`` pA
  for a jump of J mV, which the exact LIF step turns into a jump of J mV.
* Noise: the white noise (σ = 3 mV, i.e. a membrane SD of σ/√2) becomes balanced Poisson input of ±0.5 mV
  jumps at ``ν = σ²/(2·0.5²·τ_m)`` each (900 Hz for E, 1,800 Hz for I): zero mean, the same variance.
* Pulse: 100 ms of 6.3 mV extra drive (× g_L in pA) by default; the authors' asynchronous-regime code used
  6.3 mV for 150 ms.

Checked against the authors' code (``rishimodelpython_brian2_spiking.py`` and the OSB port
``Brian/generateNetwork.py``, asynchronous regime): every value above is theirs — α = 4; FLN indexed
``flnMat[target, source]`` (their ``flnMat[j, h]`` for h → j, the orientation of ``fln_29x29.csv``); both
long-range projections scaled by ``1 + α h`` of the target; μ_IE = 0.19/4; long-range synapses without the
local delay; jumps in mV; the strong-GBA pulse 126 pA × 50 MΩ = 6.3 mV (weak GBA: 300 pA, 15 mV). No
error in units, FLN orientation, E/I long-range scaling, local/long-range split or background was found.

Measured (n_per_area = 50, 1,450 neurons, 1.14 M synapses; mean of 2 network/noise seeds, 5 ms bins, E
rates): baseline E 0.5–2.9 Hz, I 1–16 Hz (the full-size NEST replication of Lima et al.: E 1.5, I 6.0 Hz).
Strong GBA, 6.3 mV for 100 ms — mean response over the 150 ms from the pulse onset above baseline: V1 43,
V2 47, V4 80, DP 89, MT 85, TEO 82, TEpd 40 Hz; 8l 3.9, 7A 1.9, 7B 1.8, F1 1.6, 46d 1.3 Hz; the rest
< 1.3 Hz. Weak GBA, 15 mV: V1 54, V2 38, V4 30, DP 32, MT 32, TEO 18, TEpd 3.0 Hz, the rest ≤ 1.2 Hz. The
summed response of the areas from TEO up is 3.1× V1's with strong GBA against 0.43× with weak GBA:
balanced amplification carries a weaker pulse further, as in Joglekar's Fig. 6. 50–100 ms after the pulse
every area was back near its baseline (≤ 6.3 Hz, mean 2.2 against 1.4 Hz) in those 2 seeds, but that
does not hold in general: over 6 other realisations (seeds 0–5 after a change of the noise hash and delay
draws, judged per seed) the highest area rate 50–100 ms after the pulse was 360, 48, 9, 151, 12 and 13 Hz
— one seed locked most areas into high activity (mean 155 Hz above baseline). Per seed, ρ(hierarchy,
response) was −0.11 for the locked seed and −0.50 … −0.59 for the rest. At this size the strong-GBA model
is bistable after a pulse, which the full-size model is not reported to be.

Remaining deviations from the full-size model: (1) V4, DP, MT and TEO respond more than V1, in population
volleys (peaks of 200 Hz in 5 ms bins: every E neuron of the area fires in the same bin) at n_per_area 50
and 100; capping the connection probability at 0.5 at n_per_area = 100 (less shared input; one seed) lowered
those peaks only to 130–175 Hz, so the small populations (40 E and 10 I neurons at n_per_area = 50) rather
than the all-to-all wiring seem to carry it. (2) Propagation beyond the ventral stream is weak: the
replication at full size reports strong-GBA responses in 7A, 46d, 7m and 7B, here 1–2 Hz above baseline.
(3) The pulse lasts 100 ms (the authors': 150 ms). Speed (loaded 2-core machine, compile excluded): 4.4 s per
biological second with the 10 % delay jitter (128k delay rows), 0.8 s with one delay per pair of areas
(``delay_jitter=0``, 20k rows).

Data: ``/work/shared/data/conn-macaque-markov2014-29areas`` — ``fln_29x29.csv`` (FLN[target, source]),
``distance_mm_29x29.csv`` (wiring distances, mm), ``hierarchy_29.csv`` (hierarchy values), ``areas.txt``.

??? cite "Reference"
    Joglekar, M. R., Mejias, J. F., Yang, G. R. & Wang, X.-J. (2018). Inter-areal balanced amplification
    enhances signal propagation in a large-scale circuit model of the primate cortex. Neuron 98, 222–234.
    Markov, N. T. et al. (2014). A weighted and directed interareal connectivity matrix for macaque cerebral
    cortex. Cereb. Cortex 24, 17–36. Chaudhuri, R. et al. (2015). A large-scale circuit mechanism for
    hierarchical dynamical processing in the primate cortex. Neuron 88, 419–431.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ...ops import CSR
from ...ops.csr import numpy_generator
from ..neurons.lif import LIF
from ..synapses.expon import Expon
from ._random import truncated_normal
from .network import Background, Edges, Network, NetworkResult, NetworkState, Pulse

G_L = 10.0  # nS, sets the current scale: a drive of x mV is x·G_L pA
N_REFERENCE = 2000  # neurons per area in the original
P_REFERENCE = 0.1  # its connection probability
NOISE_JUMP = 0.5  # mV, the jump of the Poisson noise inputs

JOGLEKAR_2018 = {
    "V_rest": -70.0,  # mV
    "V_th": -50.0,
    "V_reset": -60.0,
    "tau_E": 20.0,  # ms
    "tau_I": 10.0,
    "t_ref": 2.0,
    "sigma": 3.0,  # mV, white-noise amplitude
    "mu_E": 14.2,  # mV, constant drive
    "mu_I": 14.7,
    "w_EE": 0.01,  # mV, local jumps (E→E and E→I scaled by 1 + α h)
    "w_IE": 0.075,
    "w_II": 0.075,
    "w_EI": {"weak": 0.0375, "strong": 0.05},
    "mu_EE": {"weak": 0.0375, "strong": 0.05},  # mV, long-range E→E per unit FLN
    "mu_IE": 0.0475,  # long-range E→I
    "alpha": 4.0,
    "local_delay": 2.0,  # ms
}
"""The asynchronous-regime parameters of Joglekar et al. (2018), from the authors' code (see module doc)."""


class MultiArea(eqx.Module):
    """The multi-area model as a `Network` with its areas' metadata.

    Populations are ``"<area>/E"`` and ``"<area>/I"``, area by area in hierarchy order (V1 first).

    Attributes:
        network: the `Network` (LIF neurons, receptors ``"exc"`` and ``"inh"``, Poisson noise).
        areas: area names.
        hierarchy: ``[A]`` hierarchy values normalised to [0, 1].
        fln: ``[A, A]`` fraction of labelled neurons, FLN[target, source].
        distance_mm: ``[A, A]`` wiring distances, mm.
        speed: conduction speed, m/s (= mm/ms); mean long-range delay = distance/speed.

    Example:
        >>> import jax
        >>> from diffbrain.zoo import networks
        >>> model = networks.MultiArea.from_connectome(  # doctest: +SKIP
        ...     "../shared/data/conn-macaque-markov2014-29areas", n_per_area=50, key=jax.random.key(0)
        ... )
        >>> result = model.simulate(300.0, jax.random.key(1))  # doctest: +SKIP
        >>> model.area_rates(result).shape  # doctest: +SKIP
        (60, 29)
    """

    network: Network
    areas: tuple[str, ...] = eqx.field(static=True)
    hierarchy: Float[Array, " A"]
    fln: Float[Array, "A A"]
    distance_mm: Float[Array, "A A"]
    speed: float = eqx.field(static=True)

    @classmethod
    def from_connectome(
        cls, path: str | Path, *, n_per_area: int = 50, key: PRNGKeyArray, **kwargs
    ) -> MultiArea:
        """Load ``fln_29x29.csv``, ``distance_mm_29x29.csv``, ``hierarchy_29.csv`` and ``areas.txt`` from
        the folder ``path`` and build the model (`MultiArea.build`; ``kwargs`` go to it)."""
        folder = Path(path)
        files = {
            "fln": "fln_29x29.csv",
            "distance_mm": "distance_mm_29x29.csv",
            "hierarchy": "hierarchy_29.csv",
            "areas": "areas.txt",
        }
        missing = [name for name in files.values() if not (folder / name).is_file()]
        if missing:
            raise ValueError(f"`path` {str(folder)!r} lacks {missing}; pass the connectome's folder.")
        tables = {k: np.loadtxt(folder / f, delimiter=",", ndmin=1) for k, f in files.items() if k != "areas"}
        areas = [line.strip() for line in (folder / files["areas"]).read_text().splitlines() if line.strip()]
        return cls.build(
            tables["fln"],
            tables["distance_mm"],
            tables["hierarchy"],
            areas,
            n_per_area=n_per_area,
            key=key,
            **kwargs,
        )

    @classmethod
    def build(
        cls,
        fln: Float[ArrayLike, "A A"],
        distance_mm: Float[ArrayLike, "A A"],
        hierarchy: Float[ArrayLike, " A"],
        areas: list[str] | tuple[str, ...],
        *,
        n_per_area: int = 50,
        key: PRNGKeyArray,
        gba: str = "strong",
        exc_fraction: float = 0.8,
        dt: float = 0.1,
        speed: float = 3.5,
        delay_jitter: float = 0.1,
        params: dict | None = None,
    ) -> MultiArea:
        """The model from its data.

        Args:
            fln: ``[A, A]`` FLN[target, source], ≥ 0, zero diagonal not required (it is ignored).
            distance_mm: ``[A, A]`` wiring distances, mm, ≥ 0.
            hierarchy: ``[A]`` hierarchy values ≥ 0 (normalised here by their maximum).
            areas: ``A`` distinct area names.
            n_per_area: neurons per area (``round(exc_fraction·n)`` excitatory).
            key: seeds the wiring and the delays.
            gba: ``"strong"`` or ``"weak"`` global balanced amplification (Joglekar's two regimes).
            exc_fraction: fraction of excitatory neurons.
            dt: time step, ms.
            speed: conduction speed, m/s (= mm/ms).
            delay_jitter: standard deviation of each long-range delay relative to its mean (0: one delay
                per pair of areas); normal, a draw below one step redrawn.
            params: overrides of `JOGLEKAR_2018`.

        Raises:
            ValueError: naming the argument — non-square or mismatched matrices, NaN or negative entries,
                labels that do not match, bad sizes or options.
        """
        fln, distance_mm, hierarchy, areas = _check_connectome(fln, distance_mm, hierarchy, areas)
        if gba not in ("weak", "strong"):
            raise ValueError(f"`gba` must be 'weak' or 'strong', got {gba!r}.")
        if isinstance(n_per_area, bool) or not isinstance(n_per_area, int | np.integer) or n_per_area < 2:
            raise ValueError(f"`n_per_area` must be an integer ≥ 2, got {n_per_area!r}.")
        if not 0 < exc_fraction < 1:
            raise ValueError(f"`exc_fraction` must lie strictly between 0 and 1, got {exc_fraction!r}.")
        n_e = round(exc_fraction * n_per_area)
        n_i = n_per_area - n_e
        if n_e < 1 or n_i < 1:
            raise ValueError(
                f"`n_per_area` {n_per_area} leaves {n_e} E and {n_i} I neurons; both must be ≥ 1."
            )
        if not (np.isfinite(speed) and speed > 0):
            raise ValueError(f"`speed` must be > 0 m/s, got {speed!r}.")
        if not (np.isfinite(delay_jitter) and 0 <= delay_jitter < 0.5):
            raise ValueError(f"`delay_jitter` must lie in [0, 0.5), got {delay_jitter!r}.")
        p = {**JOGLEKAR_2018, **(params or {})}
        unknown = set(params or {}) - set(JOGLEKAR_2018)
        if unknown:
            raise ValueError(f"`params` has unknown names {sorted(unknown)}; see MultiArea.JOGLEKAR_2018.")
        n_areas = len(areas)
        h = hierarchy / hierarchy.max() if hierarchy.max() > 0 else hierarchy
        gain = 1.0 + p["alpha"] * h

        # in-degree kept: connection probability and the compensating weight scale per source population
        prob = min(1.0, P_REFERENCE * N_REFERENCE / n_per_area)
        ref_e, ref_i = (
            P_REFERENCE * round(exc_fraction * N_REFERENCE),
            P_REFERENCE * (N_REFERENCE - round(exc_fraction * N_REFERENCE)),
        )
        scale_e, scale_i = ref_e / (prob * n_e), ref_i / (prob * n_i)

        # neurons: area-major, E then I in each area
        offsets = np.arange(n_areas) * n_per_area
        tau = np.tile(np.r_[np.full(n_e, p["tau_E"]), np.full(n_i, p["tau_I"])], n_areas)
        per_mV = G_L / -np.expm1(-dt / tau)  # pA of one-step current per mV of jump, per postsynaptic neuron
        neuron = LIF(
            V_rest=p["V_rest"], V_reset=p["V_reset"], V_th=p["V_th"], C=tau * G_L, g_L=G_L, t_ref=p["t_ref"]
        )
        mu = np.tile(np.r_[np.full(n_e, p["mu_E"]), np.full(n_i, p["mu_I"])], n_areas)

        rng = numpy_generator(key)
        exc_of = [np.arange(n_e) + o for o in offsets]
        inh_of = [np.arange(n_e, n_per_area) + o for o in offsets]
        exc, inh = [], []
        # the GBA-dependent entries are {"weak": …, "strong": …} unless `params` gives one number
        w_ei, mu_ee = (p[k][gba] if isinstance(p[k], dict) else p[k] for k in ("w_EI", "mu_EE"))
        for a in range(n_areas):
            d = p["local_delay"]
            exc.append(_block(rng, exc_of[a], exc_of[a], prob, gain[a] * p["w_EE"] * scale_e, d))
            exc.append(_block(rng, exc_of[a], inh_of[a], prob, gain[a] * p["w_IE"] * scale_e, d))
            inh.append(_block(rng, inh_of[a], exc_of[a], prob, -w_ei * scale_i, d))
            inh.append(_block(rng, inh_of[a], inh_of[a], prob, -p["w_II"] * scale_i, d))
        for s in range(n_areas):
            for t in range(n_areas):
                if s == t or fln[t, s] == 0:
                    continue
                mean = distance_mm[t, s] / speed
                for targets, mu_lr in ((exc_of[t], mu_ee), (inh_of[t], p["mu_IE"])):
                    block = _block(rng, exc_of[s], targets, prob, gain[t] * mu_lr * fln[t, s] * scale_e, mean)
                    if delay_jitter > 0:  # normal, each delay below one step redrawn (as NEST does)
                        delay = np.empty(block.pre.size, np.float32)
                        truncated_normal(rng, mean, delay_jitter * mean, dt, delay)
                        block = block._replace(delay=delay)
                    exc.append(block)
        exc_edges = _concatenate(exc, per_mV)
        inh_edges = _concatenate(inh, per_mV)

        rate = p["sigma"] ** 2 / (2 * NOISE_JUMP**2 * tau) * 1000.0  # Hz, per sign
        jump = NOISE_JUMP * per_mV
        tau_syn = dt / 10
        network = Network.build(
            sizes={f"{area}/{kind}": size for area in areas for kind, size in (("E", n_e), ("I", n_i))},
            neuron=neuron,
            receptors={"exc": Expon(tau=tau_syn, mode="cuba"), "inh": Expon(tau=tau_syn, mode="cuba")},
            edges={"exc": exc_edges, "inh": inh_edges},
            dt=dt,
            background=[Background(rate, jump, "exc"), Background(rate, -jump, "inh")],
            I_ext=mu * G_L,
        )
        return cls(
            network, tuple(areas), jnp.asarray(h), jnp.asarray(fln), jnp.asarray(distance_mm), float(speed)
        )

    @property
    def n_per_area(self) -> int:
        """Neurons per area."""
        return self.network.n // len(self.areas)

    def excitatory(self, area: str) -> np.ndarray:
        """Global indices of ``area``'s excitatory neurons."""
        if area not in self.areas:
            raise ValueError(f"`area` {area!r} is not one of {self.areas}.")
        return np.arange(self.network.n)[self.network.slices[f"{area}/E"]]

    def pulse(
        self,
        area: str = "V1",
        start_ms: float = 100.0,
        duration_ms: float = 100.0,
        amplitude_mV: float = 6.3,
    ) -> Pulse:
        """A step of extra drive (``amplitude_mV`` × g_L pA) into ``area``'s excitatory neurons."""
        return Pulse(self.excitatory(area), start_ms, start_ms + duration_ms, amplitude_mV * G_L)

    def init_state(self, key: PRNGKeyArray) -> NetworkState:
        """Membrane potentials uniform in [V_rest, V_th) as in the original; no spikes in flight."""
        neuron = self.network.neuron
        V = jax.random.uniform(key, (self.network.n,), jnp.float32, neuron.V_rest, neuron.V_th)
        return self.network.init_state(V=V)

    def simulate(
        self,
        duration_ms: float,
        key: PRNGKeyArray,
        *,
        pulse: Pulse | str | None = "V1",
        state: NetworkState | None = None,
        **kwargs,
    ) -> NetworkResult:
        """Simulate ``duration_ms`` ms from ``state`` (default: `init_state` drawn with ``key``, which also
        seeds the noise), with the default `pulse` into the area named by ``pulse``, a given `Pulse`, or
        none (None); ``kwargs`` go to `Network.simulate`."""
        if isinstance(pulse, str):
            pulse = self.pulse(pulse)
        init_key, run_key = jax.random.split(key)
        if state is None:
            state = self.init_state(init_key)
        return self.network.simulate(duration_ms, run_key, state=state, pulse=pulse, **kwargs)

    def area_rates(self, result: NetworkResult, bin_ms: float = 5.0) -> Float[Array, "B A"]:
        """Excitatory population rate of each area in bins of ``bin_ms`` ms, Hz, ``[bins, areas]``."""
        return result.rate_trace(bin_ms)[:, 0::2]


def _block(rng, pre_pop, post_pop, prob, weight, delay) -> Edges:
    """Each pair (pre, post) of two populations connected with probability ``prob``; weight in mV."""
    if prob >= 1.0:
        pre, post = np.repeat(pre_pop, post_pop.size), np.tile(post_pop, pre_pop.size)
    else:
        W = CSR.fixed_prob(jax.random.key(int(rng.integers(2**31))), pre_pop.size, post_pop.size, prob)
        counts = np.diff(np.asarray(W.indptr))
        pre, post = pre_pop[np.repeat(np.arange(pre_pop.size), counts)], post_pop[np.asarray(W.indices)]
    return Edges(pre, post, np.full(pre.size, weight), np.full(pre.size, delay))


def _concatenate(blocks: list[Edges], per_mV: np.ndarray) -> Edges:
    """One `Edges` of all blocks, jumps (mV) turned into one-step currents (pA) of each target."""
    pre, post, weight, delay = (np.concatenate(x) for x in zip(*blocks, strict=True))
    return Edges(pre, post, weight * per_mV[post], delay)


def _check_connectome(fln, distance_mm, hierarchy, areas):
    fln, distance_mm, hierarchy = (np.asarray(x, dtype=float) for x in (fln, distance_mm, hierarchy))
    for name, matrix in (("fln", fln), ("distance_mm", distance_mm)):
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"`{name}` must be a square [areas, areas] matrix, got shape {matrix.shape}.")
    for name, array in (("fln", fln), ("distance_mm", distance_mm), ("hierarchy", hierarchy)):
        if not np.all(np.isfinite(array)):
            raise ValueError(
                f"`{name}` must be finite; it has {int(np.sum(~np.isfinite(array)))} NaN/inf entries."
            )
        if np.any(array < 0):
            raise ValueError(f"`{name}` must be ≥ 0; it has {int(np.sum(array < 0))} negative entries.")
    n_areas = fln.shape[0]
    if distance_mm.shape != fln.shape or hierarchy.shape != (n_areas,):
        raise ValueError(
            f"`fln` {fln.shape}, `distance_mm` {distance_mm.shape} and `hierarchy` {hierarchy.shape} must "
            "describe the same areas: [A, A], [A, A] and [A]."
        )
    areas = [str(a) for a in areas]
    if len(areas) != n_areas or len(set(areas)) != n_areas:
        raise ValueError(
            f"`areas` must hold {n_areas} distinct names (one per row of `fln`), got {len(areas)}."
        )
    if np.any(fln.sum(axis=1) - np.diag(fln) > 1.0 + 1e-6):
        raise ValueError(
            "`fln` rows (targets) must sum to ≤ 1 (fractions of labelled neurons, FLN[target, source])."
        )
    return fln, distance_mm, hierarchy, areas
