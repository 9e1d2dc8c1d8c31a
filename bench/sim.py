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
(``iaf_cond_exp``, one thread). The peers run in a subprocess of another Python (``peer_python``, default
``$DIFFBRAIN_PEER_PYTHON`` else this interpreter) through ``sim_peers.py``; a peer missing there, failing
or timing out gives ``status="skipped"`` records with the reason, never a number.

Cases: ``n=4000/T=1s`` and ``n=4000/T=5s`` (`DURATIONS_MS`), then the scaling curve at n = 40,000
(`SCALING`) and, with ``full``, 400,000 (`FULL_SCALING`) — fixed in-degree 80, so every neuron sees the same
input statistics; shorter biological times there, against `SCALING_PEERS`. Metrics per case and method:
``wall_time_per_bio_s`` (median timed run / simulated seconds, s per biological second, compile excluded),
``compile_time`` (s: JAX's tracing and compilation, Cython's or the C++ build), ``firing_rate_e`` and
``firing_rate_i`` (Hz, over the timed run).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from jaxtyping import PRNGKeyArray

from diffbrain.zoo import networks

from . import brainpy_peer
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
}
"""A grid for smoke tests: 33 s on the loaded 2-core machine with Brian2's Cython cache warm (+~50 s cold)."""
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
    """One method's timings of one (n, duration) case: run times (s), compile time (s), rates (Hz)."""

    method: str
    n: int
    duration_ms: float
    runs: tuple[float, ...]
    compile_s: float
    rates_hz: tuple[float, float]
    versions: str = ""


def measure_diffbrain(
    net: networks.EINetwork, key: PRNGKeyArray, durations_ms: Sequence[float], repeats: int
) -> list[Measurement]:
    """Time `networks.simulate` of ``net`` from ``net.init_state(key)`` for each duration, side by side."""
    results: dict[float, networks.EIResult] = {}

    def run(duration):
        def call():
            results[duration] = networks.simulate(net, duration, key, dt=DT_MS)
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
            tuple(float(rate) for rate in results[duration].rates()),
        )
        for duration in durations_ms
    ]


def measure_peer(
    simulator: str,
    network_file: Path,
    params: dict[str, float],
    durations_ms: Sequence[float],
    repeats: int,
    python: str,
    budget_s: float = BUDGET_S,
    timeout_s: float = PEER_TIMEOUT_S,
) -> list[Measurement] | str:
    """Run ``simulator`` on the exported network in a subprocess of ``python``; measurements or why not."""
    n = int(np.load(network_file)["V0"].size)
    with tempfile.TemporaryDirectory(prefix="diffbrain-sim-") as workdir:
        spec_path, out_path = Path(workdir) / "spec.json", Path(workdir) / "out.json"
        spec = dict(
            simulator=simulator,
            network=str(network_file),
            params=params,
            durations_ms=list(durations_ms),
            repeats=repeats,
            budget_s=budget_s,
            workdir=workdir,
        )
        spec_path.write_text(json.dumps(spec))
        try:
            done = subprocess.run(
                [python, str(PEER_SCRIPT), str(spec_path), str(out_path)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except OSError as error:
            return (
                f"cannot start the peer interpreter {python!r}: {error.strerror} (set DIFFBRAIN_PEER_PYTHON)"
            )
        except subprocess.TimeoutExpired:
            return f"{simulator} did not finish within {timeout_s:g} s"
        if not out_path.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return f"{simulator} exited with status {done.returncode}: {' | '.join(tail)[:300]}"
        out = json.loads(out_path.read_text())
    if out["status"] != "ok":
        return out["reason"]
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
        )
        for run in out["runs"]
    ]


