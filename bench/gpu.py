"""Suite "gpu": the event-driven operators and the networks on a GPU, as one short prepared run.

``python -m diffbrain.bench.gpu [--out DIR] [--budget S] [--data PD_FOLDER]`` does, in this order, within a
wall-time budget (what does not fit is recorded as skipped, with the reason):

1. `check`: the compiled Pallas kernels against the ``reference`` backend on the same device — forward
   `ops.event_matvec` with bool and float spikes, `ops.event_matmat`, `ops.csr_matvec`, the VJPs w.r.t.
   the weights and the float spikes, under ``jit`` and ``vmap``, homogeneous and heterogeneous weights —
   and the arrival ring `ops.arrival_scatter` (its rows paired into neurons, random lags; the ring and the
   popped slot, the gradients w.r.t. the weights and float spikes through its transposes) —
   on random CSRs with empty rows and rows longer than a chunk, in the default float dtype (run it with
   ``JAX_ENABLE_X64=1`` for float64). Relative errors, each operation tried on its own, the arrival ring
   last, into ``OUT/gpu_check.tsv``. A wrong or failing forward or VJP kernel stops the run (timings of a
   wrong kernel mean nothing); a failing arrival ring, which only the microcircuit uses, is reported and
   the run goes on.
2. `tune`: the Pallas forward kernel's ``(CHUNK, ROWS, NUM_WARPS)`` (`TUNING_GRID`) at n = 1,000,000 ×
   400, 2% firing, heterogeneous: the time of one call each; the fastest setting is kept for the rest.
3. The ops grid (`diffbrain.bench.ops.run_case`: the methods and metrics of the CPU suite, dense up to
   `diffbrain.bench.ops.dense_limit`, brainevent's GPU kernel when it imports): `SIZES` × firing
   `FIRING`, heterogeneous weights; homogeneous at 2%; n = 1,000,000 first, so the headline case (2%,
   heterogeneous) opens the grid. The structure is drawn on the device (`device_csr`). A case that fails
   (e.g. out of memory) is recorded as failed and the grid goes on. Records of suite ``ops-gpu``.
4. The sim suite's networks (`diffbrain.bench.sim.run`, diffbrain alone): COBA at 4,000 neurons (1 s),
   40,000 (0.5 s) and 400,000 (0.1 s), and the Potjans–Diesmann microcircuit at scale 0.1 (1 s) when
   ``--data`` names its folder. Records of suite ``sim-gpu``. COBA's synapses go through the Pallas
   `ops.event_matvec`; the microcircuit's delayed synapses through the Pallas `ops.arrival_scatter`.

Each stage writes its results as soon as it has them (``OUT/ops-gpu.csv`` and ``OUT/sim-gpu.csv`` after
every case; the tables ``OUT/gpu_check.tsv`` and ``OUT/gpu_tuning.tsv``, tab-separated and not named
``*.csv`` so that ``diffbrain leaderboard OUT`` reads the records only), so a run stopped at its limit keeps
what it finished. Printed lines are flushed at once (a piped log shows the progress). The last lines
printed are summary tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jaxtyping import PRNGKeyArray

from diffbrain import ops
from diffbrain._atomic import write_atomically
from diffbrain.ops.kernels import pallas

from . import ops as ops_suite
from . import sim as sim_suite
from .records import Record, ResultsFile, format_params, skipped, to_frame
from .timing import measure_side_by_side

SIZES = ((1_000_000, 400), (100_000, 400))
"""(n, synapses per row) of the ops grid, in the order run: the headline size first (n = 100,000 has
numbers from earlier runs)."""
FIRING = (0.02, 0.005, 0.10)
"""Firing fractions, the 2% of the issue's headline first."""
TUNING_GRID = tuple((chunk, rows, warps) for chunk in (128, 256) for rows in (1, 4, 16) for warps in (4, 8))
"""``(CHUNK, ROWS, NUM_WARPS)`` settings of the Pallas kernels tried by `tune`."""
CHECK_TOLERANCE = {jnp.dtype(jnp.float32): 1e-5, jnp.dtype(jnp.float64): 1e-12}
"""Largest relative error ‖pallas − reference‖ / ‖reference‖ accepted by `check` (atomics add in any
order)."""
SIM_GRID = dict(
    durations_ms=(1_000.0,),
    scaling={40_000: 500.0, 400_000: 100.0},
    peers=(),
    scaling_peers=(),
    microcircuit_peers=(),
)


