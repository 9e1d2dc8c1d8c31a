"""Suite "sim": the Brette et al. (2007) COBA network simulated by diffbrain and by the simulators people use.

The network (`diffbrain.zoo.networks.EINetwork.coba`): N LIF neurons, 80% excitatory, **fixed in-degree**
80 (64 excitatory + 16 inhibitory inputs per neuron, 2% of 4,000), no autapse constraint, exponential
conductances (τ_e 5 ms, τ_i 10 ms, w_e 6 nS, w_i 67 nS, E_e 0 mV, E_i −80 mV), neurons with C 200 pF,
g_L 10 nS, rest −60, threshold −50, reset −60 mV, 5 ms refractory, the **constant drive** of the common
implementations (200 pA = 20 mV × g_L, no noise), initial V uniform in [−60, −50) mV, dt 0.1 ms, spikes
reaching the synapses one step after they happen. Every simulator gets this very network: diffbrain
builds it, and its synapses (pre, post) and initial potentials are written to an ``.npz`` file from which
each peer builds its own network, synapse by synapse (so the firing rates must agree up to the
integration schemes: exponential Euler with the synaptic current held over a step in diffbrain and
BrainPy, exponential Euler with the total conductance in Brian2, NEST's adaptive RK45).

Methods: ``diffbrain`` (`networks.simulate`, the ``cpu`` ops backend chosen automatically; unrolling the
scan was measured slower, 2× at unroll 2); ``brian2.runtime`` (Cython), ``brian2.cpp_standalone``
(single thread), ``brainpy`` (2.8, `EventCSRLinear`), ``brainpy.state`` (brainevent CSR) and ``nest``
(``iaf_cond_exp``, one thread). Where the compiled kernel is unavailable and the automatic backend falls
back to ``reference``, diffbrain's records are skipped with the reason
(`diffbrain.bench.ops.automatic_fallback`; it still runs, for the peers' rate comparison). The peers run
in a subprocess of another Python (``peer_python``, default ``$DIFFBRAIN_PEER_PYTHON`` else this
interpreter) through ``sim_peers.py``; a peer missing there, failing or timing out gives
``status="skipped"`` records with the reason, never a number.

Cases: ``n=4000/T=1s`` and ``n=4000/T=5s`` (`DURATIONS_MS`), then the scaling curve at n = 40,000
(`SCALING`) and, with ``full``, 400,000 (`FULL_SCALING`) — fixed in-degree 80, so every neuron sees the same
input statistics; shorter biological times there, against `SCALING_PEERS`. Metrics per case and method:
``wall_time_per_bio_s`` (median timed run / simulated seconds, s per biological second, compile excluded),
``compile_time`` (s: JAX's tracing and compilation, Cython's or the C++ build), ``firing_rate_e`` and
``firing_rate_i`` (Hz, over the timed run).

The microcircuit (`run_microcircuit`): diffbrain's `networks.Microcircuit` (Potjans & Diesmann 2014, Poisson
background) at ``scale`` (`MICROCIRCUIT`: 0.1; quick 0.04 with ``k_scale`` 0.25; ``full`` adds 1.0, each
simulator skipped when its measured peak memory does not fit, `microcircuit_memory`) against NEST's
``iaf_psc_exp`` in one thread, built from the exported network (`export_microcircuit`): the same synapses
with their weights and delays, the same DC and initial potentials, and NEST ``poisson_generator`` s at each
neuron's background rate (NEST's delays one step shorter than diffbrain's spike-ring lags,
`LATENCY_SHIFT_STEPS`: the same spike-to-PSC latency). Both simulate the one network with each of the
init/background `SEEDS` (initial potentials and Poisson input): the first seed is timed, and the rates
are compared over all (`compare_rates`: one seed's rates at scale 0.1 differ between seeds by more than
the two simulators differ). Metrics as above plus ``build_time`` (s: diffbrain's `Microcircuit.build`;
NEST's Create, Connect, Prepare), ``firing_rate_<population>`` (Hz, eight populations, from
`RATES_FROM_MS` on, the mean over the seeds, their range as min/max) and, for NEST, ``rate_deviation``
(`rate_deviation` of the seed means; the verdict of `compare_rates` in its note) and ``peak_memory`` (GiB).
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import scipy.stats
from jaxtyping import ArrayLike, Float, PRNGKeyArray

from diffbrain._data import shared_data
from diffbrain.zoo import networks

from . import brainpy_peer
from .ops import as_skipped, automatic_fallback
from .peers import peer_python as default_peer_python
from .peers import run_peer_script
from .records import Record, format_params, make_record, skipped
from .timing import measure_side_by_side

SUITE = "sim"
METHOD = "diffbrain"
N = 4_000
DURATIONS_MS = (1_000.0, 5_000.0)
SCALING = {40_000: 200.0}
"""Scaling sizes beyond `N`, with the biological time simulated there, ms."""
FULL_SCALING = {40_000: 500.0, 400_000: 100.0}
IN_DEGREE = 80
DT_MS = 0.1
PEERS = ("brian2.cpp_standalone", "brian2.runtime", brainpy_peer.METHOD, "brainpy", "nest")
SCALING_PEERS = ("brian2.cpp_standalone", "brian2.runtime", brainpy_peer.METHOD)
REPEATS = 3
BUDGET_S = 30.0
"""A peer stops repeating a case once its timed runs add up to this many seconds (after at least one)."""
PEER_TIMEOUT_S = 1_800.0
QUICK = {
    "durations_ms": (200.0,),
    "scaling": {40_000: 50.0},
    "peers": ("brian2.runtime", brainpy_peer.METHOD),
    "scaling_peers": (),
    "repeats": 2,
    "microcircuit": ((0.04, 0.25, 400.0),),
}
"""A grid for smoke tests: 33 s on the loaded 2-core machine with Brian2's Cython cache warm (+~50 s cold),
plus the microcircuit of the zoo's tests (scale 0.04, k_scale 0.25: 3·10⁶ synapses) against NEST."""
MICROCIRCUIT_DATA = "conn-potjans-diesmann2014"
"""The microcircuit's data folder (`microcircuit_folder`)."""
MICROCIRCUIT = ((0.1, 1.0, 1_000.0),)
"""Microcircuit cases: (scale, k_scale, biological time in ms); 0.1 is 7,717 neurons, 3.0·10⁷ synapses."""
FULL_MICROCIRCUIT = ((0.1, 1.0, 1_000.0), (1.0, 1.0, 600.0))
MICROCIRCUIT_PEERS = ("nest",)
DIFFBRAIN_BYTES_PER_SYNAPSE = 32
"""Peak resident memory of diffbrain's process per synapse of a microcircuit case (`microcircuit_memory`):
the runtime, `Microcircuit.build` (one source population at a time) and the export of the synapses while
the network is alive. Measured (peak RSS): scale 0.25 (7.5·10⁷ synapses) 1.7 GiB building, 2.6 GiB
exporting; scale 0.5 (1.5·10⁸) 2.9 and 4.4 GiB (32 bytes per synapse); full scale (3.0·10⁸) 5.3 and
8.1 GiB (29 bytes; 3.9 GiB for the built network). Handing all edges to `Network.build` at once had
peaked at 5.6 GiB building and 6.7 GiB exporting at scale 0.5 (~11 and ~13.5 GiB at full scale)."""
PEER_BYTES_PER_SYNAPSE = {"nest": 52}
"""Peak resident memory of a peer's process per synapse of a microcircuit case: NEST 3.10 (one thread,
``static_synapse``, source table dropped after `Prepare`), reading the exported file in chunks (its peak
is NEST's own: reading the file whole measured the same). Measured (ru_maxrss): scale 0.1 (3.0·10⁷
synapses) 1.56 GiB, scale 0.25 (7.5·10⁷) 3.67 GiB, full scale (3.0·10⁸) 14.15 GiB: 0.14 GiB + 51 bytes per
synapse."""
SEEDS = (1, 2, 3)
"""The microcircuit's init/background seeds (`run_microcircuit`): the first is timed, all give rates."""
RATE_CONFIDENCE = 0.95
"""`compare_rates` allows ``t × SE`` for seed noise, ``t`` the quantile of Student's t for this confidence."""
RATES_FROM_MS = 200.0
"""The microcircuit's rates are counted from this time on: the start transient (initial potentials uniform
between reset and threshold) is left out, as in Potjans & Diesmann (2014)."""
LATENCY_SHIFT_STEPS = 1
"""NEST's delays are diffbrain's spike-ring lags minus this many steps (at least one step): a synapse of
delay D ms has the ring lag ``round(D/dt) + 1`` in diffbrain (a spike of step t, time (t + 1)·dt as NEST
stamps it, enters its receptor in step t + lag, whose current acts from the start of that step, D after the
spike), and NEST starts the PSC ``delay`` after the spike, so NEST gets ``(lag − 1)·dt = D``. Measured at
scale 0.1 over 0.2–1 s when the ring lag was still ``round(D/dt)`` (latency D − dt in diffbrain): NEST with
the same nominal delays had up to 52 % higher rates (L2/3e 2.11 against 1.39 Hz, L5e 12.3 against 9.7 Hz),
and with this shift agreed within 13 %."""
RATE_TOLERANCE = 0.15
RATE_FLOOR_HZ = 0.2
"""NEST's population rates on the same microcircuit should agree with diffbrain's within `RATE_TOLERANCE` ×
diffbrain's rate + this many Hz (`rates_agree`; the integration schemes differ, so do the Poisson draws,
and the slowest populations, L2/3e and L6e at ~1 Hz, fire a few hundred spikes a second in all).
Measured over 0.2–1 s: scale 0.1 with one init/background seed, NEST within 12–35 % depending on the seed
(NEST's own L2/3e 1.35–3.11 Hz over three seeds), so `compare_rates` compares seed means and allows for
their noise; with the three `SEEDS` all within 10.2 % (L2/3i 4.70 against 4.27 ± 0.44 Hz, L2/3e 1.85
against 1.69 ± 0.31 Hz); scale 0.04 with ``k_scale`` 0.25, one seed, all within 5 % but L2/3e, 0.65
against 0.80 Hz (−19 %)."""
PEER_SCRIPT = Path(__file__).with_name("sim_peers.py")
METRICS = (
    ("wall_time_per_bio_s", "s"),
    ("compile_time", "s"),
    ("firing_rate_e", "Hz"),
    ("firing_rate_i", "Hz"),
)


