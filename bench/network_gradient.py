"""Suite "network_gradient": a network's gradient w.r.t. its per-synapse weights, through `lax.scan` and
through `ops.event_scan`.

The network is the Potjans–Diesmann microcircuit (`networks.Microcircuit`, Poisson background, from the
``conn-potjans-diesmann2014`` data folder) at each ``scale`` of `CASES` (0.02, 0.05 and 0.1 — 7,717
neurons, 2.9·10⁷ synapses —, 100 ms each). The loss is a weighted sum of the eight populations' surrogate
spike counts plus the mean final potential (`Network.simulate` with ``surrogate=True``), and the gradient
is w.r.t. every floating leaf of the network, each projection's ``W.data`` (one weight per synapse)
included. Methods, side by side in one
process (in turns, medians after a warm-up call): ``lax.scan`` (`Network.simulate`'s default), ``diffbrain``
(``event_scan=True``: the per-synapse weight gradients accumulate in place, the residuals are lax.scan's)
and ``diffbrain.checkpoint`` (``event_scan=True, checkpoint=CHECKPOINT``: the steps run in segments of
`CHECKPOINT` under `jax.checkpoint`, recomputed in the reverse pass).

Metrics per method: ``gradient_time`` (s, median), ``compile_time`` (s: lowering and XLA compilation),
``temporary_memory`` (MiB: XLA's temporary buffers of the compiled gradient, where the residuals live),
``gradient_over_forward`` (× the forward run, ``forward_time``, recorded with ``diffbrain``) and, for the
event_scan methods, ``gradient_deviation`` (`largest_difference` from lax.scan's gradient, leaf by leaf).
Every method runs on the automatic ops backend: where that is ``reference`` because the compiled kernel is
unavailable (`diffbrain.bench.ops.automatic_fallback`), every method is skipped with the reason.

    diffbrain bench network_gradient --out bench-results   # or: python -m diffbrain.bench.network_gradient
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import pandas as pd

from ..zoo import networks
from .ops import automatic_fallback
from .records import Record, format_params, make_record, positive_int, skip_reasons, skipped, to_frame
from .sim import MICROCIRCUIT_DATA, microcircuit_case, microcircuit_folder
from .timing import measure_side_by_side

SUITE = "network_gradient"
CASES = ((0.02, 1.0, 100.0), (0.05, 1.0, 100.0), (0.1, 1.0, 100.0))
"""(scale, k_scale, duration ms) of each microcircuit case: 5.3·10⁶, 1.4·10⁷ and 2.9·10⁷ synapses."""
CHECKPOINT = 100
"""Steps per stored state of the ``diffbrain`` method."""
REPEATS = 5
QUICK = {"cases": ((0.02, 1.0, 20.0),), "repeats": 1}
"""A grid for smoke tests: 1,544 neurons, 5·10⁶ synapses, 200 steps (two checkpointed segments)."""
REFERENCE = "lax.scan"


def methods(checkpoint: int) -> dict[str, dict]:
    """`Network.simulate`'s options of each method, by name."""
    return {
        REFERENCE: {},
        "diffbrain": {"event_scan": True},
        "diffbrain.checkpoint": {"event_scan": True, "checkpoint": checkpoint},
    }


def loss(net: networks.Network, duration_ms: float, **options) -> jax.Array:
    """The weighted surrogate spike counts of the populations plus the mean final potential (mV)."""
    result = net.simulate(duration_ms, jax.random.key(1), surrogate=True, check_finite=False, **options)
    weights = jnp.arange(1, result.counts.shape[1] + 1, dtype=result.counts.dtype)
    return jnp.sum(result.counts * weights) + jnp.mean(result.final_state.neurons.V)