@functools.partial(jax.jit, static_argnames=("n", "per_row", "heterogeneous"))
def device_csr(key: PRNGKeyArray, n: int, per_row: int, heterogeneous: bool) -> ops.CSR:
    """An n × n CSR with ``per_row`` distinct postsynaptic targets per row, drawn on the default device.

    Each row's columns are ``sort(u) + [0, 1, …, per_row − 1]`` with ``u`` drawn uniformly from
    ``[0, n − per_row]`` — a strictly increasing, duplicate-free set spread over the whole range (the classic
    map from multisets to sets). Weights U(0, 1) per synapse, or one shared 0.5. Built inside ``jit``, so
    no host copy of the ~10⁸–10⁹ indices is made.
    """
    draws = jnp.sort(jax.random.randint(key, (n, per_row), 0, n - per_row + 1), axis=1)
    indices = (draws + jnp.arange(per_row)).ravel().astype(jnp.int32)
    indptr = jnp.arange(n + 1, dtype=jnp.int32) * per_row
    if heterogeneous:
        data = jax.random.uniform(jax.random.fold_in(key, 1), (n * per_row,), ops_suite.DTYPE)
    else:
        data = jnp.asarray(0.5, ops_suite.DTYPE)
    return ops.CSR(indptr, indices, data, (n, n))


def _random_csr(rng: np.random.Generator, n_pre: int, n_post: int, dtype, heterogeneous: bool) -> ops.CSR:
    """Rows of 0 to 300 distinct sorted columns (a quarter of them empty): chunks, tails and empty rows."""
    counts = np.where(rng.random(n_pre) < 0.25, 0, rng.integers(1, min(300, n_post) + 1, n_pre))
    columns = [np.sort(rng.choice(n_post, c, replace=False)) for c in counts]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    indices = np.concatenate(columns).astype(np.int32)
    data = rng.uniform(-1, 1, indices.size) if heterogeneous else 0.7
    return ops.CSR(indptr, indices, jnp.asarray(data, dtype), (n_pre, n_post))


def _relative_error(value, reference) -> float:
    value, reference = np.asarray(value, np.float64), np.asarray(reference, np.float64)
    return float(np.linalg.norm(value - reference) / max(np.linalg.norm(reference), 1e-30))


def _operations(W: ops.CSR, inputs: dict, backend: str) -> dict[str, Callable[[], jax.Array]]:
    """The forward and VJP operations `check` compares (those the ops grid and COBA use), each computed with
    ``backend`` when called."""

    def forward(data, spikes):
        return ops.event_matvec(spikes, W.with_data(data), backend=backend)

    def loss(data, spikes):
        return jnp.vdot(forward(data, spikes), inputs["cotangent"])

    def matmat(spikes):
        return ops.event_matmat(spikes, W, backend=backend)

    def matvec(x):
        return ops.csr_matvec(x, W, backend=backend)

    return {
        "event_matvec bool": lambda: jax.jit(forward)(W.data, inputs["bool"]),
        "event_matvec float": lambda: jax.jit(forward)(W.data, inputs["float"]),
        "event_matmat": lambda: jax.jit(matmat)(inputs["batch"]),
        "vmap event_matvec": lambda: jax.jit(jax.vmap(lambda s: forward(W.data, s)))(inputs["batch"]),
        "csr_matvec": lambda: jax.jit(matvec)(inputs["dense"]),
        "weight grad": lambda: jax.jit(jax.grad(loss))(W.data, inputs["float"]),
        "spike grad": lambda: jax.jit(jax.grad(loss, argnums=1))(W.data, inputs["float"]),
    }


RING_LENGTH = 4
"""Slots of the arrival ring in `check` (lags 1 … 4)."""
ARRIVAL_OPERATIONS = (
    "arrival_scatter ring",
    "arrival_scatter pop",
    "arrival weight grad",
    "arrival spike grad",
)
"""The arrival-ring operations `check` compares (only the microcircuit uses the ring)."""


def _arrival_operations(W: ops.CSR, inputs: dict, backend: str) -> tuple[jax.Array, ...]:
    """`ARRIVAL_OPERATIONS` computed with ``backend``: ``W``'s rows taken two by two as one neuron's rows
    (``inputs["row_ptr"]``), each with its lag, scattered at step 5 and the next slot popped."""

    def arrive(data, spikes):
        args = (W.with_data(data), inputs["row_ptr"], inputs["lag"], inputs["ring"], 5)
        return ops.arrival_scatter(spikes, *args, pop=True, backend=backend)

    def loss(data, spikes):
        ring, arriving = arrive(data, spikes)
        return jnp.vdot(ring, inputs["ring cotangent"]) + jnp.vdot(arriving, inputs["cotangent"])

    def operations(data, events, spikes):  # one compiled computation: interpreted kernels compile slowly
        return (*arrive(data, events), *jax.grad(loss, argnums=(0, 1))(data, spikes))

    return jax.jit(operations)(W.data, inputs["neuron bool"], inputs["neuron float"])


