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

* Size: ``n_per_area`` (default 50) instead of 2,000, with a scaling rule for the weights. Each neuron keeps
  as many inputs per source population as the size allows: the connection probability becomes
  ``min(1, 0.1·2000/n)``, so from 200 neurons per area on every in-degree is the original's (160 E, 40 I
  per source population) and nothing is rescaled. Below, with in-degree ``K' < K``, every jump is
  multiplied by ``(K/K')^γ`` and the mean input this loses at the reference baseline rates
  (`REFERENCE_RATES`, E 1.2 and I 5.3 Hz) is added to the constant drive, ``Σ J·(K − (K/K')^γ·K')·ν·τ``
  summed over the neuron's source populations (van Albada, Helias & Diesmann 2015). γ = ½ would keep the
  mean and variance of each input at baseline but halve every coupling's effect on rate changes at
  n_per_area = 50 (K' = K/4): the pulse then dies after V2. γ = 1 keeps the mean coupling ``J·K``, but
  a small all-to-all population fires in volleys (each neuron's input is shared, one spike in 40 is 2.5 %
  of the population): in 5 of 12 seeds the prefrontal cluster (46d, 9/46d, 8B, 8l, STPr) ignited at the
  end of the pulse and stayed at 200–400 Hz. ``weight_exponent`` γ = 0.95 (the default) weakens the
  couplings by ``(K'/K)^0.05`` — 7 % at 50, 3 % at 100 neurons per area — which returned every one of 38
  realisations tested at n_per_area = 50 to baseline. It was chosen against the full-size model (below):
  beyond V1 the responses are about ½ of the full-size ones at 50 and ⅔ or more at 100 neurons per area.
* Synapses: the original's instantaneous voltage jumps are current-based `synapses.Expon` receptors with
  τ = dt/10 — all of a spike's charge arrives within its step — with weights ``J·g_L/(1 − e^{−dt/τ_m})`` pA
  for a jump of J mV, which the exact LIF step turns into a jump of J mV. A `Network` delay D starts a
  current D after the spike, so the jump is complete one step later: every local and long-range latency is
  D + dt (2.1 ms locally at dt = 0.1 ms), one step more than in the authors' Brian code, where
  ``on_pre='V += w'`` lands at D.
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

Measured — full size (2,000 neurons per area, 1.8·10⁸ synapses; 16-core CPU, 12 s per 600 ms), one delay per
pair of areas (``delay_jitter=0``), 100 ms pulse from 200 ms, peak E rate above baseline in 5 ms bins /
latency to half that peak, 2 network/noise seeds: baseline E 1.2, I 5.3 Hz. Strong GBA, 6.3 mV: V1 74 Hz / 30
ms, V2 80/58, V4 134/70, DP 151/70, MT 145/70, TEO 136/75, TEpd 65/80, 8l 10/95, 7A 8/90, 7B 5/105, 46d 3 Hz,
the rest ≤ 3 Hz; weak GBA, 15 mV: V1 102/8, V2 79/12, V4 51/23, DP 57/35, MT 55/30, TEO 33/42, TEpd 9/53
Hz/ms, the rest ≤ 3 Hz. Spearman ρ(hierarchy, peak) −0.57 and −0.67 (strong), ρ(hierarchy, latency) over the
areas above 5 Hz 0.86 and 0.92; 150–300 ms after the pulse every area within 0.7 Hz of its baseline. V4, DP,
MT and TEO respond more than V1 in the full-size model too: not a small-size artefact. At n_per_area = 50 (γ =
0.95, same protocol from 100 ms, mean of the 4 seeds of the tests): baseline E 0.96–1.16, I 5.3–5.8 Hz; V1
70/38, V2 44/32, V4 65/62, DP 80/52, MT 76/52, TEO 68/98, TEpd 28/78, 46d 10/72, 8l 7 Hz/148 ms; ρ(h, peak)
−0.50 (per seed −0.40 … −0.55), ρ(h, latency) 0.83; 150–250 ms after the pulse every area ≤ 8 Hz in 38 of 38
realisations (22 without, 16 with the 10 % delay jitter), against 7 of 12 with γ = 1 (no jitter; the other 5
locked at 350–380 Hz). At n_per_area = 100 (3 seeds): V1 64/18, V2 59/48, V4 90/72, DP 139/82, MT 134/82, TEO
95/88, TEpd 40/98; ρ(h, peak) −0.54, ρ(h, latency) 0.99. Strong GBA's reach (the summed response from TEO up
over V1's) varies between seeds at n_per_area = 50 (0.04 to 1.3; full size 2.2–2.4 against weak GBA's
0.41–0.45).

Remaining deviations from the full-size model: (1) the responses beyond V1 are about ½ of the full-size ones
at n_per_area = 50 and vary between seeds; parietal/prefrontal areas respond little at either size (8l, 7A ≤
10 Hz; the NEST replication in ReScience by Shimoura et al., at full size with the 150 ms pulse, reports
responses in 7A, 46d, 7m and 7B). (2) The pulse lasts 100 ms (the authors': 150 ms). Speed (loaded 2-core
machine, compile excluded): 4.4 s per biological second with the 10 % delay jitter (128k delay rows), 0.8 s
with one delay per pair of areas (``delay_jitter=0``, 20k rows).

Data: ``../shared/data/conn-macaque-markov2014-29areas`` (any folder with these files) — ``fln_29x29.csv``
(FLN[target, source]), ``distance_mm_29x29.csv`` (wiring distances, mm), ``hierarchy_29.csv`` (hierarchy
values), ``areas.txt``.

??? cite "Reference"
    Joglekar, M. R., Mejias, J. F., Yang, G. R. & Wang, X.-J. (2018). Inter-areal balanced amplification
    enhances signal propagation in a large-scale circuit model of the primate cortex. Neuron 98, 222–234.
    Markov, N. T. et al. (2014). A weighted and directed interareal connectivity matrix for macaque cerebral
    cortex. Cereb. Cortex 24, 17–36. Chaudhuri, R. et al. (2015). A large-scale circuit mechanism for
    hierarchical dynamical processing in the primate cortex. Neuron 88, 419–431. van Albada, S. J., Helias,
    M. & Diesmann, M. (2015). Scalability of asynchronous networks is limited by one-to-one mapping between
    effective connectivity and correlations. PLoS Comput. Biol. 11, e1004490.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ..._time_step import step_ms
from ...ops import CSR
from ...ops.csr import numpy_generator
from .._checks import check_dt
from ..neurons.lif import LIF
from ..synapses.expon import Expon
from ._random import truncated_normal
from .adjacency import _labelled, _numbered, _real_dtype
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

_PARAM_RULES = {  # what each entry of `params` must be, in words and as a test of its value
    **dict.fromkeys(("V_rest", "V_th", "V_reset", "mu_E", "mu_I"), ("in mV (finite)", np.isfinite)),
    **dict.fromkeys(("tau_E", "tau_I"), ("> 0 ms (a membrane time constant)", lambda x: x > 0)),
    "t_ref": ("≥ 0 ms (a refractory period)", lambda x: x >= 0),
    "sigma": ("≥ 0 mV (the noise amplitude)", lambda x: x >= 0),
    **dict.fromkeys(
        ("w_EE", "w_IE", "w_II", "w_EI", "mu_EE", "mu_IE"),
        ("≥ 0 mV (a jump size; the model makes inhibitory jumps negative)", lambda x: x >= 0),
    ),
    "alpha": (
        "≥ −1 (so that the gain 1 + α·h stays ≥ 0 for hierarchy values h in [0, 1])",
        lambda x: x >= -1,
    ),
    "local_delay": ("≥ 0 ms (a latency)", lambda x: x >= 0),
}

WEIGHT_EXPONENT = 0.95
"""The default γ of the small-size weight scaling ``(K/K')^γ``, chosen against full-size runs (module doc)."""

REFERENCE_RATES = {"E": 1.2, "I": 5.3}
"""Hz: baseline rates of the full-size model (2,000 neurons per area, this implementation, 2 seeds; published:
0.75–1.5 Hz for E, 5–6 Hz for I). The small-size scaling restores the mean input at these rates."""


class PulseResponse(NamedTuple):
    """Each area's response to a pulse (`MultiArea.pulse_response`): ``[A]`` arrays, E rates.

    Attributes:
        baseline: mean rate before the pulse, Hz.
        peak: the largest binned rate above ``baseline`` during the pulse and its margin, Hz.
        latency: from the pulse onset to the first bin whose rate above ``baseline`` reaches half of
            ``peak``, ms; NaN for an area that does not respond (``peak`` ≤ 0).
        after: mean rate once the pulse has settled, Hz.
    """

    baseline: np.ndarray
    peak: np.ndarray
    latency: np.ndarray
    after: np.ndarray


class MultiArea(eqx.Module):
    """The multi-area model as a `Network` with its areas' metadata.

    Populations are ``"<area>/E"`` and ``"<area>/I"``, area by area in the order of ``areas`` as given to
    `build` (not sorted; the shipped Markov connectome lists them in hierarchy order, V1 first).

    Attributes:
        network: the `Network` (LIF neurons, receptors ``"exc"`` and ``"inh"``, Poisson noise).
        areas: area names.
        hierarchy: ``[A]`` hierarchy values normalised to [0, 1].
        fln: ``[A, A]`` fraction of labelled neurons, FLN[target, source].
        distance_mm: ``[A, A]`` wiring distances, mm.
        speed: conduction speed, m/s (= mm/ms); mean long-range delay = distance/speed.

    Examples:
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
        the folder ``path`` (`read_connectome`) and build the model (`MultiArea.build`; ``kwargs`` go to
        it)."""
        return cls.build(**read_connectome(path), n_per_area=n_per_area, key=key, **kwargs)

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
        weight_exponent: float = WEIGHT_EXPONENT,
        params: dict | None = None,
    ) -> MultiArea:
        """The model from its data.

        Args:
            fln: ``[A, A]`` FLN[target, source], ≥ 0, zero diagonal not required (it is ignored). A
                labelled table (pandas ``DataFrame``) must have ``areas`` as its rows and columns, in that
                order (e.g. ``fln.loc[areas, areas]``); likewise ``distance_mm`` and a ``hierarchy``
                ``Series``. A table numbered 0..A−1 in order (pandas' default, e.g. ``pd.read_csv(path,
                header=None)``), or numbered so on its rows with the columns "0".."A−1" as text (such a table
                written ``to_csv`` and read back with ``index_col=0``), is unlabelled: its rows are taken in
                the order of ``areas``, as an array's.
            distance_mm: ``[A, A]`` wiring distances, mm, ≥ 0.
            hierarchy: ``[A]`` hierarchy values ≥ 0 (normalised here by their maximum).
            areas: ``A`` distinct area names, in the order of the matrices' rows; the populations follow
                it (it is not sorted by ``hierarchy``).
            n_per_area: neurons per area (``round(exc_fraction·n)`` excitatory).
            key: seeds the wiring and the delays.
            gba: ``"strong"`` or ``"weak"`` global balanced amplification (Joglekar's two regimes).
            exc_fraction: fraction of excitatory neurons.
            dt: time step, ms. With ``delay_jitter`` > 0 it must lie below every wired pair's mean delay
                ``distance_mm/speed`` (the shortest is 1.428571 ms for the Markov connectome at 3.5 m/s).
            speed: conduction speed, m/s (= mm/ms).
            delay_jitter: standard deviation of each long-range delay relative to its mean (0: one delay
                per pair of areas); normal, a draw below one step redrawn.
            weight_exponent: γ of the small-size weight scaling: each synapse's jump is multiplied by
                ``(K/K')^γ`` where ``K'`` is its in-degree per source population here and ``K`` the
                original's (160 E, 40 I), and the mean input lost at the reference baseline rates is added
                as constant drive (see the module doc). 1 keeps the mean coupling ``J·K``, ½ is van Albada et
                al.'s (2015) variance-preserving rule; no effect from 200 neurons per area on.
            params: overrides of `JOGLEKAR_2018`, each one real number (``w_EI`` and ``mu_EE`` may also be
                a dict by ``gba`` regime, as there): potentials and drives finite; time constants > 0;
                ``t_ref``, ``sigma``, jump sizes ``w_*``/``mu_EE``/``mu_IE`` and ``local_delay`` ≥ 0;
                ``alpha`` ≥ −1; ``V_reset`` below ``V_th``.

        Raises:
            ValueError: naming the argument — non-square or mismatched matrices, NaN or negative entries,
                table labels (pandas ``fln``, ``distance_mm``, ``hierarchy``) that are not ``areas`` in
                order, bad sizes or options, an unknown or out-of-range ``params`` entry, a mean
                long-range delay not above ``dt`` with ``delay_jitter`` > 0.
        """
        fln, distance_mm, hierarchy, areas = _check_connectome(fln, distance_mm, hierarchy, areas)
        if gba not in ("weak", "strong"):
            raise ValueError(f"`gba` must be 'weak' or 'strong', got {gba!r}.")
        if isinstance(n_per_area, bool) or not isinstance(n_per_area, int | np.integer) or n_per_area < 2:
            raise ValueError(f"`n_per_area` must be an integer ≥ 2, got {n_per_area!r}.")
        exc_fraction = _number(
            "`exc_fraction`", exc_fraction, "strictly between 0 and 1", lambda x: 0 < x < 1
        )
        n_e = round(exc_fraction * n_per_area)
        n_i = n_per_area - n_e
        if n_e < 1 or n_i < 1:
            raise ValueError(
                f"`n_per_area` {n_per_area} leaves {n_e} E and {n_i} I neurons; both must be ≥ 1."
            )
        speed = _number("`speed`", speed, "> 0 m/s", lambda x: x > 0)
        delay_jitter = _number("`delay_jitter`", delay_jitter, "in [0, 0.5)", lambda x: 0 <= x < 0.5)
        dt = step_ms(check_dt(dt))  # as `Network.build` takes it: np.float32(0.1) is 0.1 ms
        if delay_jitter > 0:  # delays are redrawn until above one step, so every mean must exceed it
            shortest, s, t = shortest_mean_delay(fln, distance_mm, speed)
            if shortest <= dt:
                raise ValueError(
                    f"the mean long-range delay `distance_mm`/`speed` from {areas[s]} to {areas[t]} is "
                    f"{shortest:.3g} ms, not above `dt` = {dt} ms; with `delay_jitter` > 0 every "
                    "wired pair's mean delay must exceed one step (delays are redrawn until they do): pass "
                    "a smaller `dt`, a lower `speed` or `delay_jitter=0`."
                )
        weight_exponent = _number(
            "`weight_exponent`", weight_exponent, "in [0.5, 1]", lambda x: 0.5 <= x <= 1
        )
        p = _checked_params(params, gba)
        n_areas = len(areas)
        h = hierarchy / hierarchy.max() if hierarchy.max() > 0 else hierarchy
        gain = 1.0 + p["alpha"] * h

        w_ei, mu_ee = p["w_EI"], p["mu_EE"]

        # in-degree as close to the original as the size allows; weights × (K/K')^γ; lost mean input as drive
        prob = min(1.0, P_REFERENCE * N_REFERENCE / n_per_area)
        n_e_ref = round(exc_fraction * N_REFERENCE)
        k_e, k_i = P_REFERENCE * n_e_ref, P_REFERENCE * (N_REFERENCE - n_e_ref)  # original in-degrees
        scale_e, scale_i = (k_e / (prob * n_e)) ** weight_exponent, (k_i / (prob * n_i)) ** weight_exponent
        # inputs (in units of one original synapse) each neuron lacks per source population, × its rate (kHz)
        lost_e = (k_e - scale_e * prob * n_e) * REFERENCE_RATES["E"] / 1000.0
        lost_i = (k_i - scale_i * prob * n_i) * REFERENCE_RATES["I"] / 1000.0
        lr = fln.sum(axis=1) - np.diag(fln)  # summed long-range FLN of each target area
        drive_e = p["mu_E"] + p["tau_E"] * (gain * (p["w_EE"] + mu_ee * lr) * lost_e - w_ei * lost_i)
        drive_i = p["mu_I"] + p["tau_I"] * (
            gain * (p["w_IE"] + p["mu_IE"] * lr) * lost_e - p["w_II"] * lost_i
        )

        # neurons: area-major, E then I in each area
        offsets = np.arange(n_areas) * n_per_area
        tau = np.tile(np.r_[np.full(n_e, p["tau_E"]), np.full(n_i, p["tau_I"])], n_areas)
        per_mV = G_L / -np.expm1(-dt / tau)  # pA of one-step current per mV of jump, per postsynaptic neuron
        neuron = LIF(
            V_rest=p["V_rest"], V_reset=p["V_reset"], V_th=p["V_th"], C=tau * G_L, g_L=G_L, t_ref=p["t_ref"]
        )
        mu = np.concatenate(
            [np.r_[np.full(n_e, e), np.full(n_i, i)] for e, i in zip(drive_e, drive_i, strict=True)]
        )

        rng = numpy_generator(key)
        exc_of = [np.arange(n_e) + o for o in offsets]
        inh_of = [np.arange(n_e, n_per_area) + o for o in offsets]
        exc, inh = [], []
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
                        label = f"the delays {areas[s]} → {areas[t]} (`distance_mm`/`speed`, `delay_jitter`)"
                        truncated_normal(rng, mean, delay_jitter * mean, dt, delay, label=label)
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

    def area_rates(self, result: NetworkResult, bin_ms: float = 5.0) -> Float[Array, "*runs B A"]:
        """Excitatory population rate of each area in bins of ``bin_ms`` ms from the run's start (which is
        ``result.start_ms`` after time zero for a continued run), Hz, ``[bins, areas]``; for a ``vmap``'d
        batch of runs ``[..., bins, areas]``."""
        return _excitatory_rates(result, bin_ms, "result")

    @staticmethod
    def pulse_response(
        rates: NetworkResult | Float[ArrayLike, "B A"],
        pulse: Pulse,
        bin_ms: float = 5.0,
        margin_ms: float = 50.0,
        settle_ms: float = 150.0,
        *,
        start_ms: float | None = None,
    ) -> PulseResponse:
        """Each area's response to ``pulse`` from a run's result, or from binned rates (`area_rates`, or
        their mean over runs).

        Times are the pulse's: ms since the state's time zero (`init_state`). A result is binned here in
        bins of ``bin_ms`` ms from its `NetworkResult.start_ms` (0 unless it continues an earlier run's
        ``final_state``). Binned rates must come with the ``bin_ms`` they were binned with (`area_rates`'s)
        and, for a continued run, its ``start_ms``: nothing in the array says either.

        Bins are judged by their centres. The baseline is the mean rate from 20 ms (after the start
        transient of the uniform initial potentials) to the pulse onset; the response window runs from the
        onset to ``margin_ms`` after the pulse ends; "after" is the mean rate from ``settle_ms`` after the
        pulse ends to the end of the run (NaN if the run ends before). An area whose rate never rises above
        its baseline in the window (``peak`` ≤ 0) has a NaN latency.

        Args:
            rates: a `MultiArea` run's `NetworkResult` (a ``vmap``'d batch of runs that started together:
                their mean rates), or its excitatory rates ``[bins, areas]`` in Hz.
            pulse: the `Pulse` the run was given (`pulse`).
            bin_ms: the bin width, ms: the width to bin a result in, or the width the rates were binned in.
            margin_ms: how long after the pulse ends the response window lasts, ms.
            settle_ms: from how long after the pulse ends "after" is measured, ms.
            start_ms: for binned rates, when their first bin starts, ms since time zero (default 0; a run
                continued from a ``final_state``: its result's ``start_ms``); a result has its own.

        Raises:
            ValueError: ``rates`` is not ``[bins, areas]`` nor a `MultiArea` result (or a batch of them that
                started together), ``bin_ms`` is not positive, ``start_ms`` is given with a result or is
                negative, or no bin lies in the baseline or the window.
        """
        if isinstance(rates, NetworkResult):
            if start_ms is not None:
                raise ValueError(
                    "`start_ms` is for binned rates: a result has its own (`rates.start_ms`); omit it."
                )
            start_ms = rates.start_ms
            rates = np.asarray(_excitatory_rates(rates, bin_ms, "rates"), dtype=float)
            rates = rates.reshape(-1, *rates.shape[-2:]).mean(axis=0)  # a batch of runs: their mean
        bin_ms = _number("`bin_ms`", bin_ms, "> 0 ms (the rates' bin width)", lambda x: x > 0)
        start_ms = 0.0 if start_ms is None else start_ms
        start_ms = _number("`start_ms`", start_ms, "≥ 0 ms (the first bin's start)", lambda x: x >= 0)
        rates = np.asarray(rates, dtype=float)
        if rates.ndim != 2:
            raise ValueError(f"`rates` must be [bins, areas], got shape {rates.shape}.")
        times = start_ms + (np.arange(rates.shape[0]) + 0.5) * bin_ms
        before = (times > 20.0) & (times < pulse.start_ms)
        window = (times >= pulse.start_ms) & (times < pulse.stop_ms + margin_ms)
        if not before.any() or not window.any():
            raise ValueError(
                f"`rates` ({rates.shape[0]} bins of {bin_ms} ms from {start_ms} ms) must cover some time "
                f"between 20 ms and the pulse onset at {pulse.start_ms} ms, and the pulse itself (times "
                "since the state's time zero: pass a continued run's result, or its rates with `start_ms`)."
            )
        baseline = rates[before].mean(axis=0)
        response = rates[window] - baseline
        peak = response.max(axis=0)
        latency = times[window][np.argmax(response >= 0.5 * peak, axis=0)] - pulse.start_ms
        latency = np.where(peak > 0, latency, np.nan)
        settled = times >= pulse.stop_ms + settle_ms
        after = rates[settled].mean(axis=0) if settled.any() else np.full(rates.shape[1], np.nan)
        return PulseResponse(baseline, peak, latency, after)


def _excitatory_rates(result: NetworkResult, bin_ms: float, argument: str) -> Float[Array, "B A"]:
    """The rates of a `MultiArea` result's ``"<area>/E"`` populations (every other, from the first) in bins of
    ``bin_ms`` ms, Hz (``[..., bins, areas]`` for a batch of runs); a ``ValueError`` naming ``argument`` for a
    result of another network."""
    names = result.names
    if len(names) % 2 or not all(
        e.endswith("/E") and i == e[:-1] + "I" for e, i in zip(names[0::2], names[1::2], strict=True)
    ):
        raise ValueError(
            f"`{argument}` must be a MultiArea run's result, with populations '<area>/E', '<area>/I' per "
            f"area; got populations {list(names[:4])}{' …' if len(names) > 4 else ''}."
        )
    return result.rate_trace(bin_ms)[..., 0::2]


def read_connectome(path: str | Path) -> dict:
    """``fln``, ``distance_mm``, ``hierarchy`` and ``areas`` read from the folder ``path`` (the files of
    `MultiArea.from_connectome`) and checked as `MultiArea.build` checks them.

    Raises:
        ValueError: naming the folder and the file that is missing or unreadable, or the table that is
            malformed.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(
            f"`path` {str(folder)!r} is not a folder (a relative path starts at {str(Path.cwd())!r}); pass "
            "the connectome's folder, e.g. $DIFFBRAIN_DATA/conn-macaque-markov2014-29areas."
        )
    files = {
        "fln": "fln_29x29.csv",
        "distance_mm": "distance_mm_29x29.csv",
        "hierarchy": "hierarchy_29.csv",
        "areas": "areas.txt",
    }
    missing = [name for name in files.values() if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"`path` {str(folder)!r} lacks {missing}; pass the connectome's folder.")
    tables = {}
    for name, file in files.items():
        if name == "areas":
            continue
        try:
            tables[name] = np.loadtxt(folder / file, delimiter=",", ndmin=1)
        except ValueError as error:
            raise ValueError(f"`path`: {str(folder / file)!r} is not a table of numbers ({error}).") from None
    lines = (folder / files["areas"]).read_text().splitlines()
    areas = [line.strip() for line in lines if line.strip()]
    fln, distance_mm, hierarchy, areas = _check_connectome(
        tables["fln"], tables["distance_mm"], tables["hierarchy"], areas
    )
    return {"fln": fln, "distance_mm": distance_mm, "hierarchy": hierarchy, "areas": areas}


def shortest_mean_delay(fln: ArrayLike, distance_mm: ArrayLike, speed: float) -> tuple[float, int, int]:
    """The shortest mean long-range delay (ms) over the wired pairs of areas (FLN[target, source] > 0, no
    self-pairs) at ``speed`` m/s (= mm/ms), with its source and target index; infinite when none is wired."""
    fln = np.asarray(fln)
    wired = (fln > 0) & ~np.eye(len(fln), dtype=bool)
    mean_delay = np.where(wired, np.asarray(distance_mm, dtype=float) / speed, np.inf)
    target, source = np.unravel_index(np.argmin(mean_delay), mean_delay.shape)
    return float(mean_delay[target, source]), int(source), int(target)


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


def _number(name: str, value, what: str, valid) -> float:
    """``value`` as a float when it is one finite real number (not a bool) for which ``valid`` holds, else a
    ``ValueError``: ``name`` must be ``what``."""
    array = np.asarray(value)
    real = array.ndim == 0 and array.dtype != bool and _real_dtype(array.dtype) and np.isfinite(array)
    if not (real and valid(float(array))):
        raise ValueError(f"{name} must be one real number {what}, got {value!r}.")
    return float(array)


def _checked_params(params: Mapping | None, gba: str) -> dict:
    """`JOGLEKAR_2018` with the overrides ``params``, each checked (`_PARAM_RULES`) and the GBA-dependent
    entries (a dict by regime, or one number) resolved to ``gba``'s number."""
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise ValueError(
            f"`params` must be a dict of overrides of JOGLEKAR_2018, got {type(params).__name__}."
        )
    unknown = set(params) - set(JOGLEKAR_2018)
    if unknown:
        raise ValueError(f"`params` has unknown names {sorted(unknown)}; see MultiArea.JOGLEKAR_2018.")
    checked = {}
    for name, value in {**JOGLEKAR_2018, **params}.items():
        label = f"`params[{name!r}]`"
        if isinstance(value, Mapping):  # {"weak": …, "strong": …}, as w_EI and mu_EE are by default
            if gba not in value:
                raise ValueError(
                    f"{label} is a dict by GBA regime but lacks `gba` = {gba!r} (it has {sorted(value)}); "
                    "give it that key or one number for both regimes."
                )
            value, label = value[gba], f"`params[{name!r}][{gba!r}]`"
        what, valid = _PARAM_RULES[name]
        checked[name] = _number(label, value, what, valid)
    if checked["V_reset"] >= checked["V_th"]:
        raise ValueError(
            f"`params`: 'V_reset' ({checked['V_reset']} mV) must be below 'V_th' ({checked['V_th']} mV)."
        )
    return checked


def _check_connectome(fln, distance_mm, hierarchy, areas):
    # labelled tables (pandas): their labels must be `areas` in order, checked once `areas` is
    fln, fln_labels = _labelled(fln, "fln")
    distance_mm, distance_labels = _labelled(distance_mm, "distance_mm")
    is_series = hasattr(hierarchy, "index") and hasattr(hierarchy, "to_numpy")  # a list has .index too
    labelled = is_series and not _numbered(hierarchy.index)
    hierarchy_labels = [str(x) for x in hierarchy.index] if labelled else None
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
    for name, labels in (
        ("fln", fln_labels),
        ("distance_mm", distance_labels),
        ("hierarchy", hierarchy_labels),
    ):
        if labels is not None and labels != areas:
            first = next(
                i for i, (label, area) in enumerate(zip(labels, areas, strict=True)) if label != area
            )
            selection = "areas, areas" if name != "hierarchy" else "areas"
            if sorted(labels) == sorted(areas):
                how, fix = "in another order than", f"reorder it, e.g. {name}.loc[{selection}]"
            else:  # `.loc[areas]` would not find them: relabel, or drop labels that are no area names
                how = "with other names than"
                fix = f"label it with `areas`, or pass {name}.to_numpy() if its rows are in that order"
            raise ValueError(
                f"`{name}` is labelled {how} `areas` (position {first}: {labels[first]!r}, "
                f"`areas` has {areas[first]!r}); its rows are taken in the order of `areas`: {fix}."
            )
    if np.any(fln.sum(axis=1) - np.diag(fln) > 1.0 + 1e-6):
        raise ValueError(
            "`fln` rows (targets) must sum to ≤ 1 (fractions of labelled neurons, FLN[target, source])."
        )
    return fln, distance_mm, hierarchy, areas