def compiled_calls(
    net: networks.Network, duration_ms: float, checkpoint: int
) -> dict[str, tuple[Callable[[], object], float, int]]:
    """Per name (``"forward"`` and each of `methods`): a zero-argument call of the compiled loss or gradient,
    its compile time (s) and XLA's temporary bytes. The network's arrays (indices too) are arguments of the
    compiled functions, not constants."""
    params, static = eqx.partition(net, eqx.is_array)

    def compiled_call(function: Callable) -> tuple[Callable[[], object], float, int]:
        start = time.perf_counter()
        compiled = jax.jit(lambda params: function(eqx.combine(params, static))).lower(params).compile()
        seconds = time.perf_counter() - start
        return (lambda: compiled(params)), seconds, compiled.memory_analysis().temp_size_in_bytes

    calls = {"forward": compiled_call(lambda net: loss(net, duration_ms))}
    for name, options in methods(checkpoint).items():
        calls[name] = compiled_call(eqx.filter_grad(lambda net, o=options: loss(net, duration_ms, **o)))
    return calls


def largest_difference(gradient, reference) -> float:
    """The largest difference between two gradients (PyTrees) leaf by leaf, relative to each reference
    leaf's largest value (so a wrong weight gradient counts however small the weights' gradients are beside
    the others); a leaf whose reference is all zero counts its largest value (inf where the other is not)."""
    worst = 0.0
    for g, r in zip(jax.tree.leaves(gradient), jax.tree.leaves(reference), strict=True):
        difference, scale = float(jnp.max(jnp.abs(g - r))), float(jnp.max(jnp.abs(r)))
        worst = max(worst, difference / scale if scale > 0 else (math.inf if difference > 0 else 0.0))
    return worst


def run_case(
    scale: float,
    k_scale: float,
    duration_ms: float,
    checkpoint: int = CHECKPOINT,
    repeats: int = REPEATS,
    data: str | os.PathLike | None = None,
) -> list[Record]:
    """The records of one microcircuit case (see the module docstring); skipped ones when the automatic ops
    backend is not the compiled kernel (`diffbrain.bench.ops.automatic_fallback`) or the data folder
    (``data``, default `sim.microcircuit_folder`'s: ``$DIFFBRAIN_DATA/conn-potjans-diesmann2014`` or the one
    next to the repository) is missing."""
    case = f"{microcircuit_case(scale, k_scale, duration_ms)}/checkpoint={checkpoint}"
    params = format_params(dict(scale=scale, k_scale=k_scale, duration_ms=duration_ms, checkpoint=checkpoint))
    folder = microcircuit_folder(data)
    reason = automatic_fallback()
    if reason is None and not folder.exists():
        reason = (
            f"the {MICROCIRCUIT_DATA} data folder is missing ({folder}; pass `data` or set $DIFFBRAIN_DATA)"
        )
    if reason is not None:
        return [
            skipped(SUITE, case, method, "gradient_time", "s", reason, params=params)
            for method in methods(checkpoint)
        ]
    net = networks.Microcircuit.from_data(folder, scale=scale, k_scale=k_scale).build(jax.random.key(0))
    synapses = sum(projection.W.nnz for projection in net.projections.values())
    calls = compiled_calls(net, duration_ms, checkpoint)
    timings = measure_side_by_side({name: call for name, (call, _, _) in calls.items()}, repeats, warmup=1)
    gradients = {name: calls[name][0]() for name in methods(checkpoint)}
    forward = timings["forward"].median
    about = f"{net.n} neurons, {synapses:.3g} synapses, surrogate spikes, {round(duration_ms / net.dt)} steps"
    fields = dict(params=params, dtype=str(net.I_ext.dtype))
    records = [
        make_record(
            SUITE,
            case,
            "diffbrain",
            "forward_time",
            forward,
            "s",
            repeats=repeats,
            note=f"the loss alone (Network.simulate); {about}",
            **fields,
        )
    ]
    for name, options in methods(checkpoint).items():
        timing, (_, compile_s, temporary) = timings[name], calls[name]
        described = ", ".join(f"{k}={v}" for k, v in options.items()) or "lax.scan"
        spread = dict(min=timing.min, max=timing.max, iqr=timing.iqr)
        metrics = [
            (
                "gradient_time",
                timing.median,
                "s",
                spread,
                f"every parameter's gradient ({described}); {about}",
            ),
            ("compile_time", compile_s, "s", {}, "lowering and XLA compilation of the gradient"),
            ("temporary_memory", temporary / 2**20, "MiB", {}, "XLA's temporary buffers of the gradient"),
            ("gradient_over_forward", timing.median / forward, "x", {}, "gradient_time / forward_time"),
        ]
        if name != REFERENCE:
            deviation = largest_difference(gradients[name], gradients[REFERENCE])
            note = "the largest over leaves of max |gradient − lax.scan's| / max |lax.scan's gradient|"
            metrics.append(("gradient_deviation", deviation, "", {}, note))
        records += [
            make_record(SUITE, case, name, metric, value, unit, repeats=repeats, note=note, **extra, **fields)
            for metric, value, unit, extra, note in metrics
        ]
    return records