def _compare(
    ours: Callable[[], object], reference: Callable[[], object], count: int
) -> list[tuple[float, str]]:
    """Per output of ``ours()`` (``count`` arrays, or one): its relative error to ``reference()``'s and "" —
    or, for all ``count`` when either raises, NaN and the exception, reported rather than raised."""
    try:
        pairs = list(zip(jax.tree.leaves(ours()), jax.tree.leaves(reference()), strict=True))
    except Exception as error:
        return [(math.nan, f"{type(error).__name__}: {str(error)[:300]}")] * count
    return [(_relative_error(value, expected), "") for value, expected in pairs]


def check(
    shapes: Sequence[tuple[int, int]] = ((700, 900), (1, 5), (64, 3_000)),
    seed: int = 0,
    path: Path | None = None,
) -> pd.DataFrame:
    """The Pallas kernels against the ``reference`` backend on JAX's default device.

    Each operation is tried on its own (the four of the arrival ring in one computation), the arrival ring
    after all the others: an operation that raises is reported in the table, not raised.

    Args:
        shapes: ``(n_pre, n_post)`` of the random CSRs (`_random_csr`), each with heterogeneous and
            homogeneous weights.
        seed: of the CSRs and inputs.
        path: where the table is written (tab-separated, atomically) once complete, before any failure is
            raised.

    Returns:
        One row per (shape, weights, operation): ``relative_error`` ‖pallas − reference‖ / ‖reference‖ (NaN
        where it raised), ``error`` (the exception, or ""), ``passed`` (ran and within `CHECK_TOLERANCE`
        for the float dtype in use).

    Raises:
        AssertionError: listing every forward or VJP operation that did not pass; an arrival-ring one that
            did not pass is left in the table for the caller to report.
    """
    dtype = jnp.zeros(()).dtype
    rng = np.random.default_rng(seed)
    cases = []
    for n_pre, n_post in shapes:
        for heterogeneous in (True, False):
            W = _random_csr(rng, n_pre, n_post, dtype, heterogeneous)
            inputs = {
                "bool": jnp.asarray(rng.random(n_pre) < 0.1),
                "float": jnp.asarray(np.where(rng.random(n_pre) < 0.3, rng.normal(size=n_pre), 0), dtype),
                "batch": jnp.asarray(rng.random((3, n_pre)) < 0.2),
                "dense": jnp.asarray(rng.normal(size=n_pre), dtype),
                "cotangent": jnp.asarray(rng.normal(size=n_post), dtype),
            }
            neurons = (n_pre + 1) // 2
            inputs |= {
                "row_ptr": jnp.asarray(np.minimum(np.arange(neurons + 1) * 2, n_pre), W.indices.dtype),
                "lag": jnp.asarray(rng.integers(1, RING_LENGTH + 1, n_pre), jnp.int32),
                "ring": jnp.asarray(rng.normal(size=(RING_LENGTH, n_post)), dtype),
                "ring cotangent": jnp.asarray(rng.normal(size=(RING_LENGTH, n_post)), dtype),
                "neuron bool": jnp.asarray(rng.random(neurons) < 0.3),
                "neuron float": jnp.asarray(
                    np.where(rng.random(neurons) < 0.4, rng.random(neurons), 0), dtype
                ),
            }
            weights = "heterogeneous" if heterogeneous else "homogeneous"
            cases.append((dict(shape=f"{n_pre}x{n_post}", weights=weights, dtype=dtype.name), W, inputs))
    rows = []
    for case, W, inputs in cases:
        ours, reference = (_operations(W, inputs, backend) for backend in ("pallas", "reference"))
        for name in ours:
            ((error, failure),) = _compare(ours[name], reference[name], 1)
            rows.append(case | dict(operation=name, relative_error=error, error=failure))
    for case, W, inputs in cases:
        ours, reference = (
            functools.partial(_arrival_operations, W, inputs, backend) for backend in ("pallas", "reference")
        )
        outcomes = _compare(ours, reference, len(ARRIVAL_OPERATIONS))
        for name, (error, failure) in zip(ARRIVAL_OPERATIONS, outcomes, strict=True):
            rows.append(case | dict(operation=name, relative_error=error, error=failure))
    table = pd.DataFrame(rows)
    table["passed"] = table.relative_error <= CHECK_TOLERANCE[jnp.dtype(dtype)]  # NaN: False
    if path is not None:
        _write_table(table, path)
    bad = table[~table.passed & ~table.operation.isin(ARRIVAL_OPERATIONS)]
    if not bad.empty:
        raise AssertionError(f"Pallas kernels differ from the reference or fail:\n{bad.to_string()}")
    return table


