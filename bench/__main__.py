"""``python -m diffbrain.bench SUITE``: run a benchmark suite and merge its records into a results folder."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import pandas as pd

from . import (
    compare,
    fit,
    fit_cells,
    fit_dimension,
    learn,
    learn_braintrace,
    network_gradient,
    ops,
    sim,
    throughput,
)
from .records import ResultsFile, firing_fraction, positive_int, skip_reasons, to_frame


def throughput_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Throughput (updates/s) and speedup over brainpy.state (×) per case, one column per method."""
    table = frame[frame.metric.isin(["throughput", "speedup_vs_brainpy"])]
    table = table.assign(column=table.metric.str.replace("throughput", "updates/s") + " " + table.method)
    return table.pivot_table(index="case", columns="column", values="value", aggfunc="last", sort=False)


SUITE_OPTIONS = {
    "models": ("throughput",),
    "sizes": ("throughput", "ops", "learn"),
    "steps": ("throughput",),
    "methods": ("fit",),
    "problems": ("fit",),
    "membrane": ("fit_dimension",),
    "full": ("ops", "learn", "sim"),
    "firing": ("ops",),
    "peer_python": ("learn", "sim"),
}
"""The options that only some suites read, and which (the rest apply to every suite)."""
LIST_OPTIONS = ("models", "sizes", "methods", "problems", "firing")
"""The options that take several values, each of which is measured once (a repeated value is refused)."""
COMPARE_OPTIONS = {"threshold": compare.THRESHOLD, "reference_threshold": compare.REFERENCE_THRESHOLD}
"""The options that tune `--compare`, and their defaults (besides ``--reference``)."""