def records_of(measurement: Measurement) -> list[Record]:
    """The four metric records of a measurement (see the module docstring)."""
    bio_s = measurement.duration_ms / 1000.0
    per_bio = np.asarray(measurement.runs) / bio_s
    q1, median, q3 = np.percentile(per_bio, [25, 50, 75])
    fields = dict(repeats=len(measurement.runs), params=_params(measurement.n, measurement.duration_ms))
    rate_note = "mean over the population in the timed run"
    values = {
        "wall_time_per_bio_s": dict(
            value=median,
            min=per_bio.min(),
            max=per_bio.max(),
            iqr=q3 - q1,
            note="median wall time of the simulation loop per simulated second (compile excluded)",
        ),
        "compile_time": dict(value=measurement.compile_s, note=_COMPILE_NOTES.get(measurement.method, "")),
        "firing_rate_e": dict(value=measurement.rates_hz[0], note=f"excitatory; {rate_note}"),
        "firing_rate_i": dict(value=measurement.rates_hz[1], note=f"inhibitory; {rate_note}"),
    }
    case = case_name(measurement.n, measurement.duration_ms)
    records = []
    for metric, unit in METRICS:
        record = make_record(SUITE, case, measurement.method, metric, unit=unit, **fields, **values[metric])
        if measurement.versions:  # the peer's versions, as its own interpreter reported them
            record = dataclasses.replace(record, versions=f"{record.versions};{measurement.versions}")
        records.append(record)
    return records


_COMPILE_NOTES = {
    METHOD: "JAX tracing, lowering and XLA compilation (jax.monitoring)",
    "brian2.runtime": "first run minus a timed run: code generation and Cython (a warm cache makes it ~0)",
    "brian2.cpp_standalone": "code generation and C++ build (device.build)",
    "brainpy": "first call minus a timed run (JAX compilation)",
    brainpy_peer.METHOD: "first call minus a timed run (JAX compilation)",
    "nest": "NEST compiles nothing",
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
    python = peer_python or os.environ.get("DIFFBRAIN_PEER_PYTHON") or sys.executable
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
    return [record for measurement in ours for record in records_of(measurement)] + records


def run(
    quick: bool = False,
    full: bool = False,
    repeats: int | None = None,
    progress: Callable[[str], None] = lambda line: None,
    peer_python: str | None = None,
    **grid,
) -> list[Record]:
    """The sim suite: COBA at `N` for each duration against every peer, then the scaling sizes.

    Args:
        quick: the `QUICK` grid (short runs, two peers, diffbrain only beyond 4,000 neurons).
        full: the scaling curve up to 400,000 neurons (`FULL_SCALING`).
        repeats: timed runs per case (default `REPEATS`, quick 2).
        progress: called with a line before each simulator runs.
        peer_python: the interpreter that has the peers (default ``$DIFFBRAIN_PEER_PYTHON``, else this one).
        grid: overrides of ``durations_ms``, ``scaling``, ``peers``, ``scaling_peers``.

    Returns:
        All records (skipped ones say why).
    """
    settings = dict(
        durations_ms=DURATIONS_MS,
        scaling=FULL_SCALING if full else SCALING,
        peers=PEERS,
        scaling_peers=SCALING_PEERS,
        repeats=REPEATS,
    )
    settings |= QUICK if quick else {}
    settings |= {key: value for key, value in grid.items() if value is not None}
    if repeats is not None:
        settings["repeats"] = repeats
    unknown = set(settings) - {"durations_ms", "scaling", "peers", "scaling_peers", "repeats"}
    if unknown:
        raise ValueError(f"unknown sim grid settings {sorted(unknown)}.")
    common = dict(repeats=settings["repeats"], peer_python=peer_python, progress=progress)
    records = run_size(N, settings["durations_ms"], settings["peers"], **common)
    for n, duration in settings["scaling"].items():
        records += run_size(n, (duration,), settings["scaling_peers"], **common)
    return records


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per case and method: wall s per biological second, compile s, rates (Hz), and the time over
    diffbrain's (×; > 1: diffbrain faster)."""
    ok = frame[frame.status == "ok"]
    table = ok.pivot_table(index=["case", "method"], columns="metric", values="value", aggfunc="last")
    table = table.reindex(columns=[metric for metric, _ in METRICS])
    wall = table["wall_time_per_bio_s"]
    ours = wall.xs(METHOD, level="method").reindex(wall.index.get_level_values("case")).to_numpy()
    table["time over diffbrain's"] = wall.to_numpy() / ours
    table.columns = ["wall s/bio-s", "compile s", "E Hz", "I Hz", "time over diffbrain's"]
    return table