def _set_tuning(tuning: tuple[int, int, int]) -> None:
    pallas.CHUNK, pallas.ROWS, pallas.NUM_WARPS = tuning


def _forward_time(W: ops.CSR, spikes: jax.Array, repeats: int) -> float:
    """Median time of one Pallas `ops.event_matvec` call, traced anew (it reads the current tuning)."""
    forward = jax.jit(lambda W, s: ops.event_matvec(s, W, backend="pallas"))
    return measure_side_by_side({"call": lambda: forward(W, spikes)}, repeats)["call"].median


def tune(
    n: int = 1_000_000,
    per_row: int = 400,
    firing: float = 0.02,
    grid: Sequence[tuple[int, int, int]] = TUNING_GRID,
    repeats: int = 5,
) -> tuple[tuple[int, int, int], pd.DataFrame]:
    """Time a heterogeneous `ops.event_matvec` call per Pallas tuning in ``grid``; keep the fastest.

    Returns the fastest ``(CHUNK, ROWS, NUM_WARPS)`` (now set in `diffbrain.ops.kernels.pallas`) and the
    table of median times, s.
    """
    W = device_csr(jax.random.key(0), n, per_row, True)
    spikes = jax.random.uniform(jax.random.key(1), (n,)) < firing
    times = {}
    for tuning in grid:
        _set_tuning(tuning)
        times[tuning] = _forward_time(W, spikes, repeats)
    best = min(times, key=times.get)
    _set_tuning(best)
    table = pd.DataFrame(
        [dict(chunk=c, rows=r, num_warps=w, call_s=t) for (c, r, w), t in times.items()]
    ).sort_values("call_s")
    return best, table