def case_name(n: int, duration_ms: float) -> str:
    """``"n=4000/T=1s"``."""
    return f"n={n}/T={duration_ms / 1000:g}s"


def network(n: int, key: PRNGKeyArray) -> networks.EINetwork:
    """The benchmark network of ``n`` neurons (`EINetwork.coba`, fixed in-degree `IN_DEGREE`)."""
    return networks.EINetwork.coba(key, n=n, in_degree=IN_DEGREE)


def parameters(net: networks.EINetwork) -> dict[str, float]:
    """The network's model parameters as plain numbers (mV, ms, nS, pF, pA), for the peers."""

    def number(value) -> float:
        return float(np.asarray(value))

    neuron = net.neuron
    return {
        "C": number(neuron.C),
        "g_L": number(neuron.g_L),
        "V_rest": number(neuron.V_rest),
        "V_th": number(neuron.V_th),
        "V_reset": number(neuron.V_reset),
        "t_ref": number(neuron.t_ref),
        "E_e": number(net.exc.E),
        "E_i": number(net.inh.E),
        "tau_e": number(net.exc.tau),
        "tau_i": number(net.inh.tau),
        "I_ext": number(net.I_ext),
        "w_e": number(net.W_E.data),
        "w_i": number(net.W_I.data),
        "dt": DT_MS,
    }