def run(
    quick: bool = False,
    repeats: int | None = None,
    cases: Sequence[tuple[float, float, float]] | None = None,
    checkpoint: int = CHECKPOINT,
    data: str | os.PathLike | None = None,
    progress: Callable[[str], None] = lambda line: None,
    on_case: Callable[[list[Record]], object] = lambda records: None,
) -> list[Record]:
    """The suite over ``cases`` (default `CASES`, `QUICK` with ``quick``); ``on_case`` gets each case's
    records as soon as they are measured (the command line saves them)."""
    grid = dict(QUICK) if quick else {"cases": CASES, "repeats": REPEATS}
    cases = grid["cases"] if cases is None else cases
    repeats = grid["repeats"] if repeats is None else repeats
    records = []
    for scale, k_scale, duration_ms in cases:
        progress(microcircuit_case(scale, k_scale, duration_ms))
        measured = run_case(scale, k_scale, duration_ms, checkpoint, repeats, data)
        on_case(measured)
        records += measured
    return records


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per case and method: the gradient's time, its ratio to the forward run, memory and deviation."""
    shown = ["gradient_time", "gradient_over_forward", "temporary_memory", "gradient_deviation"]
    table = frame[frame.metric.isin(shown)]
    table = table.pivot_table(index=["case", "method"], columns="metric", values="value", aggfunc="last")
    return table.reindex(columns=[m for m in shown if m in table.columns])


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, run one case and print its summary and why any method was skipped; exit
    status 1 when nothing was measured."""
    parser = argparse.ArgumentParser(
        prog="python -m diffbrain.bench.network_gradient", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--data", type=Path, help=f"the {MICROCIRCUIT_DATA} folder (default: {microcircuit_folder()})"
    )
    parser.add_argument("--scale", type=float, default=CASES[-1][0], help="share of the full-scale neurons")
    parser.add_argument("--duration", type=float, default=CASES[-1][2], help="simulated time, ms")
    parser.add_argument(
        "--checkpoint", type=positive_int, default=CHECKPOINT, help="steps per segment (diffbrain.checkpoint)"
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=REPEATS, help="timed turns after the warm-up call"
    )
    args = parser.parse_args(argv)
    if args.data is not None and not args.data.is_dir():
        parser.error(
            f"--data: {os.fspath(args.data)!r} does not exist or is not a folder; give the "
            f"{MICROCIRCUIT_DATA} folder"
        )
    cases = ((args.scale, 1.0, args.duration),)
    records = run(repeats=args.repeats, cases=cases, checkpoint=args.checkpoint, data=args.data)
    measured = any(record.status == "ok" for record in records)
    if measured:
        with pd.option_context("display.width", 250, "display.max_columns", None, "display.precision", 3):
            print(summary(to_frame(records)))
    reasons = skip_reasons(records)
    if reasons:
        print(reasons)
    if not measured:
        raise SystemExit("network_gradient measured nothing: every method is skipped (why: above).")


if __name__ == "__main__":
    main()