def main(argv: Sequence[str] | None = None, prog: str = "python -m diffbrain.bench") -> None:
    """Parse the command line, run the suite, write ``OUT/<suite>.csv`` and print a summary."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument(
        "suite",
        choices=[
            "throughput",
            "ops",
            "fit",
            "fit_cells",
            "fit_dimension",
            "learn",
            "sim",
            "network_gradient",
        ],
        help="the suite to run",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small, fast run: each suite's QUICK settings (fewer repeats; throughput, sim, fit_cells, "
        "fit_dimension and network_gradient run smaller grids, ops fewer methods; learn and fit keep "
        "their grids)",
    )
    parser.add_argument("--out", default="bench-results", help="results folder (default: %(default)s)")
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(throughput.MODELS),
        help=f"throughput: the models, among {' '.join(throughput.MODELS)} (default: all)",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=positive_int,
        help=f"population sizes (default {throughput.SIZES}; ops: {ops.SIZES}; learn: n_rec, default "
        f"{learn.SIZES}, --full {learn.FULL_SIZES}, and the braintrace comparison at each, else at "
        f"{learn.SIZES[0]}; its sparse case keeps {learn.SPARSE_CASES[0][0]:,} neurons)",
    )
    parser.add_argument(
        "--methods", nargs="+", help=f"fit: the methods to run side by side (default {' '.join(fit.METHODS)})"
    )
    parser.add_argument("--problems", nargs="+", help=f"fit: the problems (default {' '.join(fit.PROBLEMS)})")
    parser.add_argument(
        "--membrane",
        action="store_true",
        help="fit_dimension: the non-convex variant (C, g_L, E_L, V_T free beside the kernel amplitudes)",
    )
    parser.add_argument(
        "--steps", type=positive_int, help=f"throughput: time steps per run (default {throughput.STEPS})"
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        help="timed runs per method (default: the suite's own, fewer with --quick; e.g. fit "
        f"{fit.REPEATS}, quick {fit.QUICK['repeats']}; learn {learn.REPEATS}, "
        f"quick {learn.QUICK['repeats']})",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help=f"ops: all sizes {ops.FULL_SIZES}; learn: T {learn.FULL_STEPS}, n_rec {learn.FULL_SIZES}; "
        "sim: COBA up to 400,000 neurons and the full-scale microcircuit (~14 GiB)",
    )
    parser.add_argument(
        "--firing",
        nargs="+",
        type=firing_fraction,
        help=f"ops: firing fractions in (0, 1], 0.02 = 2 %% (default {ops.FIRING})",
    )
    parser.add_argument(
        "--compare",
        metavar="BASELINE",
        help="a results CSV of the same suite: flag cases whose time relative to the suite's reference "
        "method grew by more than --threshold, references whose absolute time grew by more than "
        "--reference-threshold on the same machine, and methods measured then but missing now (exit "
        "status 1 if any, or if nothing could be compared). Judged: times in s, not compile or warm-up "
        "times nor spreads (*_sd); references: "
        + "; ".join(
            f"{suite} {' or '.join(refs)}"
            for suite, refs in compare.REFERENCES.items()
            if not suite.startswith("test_")  # pytest-benchmark suites: not a `diffbrain bench` baseline
        )
        + " (which metrics that leaves per suite: docs/benchmarks.md)",
    )
    parser.add_argument(
        "--threshold", type=float, help=f"--compare: slowdown flagged (default {compare.THRESHOLD})"
    )
    parser.add_argument(
        "--reference-threshold",
        type=float,
        help="--compare: slowdown of the reference's absolute time flagged (default "
        f"{compare.REFERENCE_THRESHOLD})",
    )
    parser.add_argument("--reference", help="--compare: the reference method (default: the suite's)")
    parser.add_argument(
        "--peer-python",
        help="sim, learn: the Python with Brian2/BrainPy/NEST/braintrace (default $DIFFBRAIN_PEER_PYTHON, "
        "else this one)",
    )
    args = parser.parse_args(argv)
    for option, suites in SUITE_OPTIONS.items():
        if args.suite not in suites and getattr(args, option) != parser.get_default(option):
            flag = "--" + option.replace("_", "-")
            owners = " and ".join([", ".join(suites[:-1]), suites[-1]] if len(suites) > 1 else suites)
            plural = "s" if len(suites) > 1 else ""
            parser.error(f"{flag} applies to the {owners} suite{plural} only, not to {args.suite}")
    for option in LIST_OPTIONS:
        values = getattr(args, option) or []
        repeated = next((value for i, value in enumerate(values) if value in values[:i]), None)
        if repeated is not None:
            parser.error(f"--{option} names {repeated} twice; give each value once (each is measured once)")
    unknown = [name for name in args.models if name not in throughput.MODELS]
    if unknown:
        parser.error(f"--models: {unknown} are not among {list(throughput.MODELS)}")
    if args.suite == "sim" and args.quick and args.full:
        parser.error(
            "--quick and --full contradict each other for sim (--quick runs the small grid, --full the "
            "largest); give one"
        )
    baseline = None
    for option, default in COMPARE_OPTIONS.items():
        flag = "--" + option.replace("_", "-")
        if getattr(args, option) is None:
            setattr(args, option, default)
        elif not 0 < getattr(args, option) < math.inf:
            parser.error(
                f"{flag} must be a positive finite fraction (0.2 = 20% slower), got {getattr(args, option)}"
            )
        elif args.compare is None:
            parser.error(f"{flag} applies to --compare only; add --compare BASELINE or leave it out")
    if args.reference is not None and args.compare is None:
        parser.error("--reference applies to --compare only; add --compare BASELINE or leave it out")
    if args.compare is not None:
        try:
            baseline = compare.load(args.compare)
        except ValueError as error:
            parser.error(f"--compare: {error}")
        if args.suite not in set(baseline["suite"]):
            parser.error(
                f"--compare: {args.compare!r} holds no timings of the {args.suite} suite (its suites: "
                f"{sorted(set(baseline['suite']))}); pass a results CSV that `diffbrain bench "
                f"{args.suite}` wrote."
            )
    # the suites' own options are checked before the results file, so that a refused run leaves no folder
    fit_choice = {"methods": args.methods, "problems": args.problems}
    for option, names in fit_choice.items():
        known = getattr(fit, option.upper())
        if names is not None and not set(names) <= set(known):
            parser.error(f"--{option} must be among {', '.join(known)}, got {' '.join(names)}")
    fit_choice = {option: names for option, names in fit_choice.items() if names is not None}
    if args.suite == "ops":
        try:
            ops_sizes = ops.grid_sizes(args.sizes, args.full)
        except ValueError as error:
            parser.error(f"--sizes: {error}")
    try:
        results = ResultsFile(args.out, args.suite)
    except ValueError as error:
        parser.error(f"--out: {error}")
    save_case = results.add  # each case's records are saved as soon as it is measured

    if args.suite == "fit":
        repeats = args.repeats or (fit.QUICK["repeats"] if args.quick else fit.REPEATS)
        records = fit.run(
            repeats=repeats, progress=lambda line: print(line, flush=True), on_case=save_case, **fit_choice
        )
        summary = fit.summary
    elif args.suite in ("fit_cells", "fit_dimension"):
        suite = fit_cells if args.suite == "fit_cells" else fit_dimension
        grid = dict(suite.QUICK) if args.quick else {}
        if args.repeats is not None:
            grid["repeats"] = args.repeats
        if args.membrane:
            grid["membrane"] = True
            if args.quick:
                grid["dimensions"] = (6, 8, 32)  # the quick d = 2, 4 are below the variant's smallest d = 6
        records = suite.run(**grid, progress=lambda line: print(line, flush=True), on_case=save_case)
        summary = suite.summary
    elif args.suite == "learn":
        sizes = args.sizes or (learn.FULL_SIZES if args.full else learn.SIZES)
        steps = learn.FULL_STEPS if args.full else learn.STEPS
        repeats = args.repeats or (learn.QUICK["repeats"] if args.quick else learn.REPEATS)
        batches = learn.FULL_BATCHES if args.full else learn.BATCHES
        records = learn.run(sizes, steps, repeats, batches=batches, on_case=save_case)
        for n_rec in args.sizes or learn.SIZES[:1]:
            braintrace = learn_braintrace.run(
                learn_braintrace.STEPS,
                n_rec=n_rec,
                repeats=repeats,
                python=args.peer_python,
                progress=lambda line: print(line, flush=True),
            )
            save_case(braintrace)
            records += braintrace
        summary = learn.summary
    elif args.suite == "sim":
        records = sim.run(
            quick=args.quick,
            full=args.full,
            repeats=args.repeats,
            peer_python=args.peer_python,
            progress=lambda line: print(line, flush=True),
            on_case=save_case,
        )
        summary = sim.summary
    elif args.suite == "network_gradient":
        records = network_gradient.run(
            quick=args.quick,
            repeats=args.repeats,
            progress=lambda line: print(line, flush=True),
            on_case=save_case,
        )
        summary = network_gradient.summary
    elif args.suite == "ops":
        grid = dict(ops.QUICK) if args.quick else {}
        grid["sizes"] = ops_sizes
        given = {"firing": args.firing, "repeats": args.repeats}
        grid |= {key: value for key, value in given.items() if value is not None}
        records = ops.run(**grid, progress=lambda case: print(case, flush=True), on_case=save_case)
        summary = ops.summary
    else:
        grid = dict(throughput.QUICK) if args.quick else {}
        given = {"sizes": args.sizes, "steps": args.steps, "repeats": args.repeats}
        grid |= {key: value for key, value in given.items() if value is not None}
        records = throughput.run(args.models, **grid, on_case=save_case)
        summary = throughput_summary
    path = results.add(records)  # the records derived from several cases (fit_dimension's crossovers) too
    measured = any(record.status == "ok" for record in records)
    if measured:
        display = {"display.width": 250, "display.max_columns": None, "display.float_format": "{:.3g}".format}
        with pd.option_context(*(item for pair in display.items() for item in pair)):
            print(summary(to_frame(records)))
    reasons = skip_reasons(records)
    if reasons:
        print(reasons)
    print(f"{len(records)} records merged into {path}")
    if not measured:
        why = "every record is skipped (why: above)" if records else "it made no records"
        raise SystemExit(f"the {args.suite} suite measured nothing: {why}.")
    if baseline is not None:
        current = compare.from_records(to_frame(records))
        table = compare.compare(current, baseline, args.threshold, args.reference, args.reference_threshold)
        print(compare.report(table, args.threshold, args.reference_threshold))
        if compare.failed(table):
            raise SystemExit(1)


if __name__ == "__main__":
    main()