def _write_table(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` tab-separated, atomically (`write_atomically`)."""
    write_atomically(path, lambda file: table.to_csv(file, sep="\t", index=False), newline="")


def _as_suite(records: Sequence[Record], suite: str) -> list[Record]:
    return [dataclasses.replace(record, suite=suite) for record in records]


def ops_grid(
    deadline: float,
    out: Path,
    sizes: Sequence[tuple[int, int]] = SIZES,
    firing: Sequence[float] = FIRING,
    repeats: int = 5,
    progress: Callable[[str], None] = print,
) -> list[Record]:
    """`diffbrain.bench.ops.run_case` on device-built networks until ``deadline`` (`time.monotonic`); the
    records are merged into ``out/ops-gpu.csv`` after every case. A case whose network cannot be built or
    whose measurement fails (e.g. out of memory) gets a skipped record with the reason, and the grid goes
    on."""
    cases = [
        ops_suite.Case(n, per_row, fraction, weights)
        for n, per_row in sizes
        for weights, fractions in (("heterogeneous", firing), ("homogeneous", firing[:1]))
        for fraction in fractions
    ]
    results = ResultsFile(out, "ops-gpu")
    records, built = [], {}
    for case in cases:
        fields = dict(params=format_params(case._asdict()), dtype=jnp.dtype(ops_suite.DTYPE).name)
        if time.monotonic() > deadline:
            measured = [skipped("ops-gpu", case.name, "diffbrain", "step_time", "s", "out of time", **fields)]
        else:
            progress(f"ops-gpu {case.name}")
            key = (case.n, case.per_row, case.weights)
            try:
                if key not in built:
                    built.clear()  # one network on the device at a time
                    heterogeneous = case.weights == "heterogeneous"
                    built[key] = device_csr(jax.random.key(0), case.n, case.per_row, heterogeneous)
                measured = _as_suite(ops_suite.run_case(case, built[key], repeats), "ops-gpu")
            except Exception as error:  # one case that fails (e.g. out of memory) must not lose the others
                traceback.print_exc()
                reason = f"failed: {type(error).__name__}: {str(error)[:300]}"
                measured = [skipped("ops-gpu", case.name, "diffbrain", "step_time", "s", reason, **fields)]
        results.add(measured)
        records += measured
    return records


def sim_grid(
    data: str | None,
    deadline: float,
    out: Path,
    repeats: int = 3,
    progress: Callable[[str], None] = print,
) -> list[Record]:
    """The sim suite's COBA sizes and (with ``data``) the microcircuit at scale 0.1, diffbrain alone, begun
    only before ``deadline`` (`time.monotonic`); each case's records are merged into ``out/sim-gpu.csv`` as
    soon as it is measured. The cases not measured — all of them when out of time, those from a failure on
    (its traceback printed) — get a skipped record with the reason."""
    microcircuit = ((0.1, 1.0, 1_000.0),) if data else ()
    names = [
        *(sim_suite.case_name(sim_suite.N, duration) for duration in SIM_GRID["durations_ms"]),
        *(sim_suite.case_name(n, duration) for n, duration in SIM_GRID["scaling"].items()),
        *(sim_suite.microcircuit_case(*case) for case in microcircuit),
    ]
    results = ResultsFile(out, "sim-gpu")
    records = []

    def keep(measured: Sequence[Record]) -> None:
        measured = _as_suite(measured, "sim-gpu")
        results.add(measured)
        records.extend(measured)

    if time.monotonic() > deadline:
        reason = "out of time"
    else:
        try:
            sim_suite.run(
                repeats=repeats,
                progress=progress,
                microcircuit=microcircuit,
                data=data,
                on_case=keep,
                **SIM_GRID,
            )
            return records
        except Exception as error:  # the cases measured are saved; the others say why they are missing
            traceback.print_exc()
            message = f"{type(error).__name__}: {str(error)[:300]}"
            reason = f"the sim stage failed in this case or an earlier one: {message}"
    measured = {record.case for record in records}
    method, metric = sim_suite.METHOD, "wall_time_per_bio_s"
    keep([skipped("sim-gpu", name, method, metric, "s", reason) for name in names if name not in measured])
    return records


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per ops case: call and step times (µs) of every method, diffbrain's weight gradient and the floors
    of that ``[nnz]`` result (``zeros_time``, ``silent_grad_time``, see `diffbrain.bench.ops`)."""
    metrics = ["step_time", "call_time", "weight_grad_time", "zeros_time", "silent_grad_time"]
    ok = frame[(frame.status == "ok") & frame.metric.isin(metrics)]
    table = ok.assign(value=ok.value * 1e6, column=ok.metric.str.removesuffix("_time") + " µs " + ok.method)
    return table.pivot_table(index="case", columns="column", values="value", aggfunc="last", sort=False)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the stages of the module docstring and print what they measured."""
    parser = argparse.ArgumentParser(
        prog="python -m diffbrain.bench.gpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default="gpu-results", help="results folder (default: %(default)s)")
    parser.add_argument(
        "--budget", type=float, default=420.0, help="wall-time budget, s (default %(default)s)"
    )
    parser.add_argument("--data", help="the conn-potjans-diesmann2014 folder (the microcircuit case)")
    parser.add_argument("--skip", nargs="*", default=(), choices=("check", "tune", "ops", "sim"))
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # a piped stdout is block-buffered: show the progress as it comes
        sys.stdout.reconfigure(line_buffering=True)
    start = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"devices: {jax.devices()}; backend {jax.default_backend()}; ops backends {ops.backends()}")
    with pd.option_context(
        "display.width", 250, "display.max_columns", None, "display.float_format", "{:.4g}".format
    ):
        if "check" not in args.skip:
            table = check(path=out / "gpu_check.tsv")  # raises if a forward or VJP kernel is wrong
            passed = table[table.passed]
            worst = passed.relative_error.max()
            print(
                f"check: {len(passed)} of {len(table)} comparisons passed, largest relative error {worst:.2e}"
            )
            if not table.passed.all():
                print(
                    f"check: the arrival ring failed (only the microcircuit uses it):\n{table[~table.passed]}"
                )
        if "tune" not in args.skip:
            best, table = tune()
            _write_table(table, out / "gpu_tuning.tsv")
            elapsed = time.monotonic() - start
            print(f"tuning (CHUNK, ROWS, NUM_WARPS) = {best} after {elapsed:.0f} s:\n{table.head(5)}")
        sim_reserve = 0.0 if "sim" in args.skip else 120.0
        if "ops" not in args.skip:
            records = ops_grid(start + args.budget - sim_reserve, out)
            print(summary(to_frame(records)).round(1).T)
        if "sim" not in args.skip:
            frame = to_frame(sim_grid(args.data, start + args.budget, out))
            print(sim_suite.summary(frame) if (frame.status == "ok").any() else frame[["case", "note"]])
    print(f"done in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
