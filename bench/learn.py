"""Suite "learn": memory and time of one gradient step of BPTT and the online algorithms, and their agreement.

The network is `diffbrain.learn.EINetwork` (ALIF, 80 % E / 20 % I, conductance synapses, leaky 2-unit
readout) with 100 Poisson inputs, float32, dt 1 ms, the loss on the last 10 % of the steps.
Grid: T = 100, 300, 1,000 steps at 200 neurons, batch 16 (``full``: T up to 10,000, 200 and 800 neurons,
batch 16 and 64 — the grid of the issue). Methods: ``bptt``, ``bptt-checkpoint`` (``checkpoint=True``:
segments of about √T steps recomputed in the backward pass), ``d-rtrl``, ``es-d-rtrl``
(`diffbrain.learn.bptt` / `diffbrain.learn.online`).

Metrics per method and case:

* ``temp_memory`` (MiB): XLA's compiled temporary memory of the jitted gradient step
  (``compile().memory_analysis().temp_size_in_bytes``) — deterministic and cheap (no step runs), so it is
  recorded for every case: the number that grows with T for BPTT and must not for the online algorithms;
* ``step_time`` (s): one gradient step (median of the timed runs, the methods of a case timed in turns),
  and ``compile_time`` (s). Timed only where a step is affordable on a small CPU: ``T × batch × n_rec ≤
  TIME_WORK`` (D-RTRL, ~150× BPTT's time: ``≤ TIME_WORK / DRTRL_COST``, T ≤ 300 at 200 neurons and batch
  16) and compiled temporaries ≤ ``TIME_MEMORY``; the others get a ``"skipped"`` record saying so;
* ``time_over_bptt`` (×): another method's step time over BPTT's on the same case;
* ``cosine_<group>`` (1): the cosine between the online and the BPTT gradient for the input, E→all,
  I→all and readout weights, at T = 100 (case ``.../cosine``).

Sparse networks (`SPARSE_CASES`): one network whose recurrent connections are drawn with probability
``p``, its weights held as a dense masked matrix (case ``.../dense``) and, the same synapses, in an
`ops.CSR` (``.../csr``, `EINetwork.to_sparse`): ``step_time`` of each of `SPARSE_METHODS` each way, timed
side by side, and ``csr_over_dense`` (×), the CSR step time over the dense one. The gradients are the same
(tests/learn); the params give the recurrent firing rate (Hz) the operators see. The CSR layout runs on the
automatic ops backend: where that is ``reference`` because the compiled kernel is unavailable
(`diffbrain.bench.ops.automatic_fallback`), the ``.../csr`` records are skipped with the reason.

Run: ``python -m diffbrain.bench.learn [--full] [--repeats N] [--sparse N_REC P T BATCH] [--out FOLDER]``
(the records merged into ``FOLDER/learn.csv`` as each case is measured, as by ``diffbrain bench learn``).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import time
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import pandas as pd

from diffbrain import learn

from .ops import automatic_fallback
from .records import Record, ResultsFile, format_params, make_record, positive_int, skipped, to_frame
from .timing import measure_side_by_side

SUITE = "learn"
METHODS = ("bptt", "bptt-checkpoint", "d-rtrl", "es-d-rtrl")
ONLINE_METHODS = ("d-rtrl", "es-d-rtrl")
STEPS = (100, 300, 1_000)
FULL_STEPS = (*STEPS, 3_000, 10_000)
SIZES = (200,)
FULL_SIZES = (200, 800)
BATCHES = (16,)
FULL_BATCHES = (16, 64)
BATCH, N_IN, N_OUT = 16, 100, 2
TIME_WORK = 1_000 * 16 * 200
"""The largest ``T × batch × n_rec`` whose step is timed (BPTT and ES-D-RTRL ~0.2 s each on 2 CPU cores)."""
DRTRL_COST = 3
TIME_MEMORY = 2**30
"""Compiled temporaries (bytes) above which a step is not timed."""
SPARSE_CASES = ((4_000, 0.025, 200, 16),)
"""``(n_rec, p, T, batch)`` of the sparse-network cases: 100 synapses per neuron at 4,000 neurons."""
SPARSE_METHODS = ("bptt", "bptt-checkpoint", "es-d-rtrl")
COSINE_STEPS = 100
REPEATS = 3
QUICK = {"repeats": 1}
DTYPE = jnp.float32
MIB = 2**20
RATIO_NOTES = {
    "time_over_bptt": "the method's step time over BPTT's on the same case",
    "csr_over_dense": "the method's step time with the recurrent weights in an `ops.CSR` over its step time "
    "with them dense (masked), same synapses",
}
"""The ``note`` of each ratio record (the leaderboard shows it under the ratio's table)."""


def gradient_step(method: str) -> Callable:
    """``(net, batch) -> (loss, grads)`` of a method of `METHODS`."""
    if method == "bptt":
        return learn.bptt
    if method == "bptt-checkpoint":
        return functools.partial(learn.bptt, checkpoint=True)
    return lambda net, batch: learn.online(net, batch, algorithm=method)


def poisson_batch(key, n_steps: int, batch_size: int = BATCH, n_in: int = N_IN) -> learn.SimpleBatch:
    """A two-class batch: the label picks which half of the inputs fires at 40 Hz (the other at 10 Hz)."""
    k_label, k_spikes = jax.random.split(key)
    labels = jax.random.bernoulli(k_label, 0.5, (batch_size,)).astype(jnp.int32)
    first_half = jnp.arange(n_in) < n_in // 2
    rates = jnp.where(first_half[None] == (labels[:, None] == 0), 0.04, 0.01)
    inputs = (jax.random.uniform(k_spikes, (n_steps, batch_size, n_in)) < rates).astype(DTYPE)
    mask = jnp.broadcast_to((jnp.arange(n_steps) >= n_steps - n_steps // 10)[:, None], (n_steps, batch_size))
    return learn.SimpleBatch(inputs, jnp.broadcast_to(labels, mask.shape), mask, labels)


def network(n_rec: int, connectivity: float = 1.0) -> learn.EINetwork:
    """The benchmark network in float32 (recurrent connection probability ``connectivity``)."""
    net = learn.EINetwork(N_IN, n_rec, N_OUT, key=jax.random.key(0), connectivity=connectivity)
    return jax.tree.map(lambda x: x.astype(DTYPE) if eqx.is_inexact_array(x) else x, net)


def run_case(n_rec: int, n_steps: int, repeats: int, batch_size: int = BATCH) -> list[Record]:
    """Memory of every method on one (n_rec, T, batch) case, and their step times side by side where
    affordable (see the module docstring)."""
    net, batch = network(n_rec), poisson_batch(jax.random.key(1), n_steps, batch_size)
    params = {"n_rec": n_rec, "T": n_steps, "batch": batch_size, "n_in": N_IN, "dt_ms": net.dt}
    common = {"params": format_params(params), "dtype": "float32"}
    case = f"n_rec={n_rec}/T={n_steps}" + ("" if batch_size == BATCH else f"/batch={batch_size}")
    records, timed = [], {}
    work = n_steps * batch_size * n_rec
    for method in METHODS:
        start = time.perf_counter()
        compiled = jax.jit(gradient_step(method)).lower(net, batch).compile()
        compile_time = time.perf_counter() - start
        memory = compiled.memory_analysis().temp_size_in_bytes
        records += [
            make_record(SUITE, case, method, "temp_memory", memory / MIB, "MiB", **common),
            make_record(SUITE, case, method, "compile_time", compile_time, "s", **common),
        ]
        limit = TIME_WORK / (DRTRL_COST if method == "d-rtrl" else 1)
        if work > limit or memory > TIME_MEMORY:
            note = (
                f"not timed: T x batch x n_rec = {work:,} > {limit:,.0f}"
                if work > limit
                else f"not timed: {memory / MIB:,.0f} MiB of temporaries > {TIME_MEMORY / MIB:,.0f}"
            )
            records.append(
                make_record(
                    SUITE, case, method, "step_time", math.nan, "s", status="skipped", note=note, **common
                )
            )
        else:
            timed[method] = lambda compiled=compiled: compiled(net, batch)
    timings = measure_side_by_side(timed, repeats=repeats, warmup=1) if timed else {}
    for method, timing in timings.items():
        records.append(
            make_record(
                SUITE, case, method, "step_time", timing.median, "s", repeats=timing.repeats,
                min=timing.min, max=timing.max, iqr=timing.iqr, **common,
            )
        )  # fmt: skip
        if method != "bptt" and "bptt" in timings:
            ratio = timing.median / timings["bptt"].median
            note = RATIO_NOTES["time_over_bptt"]
            records.append(
                make_record(SUITE, case, method, "time_over_bptt", ratio, "x", note=note, **common)
            )
    return records


def sparse_network_records(
    n_rec: int, p: float, n_steps: int, batch_size: int, repeats: int = REPEATS
) -> list[Record]:
    """`SPARSE_METHODS` on one network with its recurrent weights dense (masked) and in an `ops.CSR`, timed
    side by side (see the module docstring); the CSR layout skipped with the reason where the automatic ops
    backend is not the compiled kernel (`diffbrain.bench.ops.automatic_fallback`)."""
    dense = network(n_rec, connectivity=p)
    fallback = automatic_fallback()
    nets = {"dense": dense, "csr": dense.to_sparse()}
    batch = poisson_batch(jax.random.key(1), n_steps, batch_size)
    spikes = jax.jit(
        lambda net: jax.lax.scan(lambda s, x: net.step(s, x), net.init_state(batch_size), batch.inputs)[1][0]
    )(dense)
    rate_hz = float(jnp.mean(spikes)) * 1000.0 / dense.dt
    params = {"n_rec": n_rec, "p": p, "nnz": nets["csr"].w_rec.nnz, "T": n_steps, "batch": batch_size}
    common = {
        "params": format_params({**params, "n_in": N_IN, "rate_hz": round(rate_hz, 2)}),
        "dtype": "float32",
    }
    case = f"n_rec={n_rec}/p={p}/T={n_steps}/batch={batch_size}"
    records, timed = [], {}
    if fallback is not None:
        del nets["csr"]
        records += [
            skipped(SUITE, f"{case}/csr", method, "step_time", "s", fallback, **common)
            for method in SPARSE_METHODS
        ]
    for method in SPARSE_METHODS:
        for layout, net in nets.items():
            compiled = jax.jit(gradient_step(method)).lower(net, batch).compile()
            memory = compiled.memory_analysis().temp_size_in_bytes / MIB
            records.append(
                make_record(SUITE, f"{case}/{layout}", method, "temp_memory", memory, "MiB", **common)
            )
            timed[method, layout] = lambda compiled=compiled, net=net: compiled(net, batch)
    timings = measure_side_by_side(timed, repeats=repeats, warmup=1)
    for (method, layout), timing in timings.items():
        records.append(
            make_record(
                SUITE, f"{case}/{layout}", method, "step_time", timing.median, "s", repeats=timing.repeats,
                min=timing.min, max=timing.max, iqr=timing.iqr, **common,
            )
        )  # fmt: skip
        if layout == "csr":
            ratio = timing.median / timings[method, "dense"].median
            note = RATIO_NOTES["csr_over_dense"]
            records.append(
                make_record(SUITE, f"{case}/csr", method, "csr_over_dense", ratio, "x", note=note, **common)
            )
    return records


def cosine_records(n_rec: int, n_steps: int = COSINE_STEPS) -> list[Record]:
    """Per weight group, the cosine between each online gradient and the BPTT gradient."""
    net, batch = network(n_rec), poisson_batch(jax.random.key(2), n_steps)
    _, exact = jax.jit(learn.bptt)(net, batch)
    exc = net.is_excitatory
    groups = {
        "input": lambda g: g.w_in,
        "e_to_all": lambda g: g.w_rec[exc],
        "i_to_all": lambda g: g.w_rec[~exc],
        "readout": lambda g: g.w_out,
    }
    params = format_params({"n_rec": n_rec, "T": n_steps, "batch": BATCH})
    records = []
    for method in ONLINE_METHODS:
        _, approximation = jax.jit(gradient_step(method))(net, batch)
        for group, select in groups.items():
            a, b = select(exact).ravel(), select(approximation).ravel()
            cosine = float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))
            case = f"n_rec={n_rec}/cosine"
            records.append(make_record(SUITE, case, method, f"cosine_{group}", cosine, "1", params=params))
    return records


def run(
    sizes: Sequence[int] = SIZES,
    steps: Sequence[int] = STEPS,
    repeats: int = REPEATS,
    batches: Sequence[int] | None = None,
    progress: Callable[[str], None] | None = None,
    sparse_cases: Sequence[tuple[int, float, int, int]] = SPARSE_CASES,
    on_case: Callable[[list[Record]], object] = lambda records: None,
) -> list[Record]:
    """The whole grid: every (size, T, batch) case, then the cosines per size, then the ``sparse_cases``
    (`sparse_network_records`).

    ``batches`` defaults to `FULL_BATCHES` when ``steps`` is `FULL_STEPS` (the full grid) and to
    `BATCHES` otherwise. ``on_case`` gets each case's records (and each size's cosines) as soon as they are
    measured (the command line saves them).
    """
    if batches is None:
        batches = FULL_BATCHES if tuple(steps) == FULL_STEPS else BATCHES
    records = []
    for n_rec in sizes:
        for batch_size in batches:
            for n_steps in steps:
                case = run_case(n_rec, n_steps, repeats, batch_size)
                if progress is not None:
                    progress(
                        f"n_rec {n_rec}, batch {batch_size}, T {n_steps}: "
                        + ", ".join(
                            f"{r.method} {r.metric} {r.value:.4g} {r.unit}"
                            for r in case
                            if r.metric != "compile_time"
                        )
                    )
                on_case(case)
                records += case
        cosines = cosine_records(n_rec)
        on_case(cosines)
        records += cosines
    for sparse_case in sparse_cases:
        sparse = sparse_network_records(*sparse_case, repeats=repeats)
        on_case(sparse)
        records += sparse
        if progress is not None:
            progress(
                f"sparse {sparse_case}: "
                + ", ".join(f"{r.case} {r.method} {r.metric} {r.value:.4g}" for r in sparse)
            )
    return records


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per case, one column per metric and method."""
    table = frame.assign(column=frame.metric + " " + frame.method)
    return table.pivot_table(index="case", columns="column", values="value", aggfunc="last", sort=False)


def results_file(parser: argparse.ArgumentParser, out: str | None) -> ResultsFile | None:
    """The `ResultsFile` of ``--out`` (a results folder, as ``diffbrain bench`` takes), checked before the
    run; `None` without ``--out``. A bad ``--out`` is a parser error."""
    if out is None:
        return None
    if out.endswith(".csv") and not os.path.exists(out):
        parser.error(
            f"--out is a results folder (the records are merged into OUT/{SUITE}.csv, as `diffbrain bench "
            f"{SUITE}` does), got the file name {out!r}; give a folder"
        )
    try:
        return ResultsFile(out, SUITE)
    except ValueError as error:
        parser.error(f"--out: {error}")


def sparse_case(parser: argparse.ArgumentParser, values: Sequence[str]) -> tuple[int, float, int, int]:
    """One ``--sparse N_REC P T BATCH`` as numbers, checked before any case runs: a value out of range is a
    parser error that names it."""
    n_rec, p, n_steps, batch_size = values
    given = f"--sparse {' '.join(values)}"
    for name, text in {"N_REC": n_rec, "T": n_steps, "BATCH": batch_size}.items():
        try:
            positive_int(text)
        except argparse.ArgumentTypeError as error:
            parser.error(f"{given}: {name} {error}")
    try:
        probability = float(p)
    except ValueError:
        probability = math.nan
    if not 0 < probability <= 1:
        parser.error(f"{given}: P must be a connection probability in (0, 1] (0.1 = 10 %), got {p!r}")
    return int(n_rec), probability, int(n_steps), int(batch_size)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m diffbrain.bench.learn", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--full", action="store_true", help=f"T {FULL_STEPS}, n_rec {FULL_SIZES}, batch {FULL_BATCHES}"
    )
    parser.add_argument("--repeats", type=positive_int, default=REPEATS, help="timed runs per step (median)")
    parser.add_argument(
        "--sparse",
        nargs=4,
        action="append",
        metavar=("N_REC", "P", "T", "BATCH"),
        help=f"a sparse-network case instead of {SPARSE_CASES} (repeatable): N_REC, T, BATCH whole numbers "
        ">= 1, P a connection probability in (0, 1]",
    )
    parser.add_argument(
        "--out", help=f"a results folder: merge the records into OUT/{SUITE}.csv as each case is measured"
    )
    args = parser.parse_args(argv)
    sparse_cases = [sparse_case(parser, values) for values in args.sparse] if args.sparse else SPARSE_CASES
    results = results_file(parser, args.out)
    sizes, steps = (FULL_SIZES, FULL_STEPS) if args.full else (SIZES, STEPS)
    records = run(
        sizes,
        steps,
        args.repeats,
        progress=lambda line: print(line, flush=True),
        sparse_cases=sparse_cases,
        on_case=results.add if results is not None else lambda records: None,
    )
    frame = to_frame(records)
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print(summary(frame).to_string(float_format=lambda v: f"{v:.4g}"))
    if results is not None:
        print(f"{len(records)} records merged into {results.path}")


if __name__ == "__main__":
    main()
