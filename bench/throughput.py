"""Suite "throughput": neuron updates per second of a population stepped for a fixed number of steps.

For each zoo model (LIF, GIF, HH by default) and population size N, the population is driven by the
registry's spiking current for ``steps`` steps, in float32, and timed side by side with the same
population in brainpy.state when brainpy is importable. Methods:

* ``diffbrain``: `diffbrain.zoo.simulate` under `jax.jit`, returning spike counts only
  (``record=()``, ``record_every=steps``);
* ``diffbrain.step``: a bare `lax.scan` over ``model.step`` that accumulates spike counts — the model's
  own cost, so the gap to ``diffbrain`` is what `simulate` adds;
* ``brainpy.state``: the counterpart model in a jitted `brainstate.transform.for_loop` that accumulates
  spike counts (see `diffbrain.bench.brainpy_peer`).

Metrics per method: ``throughput`` (N·steps / median run time, updates/s), ``run_time`` and
``compile_time`` (s), ``firing_rate`` (Hz, mean over the population: both libraries must spike), and for
each diffbrain method ``speedup_vs_brainpy`` (its throughput over brainpy.state's, ×). Models missing
from the registry and unavailable peers give ``status="skipped"`` records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from diffbrain import zoo
from diffbrain.zoo.registry import NEURONS

from . import brainpy_peer
from .records import Record, format_params, make_record, skipped
from .timing import Timing, measure_side_by_side

SUITE = "throughput"
MODELS = ("lif", "gif", "hh")
SIZES = (1_000, 10_000, 100_000)
STEPS = 1_000
DT_MS = {"lif": 0.1, "gif": 0.1, "hh": 0.01}
"""Time step per model, ms; HH needs a finer step than the integrate-and-fire models."""
QUICK = {"sizes": (1_000,), "steps": 200, "repeats": 3}
"""A grid that runs in seconds, for smoke tests and ``--quick``."""
DTYPE = jnp.float32
SIMULATE, STEP_LOOP = "diffbrain", "diffbrain.step"
DIFFBRAIN_METHODS = (SIMULATE, STEP_LOOP)


def simulate_run(
    model: zoo.AbstractNeuron, current: float, n: int, steps: int, dt: float
) -> Callable[[], Float[Array, " n"]]:
    """`zoo.simulate` of ``n`` copies of ``model`` under ``current`` for ``steps`` steps of ``dt`` ms, jitted.

    Returns:
        A zero-argument function returning the spike count per neuron, shape ``[n]``.
    """
    inputs = jnp.full((steps,), current, DTYPE)

    # The model is closed over, so its parameters are compile-time constants, as in brainpy.state.
    @jax.jit
    def run(inputs):
        trace = zoo.simulate(model, inputs, dt, shape=(n,), record=(), record_every=steps)
        return trace.spikes[0]

    return lambda: run(inputs)


def step_loop_run(
    model: zoo.AbstractNeuron, current: float, n: int, steps: int, dt: float
) -> Callable[[], Float[Array, " n"]]:
    """A jitted `lax.scan` over ``model.step`` for ``n`` neurons that only accumulates spike counts.

    Returns:
        A zero-argument function returning the spike count per neuron, shape ``[n]``.
    """
    inputs = jnp.full((steps,), current, DTYPE)

    def body(carry, current):
        state, count = carry
        state, spike = model.step(state, current, dt)
        return (state, count + spike), None

    @jax.jit
    def run(inputs):
        start = (model.init_state((n,)), jnp.zeros(n, DTYPE))
        (_, count), _ = jax.lax.scan(body, start, inputs)
        return count

    return lambda: run(inputs)


def _runs(
    name: str, n: int, steps: int, dt: float, peer_missing: str | None
) -> dict[str, Callable[[], Array]]:
    entry = NEURONS[name]
    model = zoo.astype(entry.make(), DTYPE)
    runs = {
        SIMULATE: simulate_run(model, entry.current, n, steps, dt),
        STEP_LOOP: step_loop_run(model, entry.current, n, steps, dt),
    }
    if peer_missing is None:
        runs[brainpy_peer.METHOD] = brainpy_peer.population_run(name, model, entry.current, n, steps, dt)
    return runs


def _method_records(
    case: str, method: str, timing: Timing, spike_count: Array, n: int, steps: int, dt: float, **fields
) -> list[Record]:
    updates = n * steps
    peers = brainpy_peer.VERSIONS if method == brainpy_peer.METHOD else ()
    timed = dict(repeats=timing.repeats, peers=peers, **fields)
    # N·steps over the median run time, so the throughput and run_time tables agree for an even number of
    # runs too (the median of per-run throughputs is then the mean of two reciprocals); min, max and IQR
    # are those of the per-run throughputs.
    throughputs = updates / np.asarray(timing.runs)
    q1, q3 = np.percentile(throughputs, [25, 75])
    rate = float(jnp.sum(spike_count)) / n / (steps * dt) * 1000.0
    return [
        make_record(
            SUITE,
            case,
            method,
            "throughput",
            updates / timing.median,
            "updates/s",
            min=float(throughputs.min()),
            max=float(throughputs.max()),
            iqr=float(q3 - q1),
            note="neuron updates per second, N·steps / median run time over the timed runs",
            **timed,
        ),
        make_record(
            SUITE,
            case,
            method,
            "run_time",
            timing.median,
            "s",
            min=timing.min,
            max=timing.max,
            iqr=timing.iqr,
            **timed,
        ),
        make_record(
            SUITE,
            case,
            method,
            "compile_time",
            timing.compile,
            "s",
            note="tracing, lowering and XLA compilation in the warm-up calls (jax.monitoring)",
            **timed,
        ),
        make_record(SUITE, case, method, "firing_rate", rate, "Hz", note="population mean", **timed),
    ]


def run_case(name: str, n: int, steps: int = STEPS, repeats: int = 5) -> list[Record]:
    """Benchmark zoo model ``name`` at population size ``n`` against brainpy.state, side by side.

    Args:
        name: a registry name (``"lif"``); a name not in the registry gives skipped records.
        n: population size (neurons).
        steps: time steps per run.
        repeats: timed runs per method (median reported).

    Returns:
        The case's records (see the module docstring for the metrics).
    """
    case = f"{name}/n={n}"
    dtype = jnp.dtype(DTYPE).name
    if name not in NEURONS:
        reason = f"model {name!r} is not in diffbrain.zoo.registry.NEURONS"
        fields = dict(params=format_params({"n": n, "steps": steps}), dtype=dtype)
        return [
            skipped(SUITE, case, method, metric, unit, reason, **fields)
            for method, metric, unit in [
                *((method, "throughput", "updates/s") for method in DIFFBRAIN_METHODS),
                *((method, "speedup_vs_brainpy", "x") for method in DIFFBRAIN_METHODS),
            ]
        ]
    dt = DT_MS.get(name, NEURONS[name].dt)
    fields = dict(params=format_params({"n": n, "steps": steps, "dt_ms": dt}), dtype=dtype)
    peer_missing = brainpy_peer.unavailable() or brainpy_peer.counterpart_missing(name)
    runs = _runs(name, n, steps, dt, peer_missing)
    outputs: dict[str, Array] = {}

    def keeping_output(method: str, run: Callable[[], Array]) -> Callable[[], Array]:
        def call():
            outputs[method] = run()
            return outputs[method]

        return call

    timings = measure_side_by_side({m: keeping_output(m, run) for m, run in runs.items()}, repeats)
    records = [
        record
        for method, timing in timings.items()
        for record in _method_records(case, method, timing, outputs[method], n, steps, dt, **fields)
    ]
    if peer_missing is not None:
        not_measured = [(brainpy_peer.METHOD, "throughput", "updates/s")]
        not_measured += [(method, "speedup_vs_brainpy", "x") for method in DIFFBRAIN_METHODS]
        return records + [
            skipped(SUITE, case, method, metric, unit, peer_missing, peers=brainpy_peer.VERSIONS, **fields)
            for method, metric, unit in not_measured
        ]
    peer_time = timings[brainpy_peer.METHOD].median
    records += [
        make_record(
            SUITE,
            case,
            method,
            "speedup_vs_brainpy",
            peer_time / timings[method].median,
            "x",
            repeats=repeats,
            peers=brainpy_peer.VERSIONS,
            note="throughput over brainpy.state's, timed in turns in one process (>1: diffbrain faster)",
            **fields,
        )
        for method in DIFFBRAIN_METHODS
    ]
    return records


def run(
    models: Sequence[str] = MODELS,
    sizes: Sequence[int] = SIZES,
    steps: int = STEPS,
    repeats: int = 5,
    on_case: Callable[[list[Record]], object] = lambda records: None,
) -> list[Record]:
    """The throughput suite over ``models`` × ``sizes`` (see `run_case`); returns all records.

    ``on_case`` gets each case's records as soon as they are measured (the command line saves them, so a
    run stopped midway keeps its finished cases).
    """
    records = []
    for name in models:
        for n in sizes:
            case = run_case(name, n, steps, repeats)
            on_case(case)
            records += case
    return records