def export(net: networks.EINetwork, V0: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``net``'s synapses (global ``pre``/``post`` indices per projection), ``V0`` (mV) and ``n_e`` to
    an ``.npz`` file that ``sim_peers.py`` reads."""
    n_e = net.sizes[0]

    def edges(W, offset):
        indptr = np.asarray(W.indptr)
        pre = np.repeat(np.arange(W.shape[0], dtype=np.int32), np.diff(indptr)) + offset
        return pre.astype(np.int32), np.asarray(W.indices, np.int32)

    pre_e, post_e = edges(net.W_E, 0)
    pre_i, post_i = edges(net.W_I, n_e)
    path = Path(path)
    np.savez(path, pre_e=pre_e, post_e=post_e, pre_i=pre_i, post_i=post_i, V0=np.asarray(V0), n_e=n_e)
    return path


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One method's timings of one (n, duration) case: run times (s), compile time (s), rates per population
    (Hz; excitatory, inhibitory for COBA), the network's build time (s) where it is measured; for the
    microcircuit also the rates of every init/background seed (``seed_rates_hz[i]`` for ``seeds[i]``; the
    first is the timed run's) and the peak resident memory of a peer's process (bytes)."""

    method: str
    n: int
    duration_ms: float
    runs: tuple[float, ...]
    compile_s: float
    rates_hz: tuple[float, ...]
    versions: str = ""
    build_s: float | None = None
    seeds: tuple[int, ...] = ()
    seed_rates_hz: tuple[tuple[float, ...], ...] = ()
    peak_memory_bytes: float | None = None


def measure_diffbrain(
    net: networks.EINetwork | networks.Network,
    key: PRNGKeyArray,
    durations_ms: Sequence[float],
    repeats: int,
    simulate: Callable = networks.simulate,
    rates_from_ms: float = 0.0,
) -> list[Measurement]:
    """Time ``simulate(net, duration, key, dt=DT_MS)`` (`networks.simulate` of the COBA network, or
    `networks.simulate_network`) from ``net.init_state(key)`` for each duration, side by side; the rates
    count the spikes from ``rates_from_ms`` on."""
    results: dict[float, networks.EIResult | networks.NetworkResult] = {}

    def run(duration):
        def call():
            results[duration] = simulate(net, duration, key, dt=DT_MS)
            return results[duration].counts

        return call

    timings = measure_side_by_side({str(d): run(d) for d in durations_ms}, repeats, warmup=1)
    return [
        Measurement(
            METHOD,
            net.n,
            duration,
            timings[str(duration)].runs,
            timings[str(duration)].compile,
            _rates(results[duration].counts, results[duration].sizes, duration, rates_from_ms),
        )
        for duration in durations_ms
    ]


def _rates(counts, sizes, duration_ms: float, from_ms: float) -> tuple[float, ...]:
    """Hz per population from spike counts ``[steps, populations]``, over the steps from ``from_ms`` on."""
    if not 0 <= from_ms < duration_ms:
        raise ValueError(f"`rates_from_ms` must lie in [0, {duration_ms:g}) ms, got {from_ms!r}.")
    counts = np.asarray(counts)[round(from_ms / DT_MS) :]
    rates = counts.sum(axis=0) / np.asarray(sizes) / ((duration_ms - from_ms) / 1000.0)
    return tuple(float(rate) for rate in rates)


def measure_peer(
    simulator: str,
    network_file: Path,
    params: dict[str, float],
    durations_ms: Sequence[float],
    repeats: int,
    python: str,
    budget_s: float = BUDGET_S,
    timeout_s: float = PEER_TIMEOUT_S,
    model: str = "coba",
) -> list[Measurement] | str:
    """Run ``simulator`` on the exported network (``model`` ``"coba"``, `export`, or ``"microcircuit"``,
    `export_microcircuit`) in a subprocess of ``python``; measurements or why not."""
    n = int(np.load(network_file)["V0"].shape[-1])
    spec = dict(
        simulator=simulator,
        model=model,
        network=str(network_file),
        params=params,
        durations_ms=list(durations_ms),
        repeats=repeats,
        budget_s=budget_s,
    )
    out = run_peer_script(python, PEER_SCRIPT, spec, simulator, timeout_s)
    if isinstance(out, str):
        return out
    versions = ";".join(f"{name}={version}" for name, version in out["versions"].items())
    return [
        Measurement(
            simulator,
            n,
            float(run["duration_ms"]),
            tuple(run["run_s"]),
            float(run["compile_s"]),
            tuple(run["rates_hz"]),
            versions,
            run.get("build_s"),
            tuple(params.get("seeds", ())) if "seed_rates_hz" in run else (),
            tuple(tuple(rates) for rates in run.get("seed_rates_hz", ())),
            run.get("peak_rss_bytes"),
        )
        for run in out["runs"]
    ]


def records_of(
    measurement: Measurement,
    case: str | None = None,
    params: str | None = None,
    populations: Sequence[str] = ("e", "i"),
    rates_from_ms: float = 0.0,
) -> list[Record]:
    """The metric records of a measurement (see the module docstring): ``firing_rate_<population>`` per
    entry of ``populations`` (in the order of ``measurement.rates_hz``), ``build_time`` and ``peak_memory``
    (GiB) when they were measured (rates counted from ``rates_from_ms`` on). With several seeds
    (``measurement.seed_rates_hz``) a rate is the mean over the seeds, its ``min``/``max`` the seeds' range
    and its note lists every seed's. ``case`` and ``params`` default to the COBA network's."""
    bio_s = measurement.duration_ms / 1000.0
    per_bio = np.asarray(measurement.runs) / bio_s
    q1, median, q3 = np.percentile(per_bio, [25, 50, 75])
    if params is None:
        params = _params(measurement.n, measurement.duration_ms)
    fields = dict(repeats=len(measurement.runs), params=params)
    rate_note = "mean over the population in the timed run" + (
        f" from {rates_from_ms:g} ms on" if rates_from_ms else ""
    )
    if len(populations) != len(measurement.rates_hz):
        raise ValueError(
            f"`populations` names {len(populations)} rates, the measurement has {len(measurement.rates_hz)}."
        )
    per_seed = np.asarray(measurement.seed_rates_hz, np.float64).reshape(-1, len(populations))
    if len(per_seed) > 1:
        seeds = ", ".join(str(seed) for seed in measurement.seeds)
        rate_note = f"mean over the init/background seeds {seeds}; {rate_note}"
    else:
        per_seed = np.asarray([measurement.rates_hz], np.float64)
    names = {"e": "excitatory", "i": "inhibitory"}
    values = {
        "wall_time_per_bio_s": dict(
            value=median,
            min=per_bio.min(),
            max=per_bio.max(),
            iqr=q3 - q1,
            note="median wall time of the simulation loop per simulated second (compile excluded)",
        ),
        "compile_time": dict(value=measurement.compile_s, note=_COMPILE_NOTES.get(measurement.method, "")),
    }
    if measurement.build_s is not None:
        values["build_time"] = dict(value=measurement.build_s, note=_BUILD_NOTES.get(measurement.method, ""))
    if measurement.peak_memory_bytes is not None:
        values["peak_memory"] = dict(
            value=measurement.peak_memory_bytes / 2**30,
            note=f"peak resident memory of {measurement.method}'s process (ru_maxrss), its network built",
        )
    for name, rates in zip(populations, per_seed.T, strict=True):
        note = f"{names.get(name, name)}; {rate_note}"
        extra = {}
        if rates.size > 1:
            note += "; per seed " + ", ".join(f"{rate:.4g}" for rate in rates) + " Hz"
            extra = dict(min=rates.min(), max=rates.max())
        values[f"firing_rate_{name}"] = dict(value=rates.mean(), note=note, **extra)
    case = case or case_name(measurement.n, measurement.duration_ms)
    records = []
    for metric, fields_of_metric in values.items():
        record = make_record(
            SUITE,
            case,
            measurement.method,
            metric,
            unit=_UNITS.get(metric.split("_")[0], "Hz"),
            dtype=_DTYPES.get(measurement.method, "float32"),
            **fields,
            **fields_of_metric,
        )
        if measurement.versions:  # the peer's versions, as its own interpreter reported them
            record = dataclasses.replace(record, versions=f"{record.versions};{measurement.versions}")
        records.append(record)
    return records


_UNITS = {"wall": "s", "compile": "s", "build": "s", "peak": "GiB"}
_DTYPES = {"nest": "float64"}
"""Simulators that compute in another floating dtype than float32 (NEST has double precision only)."""
"""The unit of a metric by its first word (rates: Hz)."""

_COMPILE_NOTES = {
    METHOD: "JAX tracing, lowering and XLA compilation (jax.monitoring)",
    "brian2.runtime": "first run minus a timed run: code generation and Cython (a warm cache makes it ~0)",
    "brian2.cpp_standalone": "code generation and C++ build (device.build)",
    "brainpy": "first call minus a timed run (JAX compilation)",
    brainpy_peer.METHOD: "first call minus a timed run (JAX compilation)",
    "nest": "NEST compiles nothing",
}
_BUILD_NOTES = {
    METHOD: "Microcircuit.build: drawing the synapses and grouping them by delay (Network.build)",
    "nest": "Create, Connect (synapse by synapse from the exported file) and Prepare",
}


def _params(n: int, duration_ms: float) -> str:
    return format_params(
        dict(n=n, duration_ms=duration_ms, dt_ms=DT_MS, in_degree=IN_DEGREE, connectivity="fixed_in_degree")
    )


def run_size(
    n: int,
    durations_ms: Sequence[float],
    peers: Sequence[str],
    repeats: int = REPEATS,
    peer_python: str | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> list[Record]:
    """Every method on the ``n``-neuron network for each of ``durations_ms``; returns their records.

    diffbrain is timed before and after the peers (``repeats`` runs each time; its records pool both), so
    that a change in the machine's load while the peers run hits it as well."""
    python = peer_python or default_peer_python()
    key = jax.random.key(0)
    net = network(n, key)
    init_key = jax.random.key(1)
    progress(f"n={n}: diffbrain")
    ours = measure_diffbrain(net, init_key, durations_ms, repeats)
    records = []
    with tempfile.TemporaryDirectory(prefix="diffbrain-sim-net-") as folder:
        network_file = export(net, np.asarray(net.init_state(init_key).neurons.V), Path(folder) / "net.npz")
        for simulator in peers:
            progress(f"n={n}: {simulator}")
            found = measure_peer(simulator, network_file, parameters(net), durations_ms, repeats, python)
            if isinstance(found, str):
                records += [
                    skipped(
                        SUITE,
                        case_name(n, d),
                        simulator,
                        "wall_time_per_bio_s",
                        "s",
                        found,
                        params=_params(n, d),
                    )
                    for d in durations_ms
                ]
            else:
                records += [record for measurement in found for record in records_of(measurement)]
    if peers:
        progress(f"n={n}: diffbrain again")
        after = measure_diffbrain(net, init_key, durations_ms, repeats)
        ours = [dataclasses.replace(m, runs=m.runs + a.runs) for m, a in zip(ours, after, strict=True)]
    return diffbrain_records([record for measurement in ours for record in records_of(measurement)]) + records


def diffbrain_records(records: list[Record]) -> list[Record]:
    """diffbrain's ``records``, or the same records skipped with the reason where the automatic ops backend
    is not the compiled kernel they stand for (`diffbrain.bench.ops.automatic_fallback`)."""
    fallback = automatic_fallback()
    return records if fallback is None else as_skipped(records, fallback)


# --- the Potjans–Diesmann microcircuit against NEST -------------------------------------------------------


def microcircuit_case(scale: float, k_scale: float, duration_ms: float) -> str:
    """``"microcircuit/scale=0.1/T=0.5s"`` (``/k_scale=0.25`` after the scale below 1)."""
    k = f"/k_scale={k_scale:g}" if k_scale != 1.0 else ""
    return f"microcircuit/scale={scale:g}{k}/T={duration_ms / 1000:g}s"


def microcircuit_parameters(mc: networks.Microcircuit, seeds: Sequence[int] = SEEDS) -> dict[str, float]:
    """The neuron and synapse parameters of ``mc`` for NEST's ``iaf_psc_exp`` (mV, ms, pF), with ``dt`` and
    the init/background ``seeds`` (NEST's ``rng_seed`` of each run)."""
    neuron = mc.neuron

    def number(value) -> float:
        return float(np.asarray(value))

    return {
        "C_m": number(neuron.C),
        "tau_m": number(neuron.C / neuron.g_L),
        "tau_syn": mc.tau_syn,
        "E_L": number(neuron.V_rest),
        "V_th": number(neuron.V_th),
        "V_reset": number(neuron.V_reset),
        "t_ref": number(neuron.t_ref),
        "dt": DT_MS,
        "seeds": [int(seed) for seed in seeds],
        "rates_from_ms": RATES_FROM_MS,
        "latency_shift_steps": LATENCY_SHIFT_STEPS,
    }


def export_microcircuit(
    mc: networks.Microcircuit, key: PRNGKeyArray, V0: Float[ArrayLike, "*seeds n"], path: str | os.PathLike
) -> Path:
    """Write the synapses that ``mc.build(key, DT_MS)`` simulates, for an exactly integrating peer, to an
    ``.npz`` file that ``sim_peers.py`` reads.

    Per receptor ``r`` (``exc``, ``inh``), one entry per synapse (multapses repeated): ``pre_r``, ``post_r``
    (global indices), ``weight_r`` (pA: the PSC amplitude, i.e. diffbrain's step-averaged weight divided by
    `Microcircuit.step_factor`; negative for ``inh``), ``delay_r`` (spike-ring lags in steps: the latency
    ``round(D/dt)`` + 1, as `Network.build` makes them). Per population: ``offsets`` ``[9]``, ``I_e``
    (pA), ``bg_rate`` (Hz of Poisson input per neuron, 0 with ``background="dc"``); ``bg_weight`` (pA per
    background spike); ``V0`` (mV per neuron, ``[n]``, or ``[seeds, n]`` for several init seeds).

    The receptors are drawn, converted and written one at a time (`Microcircuit.draw_edges`), so the
    memory peaks at one receptor's edges (16 bytes per synapse) and no copy of them."""
    factor = np.float32(mc.step_factor(DT_MS))
    bg_rate = mc.k_ext * mc.bg_rate if mc.background == "poisson" else np.zeros(8)

    def arrays():
        for receptor, edges in mc.draw_edges(key, DT_MS):
            np.divide(edges.weight, factor, out=edges.weight)  # in place: no copy
            lag = np.empty(edges.delay.size, np.int32)  # spike-ring lags, as Network.build: float64 rint
            for start in range(0, lag.size, 1 << 22):
                part = slice(start, start + (1 << 22))
                lag[part] = np.rint(edges.delay[part].astype(np.float64) / DT_MS) + 1.0
            yield from ((f"pre_{receptor}", edges.pre), (f"post_{receptor}", edges.post))
            yield from ((f"weight_{receptor}", edges.weight), (f"delay_{receptor}", lag))
            del edges, lag
        yield from (("V0", np.asarray(V0, np.float64)), ("offsets", mc.offsets))
        yield from (("I_e", np.asarray(mc.I_dc, np.float64)), ("bg_rate", np.asarray(bg_rate, np.float64)))
        yield "bg_weight", np.asarray(mc.weight_ext)

    return _write_npz(path, arrays())


def _write_npz(path: str | os.PathLike, arrays: Iterable[tuple[str, np.ndarray]]) -> Path:
    """``numpy.savez`` from ``(name, array)`` pairs written as they come (no pair kept after it is written);
    `numpy.load` reads the file."""
    path = Path(path)
    with zipfile.ZipFile(path, "w", allowZip64=True) as archive:
        for name, array in arrays:
            with archive.open(f"{name}.npy", "w", force_zip64=True) as file:
                np.lib.format.write_array(file, np.asanyarray(array), allow_pickle=False)
    return path


def _proc_kib(path: str, field: str) -> int | None:
    """The value of ``field`` (e.g. ``"MemAvailable:"``) in the /proc file ``path``, bytes; None where
    /proc is absent."""
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_memory() -> int:
    """Bytes of memory available to a new process (``MemAvailable`` of /proc/meminfo; elsewhere the free
    physical pages)."""
    found = _proc_kib("/proc/meminfo", "MemAvailable:")
    return found if found is not None else os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def microcircuit_memory(synapses: int, peers: Sequence[str]) -> dict[str, int]:
    """Bytes that a microcircuit case of ``synapses`` synapses needs at its peak, per method: diffbrain's
    process (`DIFFBRAIN_BYTES_PER_SYNAPSE`) and each peer's (`PEER_BYTES_PER_SYNAPSE`; an unmeasured peer
    is counted as NEST)."""
    per_synapse = {METHOD: DIFFBRAIN_BYTES_PER_SYNAPSE}
    per_synapse |= {peer: PEER_BYTES_PER_SYNAPSE.get(peer, PEER_BYTES_PER_SYNAPSE["nest"]) for peer in peers}
    return {method: int(synapses * size) for method, size in per_synapse.items()}


@dataclasses.dataclass(frozen=True)
class RateComparison:
    """Per population, two simulators' rates over the same init/background seeds (`compare_rates`).

    Attributes:
        ours, theirs: the seed means, Hz ``[P]``.
        standard_error: of ``theirs − ours``, Hz ``[P]`` (0 with one seed).
        allowed: the largest ``|theirs − ours|`` that agrees, Hz ``[P]``.
        seeds: how many seeds.
    """

    ours: np.ndarray
    theirs: np.ndarray
    standard_error: np.ndarray
    allowed: np.ndarray
    seeds: int

    @property
    def agree(self) -> np.ndarray:
        """``[P]`` bool: ``|theirs − ours| ≤ allowed``."""
        return np.abs(self.theirs - self.ours) <= self.allowed

    @property
    def deviation(self) -> float:
        """`rate_deviation` of the seed means."""
        return rate_deviation(self.ours, self.theirs)

    def describe(self, names: Sequence[str]) -> str:
        """``"L23e 2.11±0.40/1.81±0.20 Hz"`` per population (seed mean ± its standard error), the ones that
        disagree marked."""
        parts = []
        for name, a, b, se, ok in zip(
            names, self.ours, self.theirs, self.standard_error, self.agree, strict=True
        ):
            spread = f"±{se:.2f}" if self.seeds > 1 else ""
            parts.append(f"{name} {b:.2f}/{a:.2f}{spread} Hz" + ("" if ok else " (DISAGREE)"))
        return ", ".join(parts)


def compare_rates(ours: Float[ArrayLike, "*seeds P"], theirs: Float[ArrayLike, "*seeds P"]) -> RateComparison:
    """Compare population rates (Hz) of two simulators run with the same seeds: ``[P]`` (one seed) or
    ``[seeds, P]``.

    A population agrees when the seed means differ by at most ``RATE_TOLERANCE × ours + RATE_FLOOR_HZ``
    (the integration schemes differ) plus ``t × SE``: ``SE = √((s²_ours + s²_theirs)/S)`` is the standard
    error of the difference of the means of ``S`` seeds (``s²`` the across-seed variances) and ``t`` the
    `RATE_CONFIDENCE` two-sided quantile of Student's t with ``2(S − 1)`` degrees of freedom, so that seed
    noise alone is not called a disagreement (at scale 0.1 one seed's rates vary by up to ±40 % with its
    initial potentials and Poisson draws). With one seed it is the tolerance alone."""
    ours, theirs = np.atleast_2d(np.asarray(ours, np.float64)), np.atleast_2d(np.asarray(theirs, np.float64))
    if ours.shape != theirs.shape or ours.ndim != 2:
        raise ValueError(
            f"`ours` and `theirs` must both be [P] or [seeds, P] rates, got shapes {ours.shape} and "
            f"{theirs.shape}."
        )
    seeds = ours.shape[0]
    standard_error, quantile = np.zeros(ours.shape[1]), 0.0
    if seeds > 1:
        variance = ours.var(axis=0, ddof=1) + theirs.var(axis=0, ddof=1)
        standard_error = np.sqrt(variance / seeds)
        quantile = float(scipy.stats.t.ppf(0.5 + RATE_CONFIDENCE / 2, 2 * (seeds - 1)))
    mean_ours, mean_theirs = ours.mean(axis=0), theirs.mean(axis=0)
    allowed = RATE_TOLERANCE * mean_ours + RATE_FLOOR_HZ + quantile * standard_error
    return RateComparison(mean_ours, mean_theirs, standard_error, allowed, seeds)


def rate_deviation(ours: Float[ArrayLike, "*seeds P"], theirs: Float[ArrayLike, "*seeds P"]) -> float:
    """``max_p |theirs_p / ours_p − 1|`` over the populations, of the seed means when given ``[seeds, P]``
    (inf when one of ours is 0 and theirs not)."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.ndim == 2:
        ours, theirs = ours.mean(axis=0), theirs.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ours == theirs, 1.0, theirs / ours)
    return float(np.max(np.abs(ratio - 1.0)))


def rates_agree(ours: Float[ArrayLike, "*seeds P"], theirs: Float[ArrayLike, "*seeds P"]) -> bool:
    """Every population agrees (`compare_rates`); with one seed ``|theirs − ours| ≤ RATE_TOLERANCE · ours +
    RATE_FLOOR_HZ`` (Hz)."""
    return bool(np.all(compare_rates(ours, theirs).agree))


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    values = tuple(seeds) if isinstance(seeds, Sequence) else ()
    if not values or any(
        isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0 for seed in values
    ):
        raise ValueError(f"`seeds` must be a non-empty sequence of non-negative integers, got {seeds!r}.")
    if len(set(values)) != len(values):
        raise ValueError(f"`seeds` must be distinct, got {seeds!r}.")
    return tuple(int(seed) for seed in values)


def _measure_microcircuit(
    net: networks.Network, seeds: tuple[int, ...], duration_ms: float, repeats: int
) -> Measurement:
    """diffbrain's timed runs with the first seed's key, then one run per other seed; rates of each."""
    simulate = networks.simulate_network
    (timed,) = measure_diffbrain(
        net, jax.random.key(seeds[0]), (duration_ms,), repeats, simulate, RATES_FROM_MS
    )
    rates = [timed.rates_hz]
    for seed in seeds[1:]:
        result = simulate(net, duration_ms, jax.random.key(seed), dt=DT_MS)
        rates.append(_rates(result.counts, result.sizes, duration_ms, RATES_FROM_MS))
    return dataclasses.replace(timed, seeds=seeds, seed_rates_hz=tuple(rates))


def reference_record(
    case: str, method: str, params: str, mc: networks.Microcircuit, seed_rates: Sequence[Sequence[float]]
) -> Record:
    """``reference_deviation``: `rate_deviation` of ``method``'s seed-mean rates from the full-scale rates
    of Potjans & Diesmann (2014) (``mc.reference_rates``: the data file's ``full_mean_rates_Hz_reference``,
    from NEST's PD14 example, which agree with PD14 Fig. 6), each population's rate/reference in its note."""
    rates = np.mean(np.asarray(seed_rates, np.float64).reshape(-1, len(mc.names)), axis=0)
    pairs = zip(mc.names, rates, mc.reference_rates, strict=True)
    ratios = ", ".join(f"{name} {rate:.2f}/{ref:.2f} Hz" for name, rate, ref in pairs)
    note = (
        f"max |rate/PD14's full-scale rate − 1| (reference: the data file's full_mean_rates_Hz_reference, "
        f"NEST's PD14 example, as PD14 Fig. 6); per population rate/reference: {ratios}"
    )
    value = rate_deviation(mc.reference_rates, rates)
    return make_record(SUITE, case, method, "reference_deviation", value, "", params=params, note=note)


def _release_memory() -> None:
    """Collect garbage and hand the heap's free pages back to the system (glibc's ``malloc_trim``; nothing
    more elsewhere). Measured after freeing the microcircuit at scale 0.1: 0.68 GiB resident before the
    trim, 0.41 after (0.28 at start); at full scale ~4 GiB stayed resident without it."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc
        pass


def _rss() -> int:
    """This process's resident memory, bytes (0 where /proc is absent)."""
    return _proc_kib("/proc/self/status", "VmRSS:") or 0


def run_microcircuit(
    scale: float,
    k_scale: float,
    duration_ms: float,
    peers: Sequence[str],
    repeats: int = REPEATS,
    peer_python: str | None = None,
    data: str | os.PathLike | None = None,
    progress: Callable[[str], None] = lambda line: None,
    seeds: Sequence[int] = SEEDS,
) -> list[Record]:
    """diffbrain's `Microcircuit` at ``scale``/``k_scale`` for ``duration_ms`` against ``peers`` (NEST),
    from the same synapses, initial potentials, DC and Poisson background rates; returns their records.

    One network (drawn with ``network_key`` 0) is simulated with each of the init/background ``seeds`` by
    every method (initial potentials and Poisson input; NEST's ``rng_seed``): the first seed is timed, the
    others run once, and the rates are the seed means (`records_of`). The network is shared because the
    comparison is of the simulators on the very same synapses, and rebuilding it per seed would multiply
    the build (and NEST's connection) time; the spread across seeds is measured on it.

    ``data`` is the ``conn-potjans-diesmann2014`` folder (default `microcircuit_folder`'s). Every
    method gets ``skipped`` records when the data are missing or diffbrain's peak does not fit in
    `available_memory` (`microcircuit_memory`). When diffbrain's and the peers' peaks fit together, diffbrain
    is timed before and after the peers, as in `run_size`; otherwise diffbrain's network is freed before
    the peers start (never both in memory), and a peer whose own peak does not fit is skipped with the
    reason. Each peer also gets a ``rate_deviation`` record (of the seed means, `rate_deviation`; its note
    gives the verdict of `compare_rates`) and ``peak_memory`` (GiB); every method a ``reference_deviation``
    (`reference_record`: from PD14's full-scale rates)."""
    _check_microcircuit_duration(duration_ms)
    seeds = _check_seeds(seeds)
    case = microcircuit_case(scale, k_scale, duration_ms)
    settings = dict(scale=scale, k_scale=k_scale, duration_ms=duration_ms, dt_ms=DT_MS, background="poisson")
    params = format_params(settings | dict(network_key=0, seeds=",".join(map(str, seeds))))

    def skip(method: str, reason: str) -> Record:
        return skipped(SUITE, case, method, "wall_time_per_bio_s", "s", reason, params=params)

    data = microcircuit_folder(data)
    if not data.exists():
        reason = (
            f"the {MICROCIRCUIT_DATA} data folder is missing ({data}; pass `data` or set $DIFFBRAIN_DATA)"
        )
        return [skip(method, reason) for method in (METHOD, *peers)]
    mc = networks.Microcircuit.from_data(data, scale=scale, k_scale=k_scale)
    synapses = int(mc.synapses.sum())
    needed, available = microcircuit_memory(synapses, peers), available_memory()

    def short(method: str, available: int) -> str:
        return (
            f"needs ~{needed[method] / 2**30:.1f} GiB ({synapses:.3g} synapses × "
            f"{needed[method] / synapses:.0f} bytes, the measured peak of {method}'s process), "
            f"{available / 2**30:.1f} GiB available"
        )

    if needed[METHOD] > available:
        return [skip(method, short(method, available)) for method in (METHOD, *peers)]
    together = sum(needed.values()) <= available
    progress(f"{case}: diffbrain")
    key = jax.random.key(0)
    start = time.perf_counter()
    net = jax.block_until_ready(mc.build(key, DT_MS))
    build_s = time.perf_counter() - start
    ours = _measure_microcircuit(net, seeds, duration_ms, repeats)
    # `Network.simulate(T, key)` draws its initial potentials with split(key)[0]
    V0 = np.stack([net.init_state(jax.random.split(jax.random.key(s))[0]).neurons.V for s in seeds])
    freed = ""
    if peers and not together:
        del net
        _release_memory()
        freed = (
            f"; diffbrain's network freed before it started (its process then at {_rss() / 2**30:.1f} GiB)"
        )
    records = []
    with tempfile.TemporaryDirectory(prefix="diffbrain-sim-mc-") as folder:
        network_file = Path(folder) / "microcircuit.npz"
        if peers:
            export_microcircuit(mc, key, V0, network_file)
        for simulator in peers:
            if not together and needed[simulator] > available_memory():
                records.append(skip(simulator, short(simulator, available_memory())))
                continue
            progress(f"{case}: {simulator}")
            found = measure_peer(
                simulator,
                network_file,
                microcircuit_parameters(mc, seeds),
                (duration_ms,),
                repeats,
                peer_python or default_peer_python(),
                model="microcircuit",
            )
            if isinstance(found, str):
                records.append(skip(simulator, found))
                continue
            (theirs,) = found
            records += records_of(theirs, case, params, mc.names, RATES_FROM_MS)
            records.append(reference_record(case, simulator, params, mc, theirs.seed_rates_hz))
            comparison = compare_rates(ours.seed_rates_hz, theirs.seed_rates_hz)
            verdict = "agree" if np.all(comparison.agree) else "DO NOT agree"
            allowance = f" + t({RATE_CONFIDENCE:g}) × the standard error of the difference" * (len(seeds) > 1)
            note = (
                f"max |seed-mean rate/diffbrain's − 1| over {len(seeds)} seed(s); the rates {verdict} within "
                f"{RATE_TOLERANCE:g} × diffbrain's + {RATE_FLOOR_HZ:g} Hz{allowance} (`compare_rates`); "
                f"{simulator}/diffbrain per population: {comparison.describe(mc.names)}{freed}"
            )
            records.append(
                make_record(
                    SUITE,
                    case,
                    simulator,
                    "rate_deviation",
                    comparison.deviation,
                    "",
                    params=params,
                    note=note,
                )
            )
    if peers and together:
        progress(f"{case}: diffbrain again")
        (after,) = measure_diffbrain(
            net, jax.random.key(seeds[0]), (duration_ms,), repeats, networks.simulate_network, RATES_FROM_MS
        )
        ours = dataclasses.replace(ours, runs=ours.runs + after.runs)
    ours = dataclasses.replace(ours, build_s=build_s)
    reference = reference_record(case, METHOD, params, mc, ours.seed_rates_hz)
    return [
        *diffbrain_records([*records_of(ours, case, params, mc.names, RATES_FROM_MS), reference]),
        *records,
    ]


def microcircuit_folder(data: str | os.PathLike | None = None) -> Path:
    """``data``, else the `MICROCIRCUIT_DATA` folder of the shared data sets (`diffbrain._data.shared_data`:
    ``$DIFFBRAIN_DATA`` when set, else ``../shared/data`` beside the checkout), looked up when called."""
    return Path(data) if data is not None else shared_data() / MICROCIRCUIT_DATA


def _check_microcircuit_duration(duration_ms: float) -> None:
    if not duration_ms > RATES_FROM_MS:
        raise ValueError(
            f"`duration_ms` must exceed RATES_FROM_MS = {RATES_FROM_MS:g} ms (the start transient that the "
            f"rates leave out), got {duration_ms!r}."
        )


def run(
    quick: bool = False,
    full: bool = False,
    repeats: int | None = None,
    progress: Callable[[str], None] = lambda line: None,
    peer_python: str | None = None,
    on_case: Callable[[list[Record]], object] = lambda records: None,
    **grid,
) -> list[Record]:
    """The sim suite: COBA at `N` for each duration against every peer, then the scaling sizes, then the
    microcircuit against NEST (`run_microcircuit`).

    Args:
        quick: the `QUICK` grid (short runs, two peers, diffbrain only beyond 4,000 neurons, a small
            microcircuit).
        full: the scaling curve up to 400,000 neurons (`FULL_SCALING`) and the full-scale microcircuit
            (`FULL_MICROCIRCUIT`; skipped records when it does not fit in memory).
        repeats: timed runs per case (default `REPEATS`, quick 2).
        progress: called with a line before each simulator runs.
        peer_python: the interpreter that has the peers (default ``$DIFFBRAIN_PEER_PYTHON``, else this one).
        on_case: gets each case's records as soon as they are measured (the command line saves them, so a
            run stopped midway keeps its finished cases).
        grid: overrides of ``durations_ms``, ``scaling``, ``peers``, ``scaling_peers``, ``microcircuit``
            ((scale, k_scale, duration ms) cases), ``microcircuit_peers``, ``data`` (the
            ``conn-potjans-diesmann2014`` folder, default `microcircuit_folder`'s).

    Returns:
        All records (skipped ones say why).

    Raises:
        ValueError: ``quick`` and ``full`` both, an unknown ``grid`` setting, or a microcircuit duration not
            beyond `RATES_FROM_MS`.
    """
    if quick and full:
        raise ValueError(
            "`quick` and `full` contradict each other (the smallest grid, the largest); pass one."
        )
    settings = dict(
        durations_ms=DURATIONS_MS,
        scaling=FULL_SCALING if full else SCALING,
        peers=PEERS,
        scaling_peers=SCALING_PEERS,
        repeats=REPEATS,
        microcircuit=FULL_MICROCIRCUIT if full else MICROCIRCUIT,
        microcircuit_peers=MICROCIRCUIT_PEERS,
        data=None,
    )
    settings |= QUICK if quick else {}
    settings |= {key: value for key, value in grid.items() if value is not None}
    if repeats is not None:
        settings["repeats"] = repeats
    known = {
        "durations_ms",
        "scaling",
        "peers",
        "scaling_peers",
        "repeats",
        "microcircuit",
        "microcircuit_peers",
        "data",
    }
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"unknown sim grid settings {sorted(unknown)}.")
    for _, _, duration in settings["microcircuit"]:  # before hours of other cases
        _check_microcircuit_duration(duration)
    common = dict(repeats=settings["repeats"], peer_python=peer_python, progress=progress)
    records = []

    def keep(measured: list[Record]) -> None:
        on_case(measured)
        records.extend(measured)

    keep(run_size(N, settings["durations_ms"], settings["peers"], **common))
    for n, duration in settings["scaling"].items():
        keep(run_size(n, (duration,), settings["scaling_peers"], **common))
    for scale, k_scale, duration in settings["microcircuit"]:
        keep(
            run_microcircuit(
                scale, k_scale, duration, settings["microcircuit_peers"], data=settings["data"], **common
            )
        )
    return records


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per case and method: wall s per biological second, compile s, COBA's rates (Hz), the microcircuit's
    build s, rate deviation from diffbrain's and from PD14's rates and peak GiB (when the frame has them),
    and the time over diffbrain's (×; > 1: diffbrain faster; NaN where diffbrain was skipped)."""
    ok = frame[frame.status == "ok"]
    table = ok.pivot_table(index=["case", "method"], columns="metric", values="value", aggfunc="last")
    extra = [(metric, label) for metric, label in _SUMMARY_EXTRA if metric in table.columns]
    table = table.reindex(columns=[metric for metric, _ in METRICS] + [metric for metric, _ in extra])
    wall = table["wall_time_per_bio_s"]
    ours = wall[wall.index.get_level_values("method") == METHOD].droplevel("method")
    ours = ours.reindex(wall.index.get_level_values("case")).to_numpy()
    table["time over diffbrain's"] = wall.to_numpy() / ours
    labels = ["wall s/bio-s", "compile s", "E Hz", "I Hz", *(label for _, label in extra)]
    table.columns = [*labels, "time over diffbrain's"]
    return table


_SUMMARY_EXTRA = (
    ("build_time", "build s"),
    ("rate_deviation", "rate deviation"),
    ("reference_deviation", "vs PD14"),
    ("peak_memory", "peak GiB"),
)
