"""The ``diffbrain`` command: the model zoo, simulation, fitting, benchmarks and the leaderboard.

JAX and Matplotlib are imported inside the commands that need them, so ``diffbrain --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import enum
import math
import os
import re
import textwrap
import time
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import _cli_train
from ._atomic import is_stream, write_atomically
from ._cli_paths import output_file, output_folder
from ._version import __version__

app = typer.Typer(
    name="diffbrain",
    help="Differentiable brain models in JAX + Equinox: the model zoo, simulation, fitting, benchmarks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
_out = Console()
_err = Console(stderr=True)

_MAX_STEPS = 100_000_000
"""More steps than this is a typo in --duration or --dt, not a simulation anyone waits for."""
SPIKE_SAMPLE_DT = 0.1
"""ms, the longest sample interval at which --solver tsit5/kvaerno5 count spikes: `zoo.solve` counts them
where V crosses the threshold between samples, and a spike that rises and falls between two is missed (hh at
its default current, 100 ms: 7 spikes at samples ≤ 0.5 ms apart, 3 at 2; traubhh at 8 nA: 20 at ≤ 0.4,
16 at 0.5; hh at 10, 50, 150 µA/cm² and traubhh at 8, 15, 30 nA, up to 660 Hz, count the same at 0.025, 0.1
and 0.2 ms). Each --dt step is sampled k = ⌈dt / SPIKE_SAMPLE_DT⌉ times (`_samples_per_step`); each sample is
its own Diffrax solve, so a run costs about k times one sampled at --dt."""


class Solver(enum.StrEnum):
    """How `diffbrain simulate` integrates the model."""

    exp_euler = "exp-euler"
    tsit5 = "tsit5"
    kvaerno5 = "kvaerno5"


def _show_version(value: bool) -> None:
    if value:
        _out.print(f"diffbrain {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", help="Show the version and exit.", callback=_show_version, is_eager=True),
    ] = False,
) -> None:
    """Differentiable brain models in JAX + Equinox: the model zoo, simulation, fitting, benchmarks."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    _err.print(f"[bold red]Error:[/] {escape(message)}")
    return typer.Exit(code=code)


def _format_value(value) -> str:
    if isinstance(value, float | int):
        return f"{value:g}"
    import numpy as np

    array = np.asarray(value)
    return f"array{list(array.shape)} in [{array.min():g}, {array.max():g}]"


def _surrogate_row(model) -> tuple[str, str] | None:
    from diffbrain.zoo import describe

    spike_fn = getattr(model, "spike_fn", None)
    if spike_fn is None:
        return None
    settings = ", ".join(f"{p.name}={_format_value(p.value)}" for p in describe(spike_fn))
    return "spike_fn", f"{type(spike_fn).__name__}({settings})"


@app.command()
def models() -> None:
    """List every registered model with its parameters, default values and units."""
    from diffbrain.zoo import describe, registry

    table = Table(title="Neuron models  (run one: diffbrain simulate MODEL)", title_justify="left")
    table.add_column("model", no_wrap=True)  # whole, to copy into `diffbrain simulate MODEL`
    for column in ("parameter", "default", "unit", "meaning"):
        table.add_column(column, overflow="fold")
    for entry in registry.NEURONS.values():
        model = entry.make()
        table.add_row(f"[bold cyan]{entry.name}[/]", "", "", "", f"[bold]{escape(entry.summary)}[/]")
        for info in describe(model):
            table.add_row("", info.name, _format_value(info.value), escape(info.unit), escape(info.doc))
        surrogate = _surrogate_row(model)
        if surrogate is not None:
            table.add_row("", surrogate[0], escape(surrogate[1]), "", "surrogate spike function")
        unit = escape(model.input_unit)
        table.add_row("", "[dim]--current[/]", f"{entry.current:g}", unit, "[dim]default step current[/]")
        table.add_row("", "[dim]--duration[/]", f"{entry.duration:g}", "ms", "[dim]default simulated time[/]")
        table.add_row(
            "", "[dim]--dt[/]", f"{entry.dt:g}", "ms", "[dim]default time step[/]", end_section=True
        )
    _out.print(table)

    table = Table(title="Synapse models", title_justify="left")
    table.add_column("synapse", no_wrap=True)
    for column in ("parameter", "default", "unit", "meaning"):
        table.add_column(column, overflow="fold")
    for name, cls in registry.SYNAPSES.items():
        try:
            rows = describe(cls())
        except (TypeError, ValueError):
            rows = []
        table.add_row(f"[bold cyan]{escape(name)}[/]", "", "", "", escape(_first_line(cls.__doc__)))
        for info in rows:
            table.add_row("", info.name, _format_value(info.value), escape(info.unit), escape(info.doc))
        table.add_section()
    _out.print(table)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0].replace("``", "")


def _check_number(option: str, value: float, unit: str, positive: bool) -> None:
    if not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number ({unit}), got {value}.", param_hint=f"'{option}'")
    if positive and value <= 0:
        raise typer.BadParameter(f"must be > 0 {unit}, got {value:g}.", param_hint=f"'{option}'")


def whole_steps(option: str, span: float, dt: float) -> int:
    """The number of ``dt`` steps in ``span`` (both ms), or a `typer.BadParameter` naming ``option`` when
    ``span`` is shorter than one step or not a multiple of ``dt``."""
    if span < dt:
        raise typer.BadParameter(
            f"{span:g} ms is shorter than one time step (--dt {dt:g} ms); pass at least {dt:g}.",
            param_hint=f"'{option}'",
        )
    from .zoo._checks import whole_steps as steps_in  # the networks' rule

    n_steps = steps_in(span, dt)
    if n_steps is None:
        ratio = span / dt
        fix = f"pass e.g. {round(ratio) * dt:g}" if math.isfinite(ratio) else "raise --dt"
        raise typer.BadParameter(
            f"{span:g} ms is not a multiple of dt = {dt:g} ms; {fix}.", param_hint=f"'{option}'"
        )
    return n_steps


def _number_of_steps(duration: float, dt: float) -> int:
    n_steps = whole_steps("--duration", duration, dt)
    if n_steps > _MAX_STEPS:
        raise typer.BadParameter(
            f"{duration:g} ms at --dt {dt:g} ms is {n_steps:,} steps (limit {_MAX_STEPS:,}); "
            "shorten --duration or raise --dt.",
            param_hint="'--duration'",
        )
    return n_steps


def _steps_of_default_duration(model: str, duration: float, dt: float) -> int:
    """`_number_of_steps` of ``model``'s default duration: when it fails, the --dt given is to blame."""
    from .zoo._checks import whole_steps as steps_in

    n_steps = steps_in(duration, dt) if dt <= duration else None
    if n_steps is not None and n_steps <= _MAX_STEPS:
        return n_steps
    problem = (
        "is longer than that"
        if dt > duration
        else "does not divide it"
        if n_steps is None
        else f"makes it {n_steps:,} steps (limit {_MAX_STEPS:,})"
    )
    raise typer.BadParameter(
        f"{model} runs for {duration:g} ms unless --duration says otherwise, and {dt:g} ms {problem}; "
        "pass another --dt, or a --duration that is a multiple of it.",
        param_hint="'--dt'",
    )


def check_seed(seed: int) -> None:
    """Refuse a ``--seed`` outside ``0 … 2³² − 1`` with a `typer.BadParameter`: `jax.random.key` keeps only
    a seed's low 32 bits (without x64), so any other seed would repeat one of these (2³² runs as 0, −1 as
    2³² − 1)."""
    if not 0 <= seed < 2**32:
        raise typer.BadParameter(
            f"must lie in 0 … 2³² − 1 = {2**32 - 1} (only a seed's low 32 bits reach jax.random.key, so any "
            f"other would repeat one of these), got {seed}.",
            param_hint="'--seed'",
        )


def check_output(option: str, path: Path | None) -> None:
    """Before any work: check a file can be written at ``path`` (its missing folders are made and removed
    again, so a run refused later leaves none; `write_outputs` makes them), or raise a `typer.BadParameter`
    naming ``option`` (so a long run never ends with nowhere to write). ``None`` (the option not given)
    passes."""
    if path is None:
        return
    if is_stream(path):  # /dev/null, a FIFO, /dev/stdout: written into, not replaced
        if not os.access(path, os.W_OK):
            raise typer.BadParameter(f"cannot write {path}: permission denied.", param_hint=f"'{option}'")
        return
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a folder; give a file name.", param_hint=f"'{option}'")
    folder = next(folder for folder in (path.parent, *path.parent.parents) if folder.exists())
    if not folder.is_dir():
        raise typer.BadParameter(
            f"cannot write {path}: {folder} is a file, not a folder.", param_hint=f"'{option}'"
        )
    missing = [parent for parent in (path.parent, *path.parent.parents) if not parent.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or error
        raise typer.BadParameter(
            f"cannot create {path.parent}: {reason}.", param_hint=f"'{option}'"
        ) from None
    finally:
        for made in missing:  # the deepest first
            with contextlib.suppress(OSError):
                made.rmdir()
    if not os.access(folder, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write {path}: {folder} is not writable.", param_hint=f"'{option}'")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return a.resolve() == b.resolve()


def check_distinct(outputs: dict[str, Path | None], inputs: dict[str, Path | None] | None = None) -> None:
    """Before any work: refuse two of ``outputs`` (option → path) that name one file, or an output that names
    one of the ``inputs`` files, with a `typer.BadParameter` naming both options (the later write would
    replace the other file without a word). Devices and FIFOs (``/dev/null``) may be named twice."""
    given = {option: path for option, path in (inputs or {}).items() if path is not None}
    for option, path in outputs.items():
        if path is None or is_stream(path):
            continue
        for other, seen in given.items():
            if not _same_file(path, seen):
                continue
            if other in (inputs or {}):
                message = f"{path} is the {other} file, which it would replace; give {option} another file."
            else:
                message = f"{other} and {option} both name {path}; give each a file of its own."
            raise typer.BadParameter(message, param_hint=f"'{option}'")
        given[option] = path


def write_outputs(outputs) -> None:
    """After the work: make each ``(option, path, write, note)``'s folder and call its ``write()``; a failure
    is reported naming its option and the other outputs are still written. Exit status 1 if any failed."""
    failed = False
    for option, path, write, note in outputs:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write()
        except OSError as error:
            _err.print(
                f"[bold red]Error:[/] {option}: cannot write {escape(str(path))}: "
                f"{escape(str(error.strerror or error))}."
            )
            failed = True
        else:
            _out.print(f"wrote {escape(str(path))}{escape(note)}")
    if failed:
        raise typer.Exit(code=1)


def save_png(figure, path: Path, dpi: int) -> None:
    """``figure`` as a PNG, written atomically."""
    write_atomically(path, lambda file: figure.savefig(file, format="png", dpi=dpi), "wb")


def save_csv(path: Path, table, header: str, fmt: str) -> None:
    """A numeric table as CSV under a one-line header, written atomically."""
    import numpy as np

    write_atomically(
        path, lambda file: np.savetxt(file, table, delimiter=",", header=header, comments="", fmt=fmt), "w"
    )


def _runtime_message(error: RuntimeError) -> str:
    """The message of a failed `eqx.error_if` check, without JAX's stack dump around it."""
    text = str(error)
    match = re.search(r"EquinoxRuntimeError: (.+)", text)
    return match.group(1).strip() if match else text.strip().splitlines()[0]


def _write_csv(path: Path, t, voltage, spikes) -> None:
    import numpy as np

    # 12 digits for t: k·dt exactly as dt was given (0.3, not 0.30000000000000004) up to the step limit
    save_csv(path, np.column_stack([t, voltage, spikes]), "t_ms,V_mV,spike", "%.12g,%.9g,%.9g")


def _write_plot(
    path: Path, title: str, t, voltage, spikes, current: float, input_unit: str, fine=None
) -> None:
    """V (mV) over ``t`` (ms) with a tick at each step holding a spike, and the step current below.
    ``fine``: ``(times, V)`` drawn as the voltage instead, an adaptive solve's samples between the steps
    (at a coarse ``dt`` the steps' V alone misses the spikes)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 5), layout="constrained")
    FigureCanvasAgg(figure)
    v_axis, i_axis = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    line_t, line_V = (t, voltage) if fine is None else fine
    v_axis.plot(line_t, line_V, lw=0.8, color="tab:blue")
    spike_times = t[spikes > 0]
    if spike_times.size:
        top = np.max(line_V) + 0.05 * (np.ptp(line_V) + 1.0)
        v_axis.plot(spike_times, np.full_like(spike_times, top), "|", color="tab:red", ms=10)
    v_axis.set_ylabel("membrane potential V (mV)")
    i_axis.step(np.concatenate([[0.0], t]), np.full(t.size + 1, current), where="pre", color="tab:gray")
    i_axis.set_ylim(*_padded_range(0.0, current))
    i_axis.set_ylabel(f"current ({input_unit})")
    i_axis.set_xlabel("time (ms)")
    figure.suptitle(title, fontsize=9)
    save_png(figure, path, dpi=120)


def _padded_range(a: float, b: float) -> tuple[float, float]:
    low, high = min(a, b), max(a, b)
    pad = 0.1 * (high - low) or 1.0
    return low - pad, high + pad


def _plot_title(name: str, summary: str, model, n_spikes: int, rate: float) -> str:
    from diffbrain.zoo import describe

    settings = ", ".join(f"{p.name}={_format_value(p.value)} {p.unit}" for p in describe(model))
    header = f"{name}: {summary}  ({n_spikes} spikes, {rate:.4g} Hz)"
    return header + "\n" + "\n".join(textwrap.wrap(settings, 130))


@app.command()
def simulate(
    model: Annotated[
        str,
        typer.Argument(
            help="Neuron model, as listed by `diffbrain models`, or a network: coba, cuba, multiarea, "
            "microcircuit."
        ),
    ],
    current: Annotated[
        float | None,
        typer.Option(
            help="Step current in the model's input unit (default: the model's; see `diffbrain models`)"
        ),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Simulated time, ms (default: the model's; see `diffbrain models`)")
    ] = None,
    dt: Annotated[
        float | None,
        typer.Option(
            help="Time step, ms (default: the model's; see `diffbrain models`). With --solver tsit5/kvaerno5 "
            "the interval of the trace printed and written: the adaptive solver chooses its own steps and is "
            f"sampled every dt/k ms, k = ⌈dt / {SPIKE_SAMPLE_DT:g}⌉, and spikes are counted where V crosses "
            "the threshold between those samples (--plot draws V at every sample). Networks: default 0.1; "
            "coba and microcircuit take at most 0.5 ms, cuba 1 ms, multiarea less than its shortest "
            "long-range delay (--dt ≤ 1.428 for the Markov connectome)."
        ),
    ] = None,
    solver: Annotated[
        Solver,
        typer.Option(help="exp-euler: fixed-step `zoo.simulate`; tsit5/kvaerno5: Diffrax `zoo.solve`."),
    ] = Solver.exp_euler,
    plot: Annotated[
        Path | None,
        typer.Option(parser=output_file, metavar="PATH", help="Write a PNG of voltage, spikes and current."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            parser=output_file,
            metavar="PATH",
            help="Write a CSV. Neuron: the trace (t_ms: the end of the step, V_mV: V then, spike: the spikes "
            "within the step); network: the population rates per --bin (t_ms: the bin's centre, then one "
            "column per population, Hz).",
        ),
    ] = None,
    float64: Annotated[bool, typer.Option("--float64", help="Simulate in double precision.")] = False,
    scale: Annotated[
        float | None,
        typer.Option(
            help="Network: size relative to the published model (default: coba/cuba 1, multiarea 0.025, "
            "microcircuit 0.1)."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Network: seed of wiring, initial state, background (default 0).")
    ] = None,
    raster: Annotated[
        Path | None,
        typer.Option(
            parser=output_file,
            metavar="PATH",
            help="Network: write a PNG, a raster above the population rates.",
        ),
    ] = None,
    bin_ms: Annotated[
        float | None,
        typer.Option(
            "--bin",
            help="Network: rate bin of --raster/--out (only with them), ms, a multiple of --dt (default 5); "
            "a partial bin at the end of the run is left out.",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="multiarea/microcircuit: connectome folder (default $DIFFBRAIN_DATA/<folder>, else "
            "../shared/data/<folder> beside the source checkout)."
        ),
    ] = None,
    pulse: Annotated[
        str | None,
        typer.Option(
            metavar="AREA",
            help="multiarea: add 6.3 mV of drive into AREA's excitatory neurons from 100 to 200 ms (e.g. V1, "
            "Joglekar et al.'s stimulus). Default: no pulse, the spontaneous activity.",
        ),
    ] = None,
) -> None:
    """Simulate a neuron under a step current, or a spiking network; print spike counts and rates.

    Networks (`coba`, `cuba`, `multiarea`, `microcircuit`) take `--duration` (default 1000 ms), `--dt`
    (default 0.1 ms), `--scale`, `--seed`, `--raster`, `--out` (population rates as CSV), `--bin`, `--data`;
    multiarea also `--pulse` (none unless given).
    """
    from diffbrain import _cli_networks
    from diffbrain.zoo import registry

    neuron_options = {
        "--current": current is not None,
        "--solver": solver is not Solver.exp_euler,
        "--plot": plot is not None,
        "--float64": float64,
    }
    network_options = {
        "--scale": scale is not None,
        "--seed": seed is not None,
        "--raster": raster is not None,
        "--bin": bin_ms is not None,
        "--data": data is not None,
        "--pulse": pulse is not None,
    }
    is_network = model in _cli_networks.NETWORKS
    misplaced = [name for name, given in (neuron_options if is_network else network_options).items() if given]
    if misplaced:
        kind = f"a single neuron, not the {model} network" if is_network else "networks, not a single neuron"
        raise _fail(f"{', '.join(misplaced)} applies to {kind}; leave it out.")
    if is_network:
        _cli_networks.simulate_network(
            model,
            duration_ms=duration,
            scale=scale,
            dt=0.1 if dt is None else dt,
            seed=0 if seed is None else seed,
            raster=raster,
            out=out,
            bin_ms=bin_ms,
            data=data,
            pulse=pulse,
        )
        return

    try:
        entry = registry.get_neuron(model)
    except ValueError as error:
        raise _fail(f"{error} Networks: {', '.join(_cli_networks.NETWORKS)}.") from None
    current = entry.current if current is None else current
    dt = entry.dt if dt is None else dt
    _check_number("--current", current, "in the model's input unit", positive=False)
    _check_number("--dt", dt, "ms", positive=True)
    if duration is None:
        duration = entry.duration
        n_steps = _steps_of_default_duration(entry.name, duration, dt)
    else:
        _check_number("--duration", duration, "ms", positive=True)
        n_steps = _number_of_steps(duration, dt)
    check_distinct({"--out": out, "--plot": plot})
    check_output("--out", out)
    check_output("--plot", plot)

    import jax
    import jax.numpy as jnp
    import numpy as np

    from diffbrain import zoo

    if float64:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if float64 else jnp.float32
    if abs(current) > float(jnp.finfo(dtype).max):
        raise typer.BadParameter(
            f"{current:g} is beyond {jnp.dtype(dtype).name}'s range; pass a smaller current"
            + ("." if float64 else " or --float64."),
            param_hint="'--current'",
        )
    try:
        neuron = zoo.astype(entry.make(), dtype)
    except (TypeError, ValueError) as error:
        raise _fail(str(error)) from None
    if solver is not Solver.exp_euler:
        _check_adaptive_run(entry.name, neuron, solver, n_steps, dt)
    unit = neuron.input_unit
    _out.print(f"[bold cyan]{entry.name}[/]: {escape(entry.summary)}")
    _out.print(
        f"step current {current:g} {escape(unit)} for {n_steps * dt:g} ms; dt {dt:g} ms ({n_steps} steps); "
        f"{solver.value}; {jnp.dtype(dtype).name}"
    )
    inputs = jnp.full(n_steps, current, dtype=dtype)
    start = time.perf_counter()
    try:
        fine = None  # an adaptive solve's samples between the steps, for the plot
        if solver is Solver.exp_euler:
            trace = jax.block_until_ready(zoo.simulate(neuron, inputs, dt))
            voltage, spikes = np.asarray(trace.V), np.asarray(trace.spikes)
        else:
            voltage, spikes, fine = _solve_finely(neuron, inputs, dt, solver.value)
    except (TypeError, ValueError) as error:
        raise _fail(f"{entry.name} with --solver {solver.value}: {error}") from None
    except RuntimeError as error:
        message = _runtime_message(error)
        if "check_finite" in message:  # zoo.simulate's NaN check advises its arguments: the options instead
            message = f"{message.split('. ')[0]}. Reduce --dt or --current."
        raise _fail(f"the simulation failed: {message}", code=1) from None
    wall = time.perf_counter() - start

    # on the host in float64: trace.t has the simulation's float type, and float32 repeats sample times
    # past 2²⁴ steps (2·10⁷ steps of 1 ms held 1.6 million repeated times)
    t = np.arange(1, voltage.shape[0] + 1) * dt
    n_spikes = int(spikes.sum())
    rate = n_spikes / (n_steps * dt) * 1000.0
    _out.print(
        f"spikes: [bold]{n_spikes}[/]   rate: [bold]{rate:.4g} Hz[/]   "
        f"wall time: {wall:.3g} s (including compilation)"
    )
    outputs = []
    if out is not None:
        outputs.append(
            (
                "--out",
                out,
                lambda: _write_csv(out, t, voltage, spikes),
                f" ({t.size} rows: t_ms, V_mV, spike)",
            )
        )
    if plot is not None:
        title = _plot_title(entry.name, entry.summary, neuron, n_spikes, rate)
        outputs.append(
            ("--plot", plot, lambda: _write_plot(plot, title, t, voltage, spikes, current, unit, fine), "")
        )
    write_outputs(outputs)


def _check_adaptive_run(name: str, neuron, solver: Solver, n_steps: int, dt: float) -> None:
    """Refuse --solver tsit5/kvaerno5 for a model with resets (`zoo.solve` integrates continuous models only),
    then a run of more than `_MAX_STEPS` samples (`_samples_per_step`)."""
    from diffbrain import zoo

    if not isinstance(neuron, zoo.AbstractContinuousNeuron):
        raise typer.BadParameter(
            f"{name} resets V at each spike, which the adaptive solvers (tsit5, kvaerno5) cannot integrate; "
            "leave out --solver (exp-euler).",
            param_hint="'--solver'",
        )
    n_samples = n_steps * _samples_per_step(dt)
    if n_samples > _MAX_STEPS:
        raise typer.BadParameter(
            f"{n_steps * dt:g} ms with --solver {solver.value} is {n_samples:,} samples "
            f"(limit {_MAX_STEPS:,}): spikes are counted on samples at most {SPIKE_SAMPLE_DT:g} ms apart; "
            "shorten --duration.",
            param_hint="'--duration'",
        )


def _samples_per_step(dt: float) -> int:
    """How many samples `_solve_finely` takes per ``dt`` ms step: k = ⌈dt / `SPIKE_SAMPLE_DT`⌉ (a ``dt`` a
    hair above a multiple of it, as 0.1 / 0.025 = 4.000000000000001, counts as that multiple)."""
    return max(1, math.ceil(dt / SPIKE_SAMPLE_DT - 1e-9))


def _solve_finely(neuron, inputs, dt: float, solver: str):
    """`zoo.solve` of ``neuron`` under ``inputs`` (one per ``dt`` ms step), sampled k = `_samples_per_step`
    times per step so that spikes are counted on samples at most `SPIKE_SAMPLE_DT` apart; returns V at every
    k-th sample (the ``dt`` grid), the spikes counted within each step, and ``(times, V)`` of every sample,
    as NumPy arrays."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from diffbrain import zoo

    k = _samples_per_step(dt)
    trace = jax.block_until_ready(zoo.solve(neuron, jnp.repeat(inputs, k), dt / k, solver=solver))
    every_sample = np.asarray(trace.V)
    spikes = np.asarray(trace.spikes).reshape(-1, k).sum(axis=1)
    times = np.arange(1, every_sample.shape[0] + 1) * (dt / k)
    return every_sample[k - 1 :: k], spikes, (times, every_sample)


class Loss(enum.StrEnum):
    """`diffbrain fit --loss`; `_LOSSES` maps each to its `diffbrain.fit` loss class."""

    voltage = "voltage"
    subthreshold = "subthreshold"
    van_rossum = "van-rossum"


_LOSSES = {Loss.voltage: "VoltageMSE", Loss.subthreshold: "SubthresholdMSE", Loss.van_rossum: "VanRossum"}


class FitMethod(enum.StrEnum):
    """`diffbrain fit --method`: every name of `diffbrain.fit.METHODS` (ng_*: with nevergrad installed)."""

    lbfgsb = "lbfgsb"
    lbfgs = "lbfgs"
    adam = "adam"
    cmaes = "cmaes"
    de = "de"
    pso = "pso"
    random = "random"
    ng_de = "ng_de"
    ng_pso = "ng_pso"
    ng_twopointsde = "ng_twopointsde"
    ng_ngopt = "ng_ngopt"


class DataFormat(enum.StrEnum):
    """`diffbrain fit --format`: the loaders of `diffbrain.fit`."""

    nwb = "nwb"
    abf = "abf"
    ibw = "ibw"
    npz = "npz"
    csv = "csv"


class CurrentUnit(enum.StrEnum):
    """`diffbrain fit --current-unit` of a CSV current table."""

    A = "A"
    mA = "mA"
    uA = "uA"
    nA = "nA"
    pA = "pA"
    fA = "fA"


def _as_free_option(message: str) -> str:
    """`diffbrain.fit.free_params`' message in --free's terms: ``free['C']`` = (-10.0, 10.0) → C=-10:10."""
    return re.sub(
        r"`free\['(\w+)'\]` = \(([^,()]+), ([^()]+)\)",
        lambda match: f"{match[1]}={float(match[2]):g}:{float(match[3]):g}",
        message,
    )


def _parse_free(spec: str, model) -> dict[str, tuple[float, float]]:
    """``"a=0:0.1,k1=0.1:1,g_L"`` → bounds; a bare name gets [v/10, 10·v] around its value v ≠ 0."""
    from diffbrain.zoo._param import parameters

    known = parameters(model)
    free = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, bounds = item.partition("=")
        name = name.strip()
        if name not in known:
            raise typer.BadParameter(
                f"{type(model).__name__} has no parameter {name!r}; its parameters are {sorted(known)}.",
                param_hint="'--free'",
            )
        if name in free:
            raise typer.BadParameter(
                f"{name!r} is named twice; give each parameter once.", param_hint="'--free'"
            )
        if bounds:
            try:
                low, high = (float(x) for x in bounds.split(":"))
            except ValueError:
                raise typer.BadParameter(
                    f"{item!r}: write NAME=LOW:HIGH (e.g. g_L=1:50).", param_hint="'--free'"
                ) from None
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise typer.BadParameter(
                    f"{item!r}: the bounds must be finite with LOW < HIGH.", param_hint="'--free'"
                )
        else:
            value = known[name]
            if float(value) == 0:
                raise typer.BadParameter(
                    f"{name!r} needs bounds (NAME=LOW:HIGH): its default is zero.",
                    param_hint="'--free'",
                )
            low, high = sorted((float(value) / 10, float(value) * 10))
        free[name] = (low, high)
    if not free:
        raise typer.BadParameter("name at least one parameter, e.g. --free g_L=1:50,C", param_hint="'--free'")
    return free


def _write_fit_plot(path: Path, neuron, cell, bounds, result, input_scale) -> None:
    import jax
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from diffbrain import fit, zoo

    with jax.enable_x64(True):
        model64 = zoo.astype(neuron, jax.numpy.float64)
        inputs, target = fit.prepare(model64, cell, input_scale=input_scale)
        free = fit.free_params(model64, bounds)
        objective = fit.Objective(model64, free, inputs, target, fit.VoltageMSE())
        V, _ = objective.simulate(free.from_model(result.model))
    target = np.asarray(objective.target.voltage)
    V = np.asarray(V)
    t = np.arange(target.shape[0]) * objective.target.dt
    n = target.shape[1]
    figure = Figure(figsize=(9, 2.2 * n), layout="constrained")
    FigureCanvasAgg(figure)
    axes = np.atleast_1d(figure.subplots(n, 1, sharex=True, squeeze=False)[:, 0])
    for sweep, axis in enumerate(axes):
        axis.plot(t, target[:, sweep], lw=0.8, color="black", label="recorded")
        axis.plot(t, V[:, sweep], lw=0.8, color="tab:red", label="fit")
        axis.set_ylabel(f"sweep {sweep}\nV (mV)")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("time (ms)")
    figure.suptitle(
        f"{result.method}: loss {result.loss:.4g}; "
        + ", ".join(f"{k}={v:.4g}" for k, v in result.params.items()),
        fontsize=9,
    )
    save_png(figure, path, dpi=110)


@app.command("bench", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench_command(
    context: typer.Context,
    suite: Annotated[
        str,
        typer.Argument(
            help="throughput | ops | fit | fit_cells | fit_dimension | learn | sim | network_gradient"
        ),
    ],
    quick: Annotated[bool, typer.Option(help="The suite's small grid (minutes, not hours).")] = False,
    out: Annotated[
        Path,
        typer.Option(
            parser=output_folder, metavar="PATH", help="Results folder; records merge into OUT/SUITE.csv."
        ),
    ] = Path("bench-results"),
    compare: Annotated[
        Path | None,
        typer.Option(
            help="Baseline results CSV of the same suite: flag cases > 20 % slower relative to the suite's "
            "reference method measured in the same run, references > 50 % slower in absolute time on the "
            "same machine, and methods missing now; exit status 1 if any, or if nothing could be compared."
        ),
    ] = None,
) -> None:
    """Run a benchmark suite side by side with its peers; other options go to the suite.

    For example `diffbrain bench ops --quick --firing 0.02`; `python -m diffbrain.bench -h` lists them.
    """
    from diffbrain.bench.__main__ import main as run_suite

    options = [
        *(["--quick"] if quick else []),
        "--out",
        str(out),
        *(["--compare", str(compare)] if compare else []),
    ]
    run_suite([suite, *options, *context.args], prog="diffbrain bench")


@app.command()
def leaderboard(
    results: Annotated[list[Path], typer.Argument(help="Results folders written by `diffbrain bench`.")],
    out: Annotated[
        Path,
        typer.Option(parser=output_folder, metavar="PATH", help="Leaderboard folder (README.md, CSV, PNG)."),
    ] = Path("leaderboard"),
    note: Annotated[str, typer.Option(help="A paragraph under the title, e.g. the machine's load.")] = "",
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Drop the suites of the leaderboard in --out that RESULTS has no records of (refused "
            "without it).",
        ),
    ] = False,
) -> None:
    """Render the leaderboard (markdown tables, CSV, plots) from benchmark results."""
    from diffbrain.bench import leaderboard as board

    try:
        readme = board.render(results, out, note, replace=replace)
    except (ValueError, OSError) as error:
        raise _fail(str(error)) from None
    _out.print(f"wrote {escape(str(readme))} and its tables and plots")


@app.command("fit")
def fit_command(
    model: Annotated[str, typer.Argument(help="Model name, as listed by `diffbrain models`.")],
    data: Annotated[
        Path,
        typer.Option(
            help="Recording file (NWB, ABF, IBW, NPZ), or for CSV the current table: one row per sweep, the "
            "first column the sweep index (unless --no-index-column), then the samples."
        ),
    ],
    free: Annotated[
        str,
        typer.Option(help="Free parameters: NAME=LOW:HIGH or NAME (then v/10 to 10·v), comma-separated."),
    ],
    data_format: Annotated[
        DataFormat | None,
        typer.Option("--format", case_sensitive=False, help="The file format (default: the extension)."),
    ] = None,
    voltage: Annotated[
        Path | None, typer.Option(help="CSV only: the voltage table (mV), laid out as the current table.")
    ] = None,
    dt: Annotated[
        float | None, typer.Option(help="CSV, or NPZ without a stored dt: sampling interval, ms.")
    ] = None,
    current_unit: Annotated[
        CurrentUnit, typer.Option(help="CSV only: unit of the current table.")
    ] = CurrentUnit.pA,
    index_column: Annotated[
        bool,
        typer.Option(
            help="CSV only: the first column of both tables is each row's sweep index (--no-index-column: "
            "every column is a sample)."
        ),
    ] = True,
    method: Annotated[
        FitMethod, typer.Option(help="The optimiser (ng_*: needs nevergrad).")
    ] = FitMethod.lbfgsb,
    starts: Annotated[
        int,
        typer.Option(
            min=1,
            help="Independent starts; lbfgs and lbfgsb add fresh random restarts while --budget is left.",
        ),
    ] = 4,
    budget: Annotated[
        int, typer.Option(min=1, help="Simulations allowed (a value-and-gradient counts as one).")
    ] = 1000,
    loss: Annotated[Loss, typer.Option(help="What is compared with the recording.")] = Loss.voltage,
    input_scale: Annotated[
        float | None, typer.Option(help="Factor from pA to the model's input unit (needed unless pA or nA).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the starts and the search.")] = 0,
    devices: Annotated[
        int | None,
        typer.Option(min=1, help="Devices to split batched starts/populations over (default: all; 1: off)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(parser=output_file, metavar="PATH", help="Write the FitResult as JSON.")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            parser=output_file, metavar="PATH", help="Write a PNG of recorded vs fitted voltage per sweep."
        ),
    ] = None,
) -> None:
    """Fit a model's free parameters to recorded sweeps; print the best parameters and loss."""
    from diffbrain.zoo import registry

    try:
        entry = registry.get_neuron(model)
    except ValueError as error:
        raise _fail(str(error)) from None
    check_seed(seed)
    if method.value.startswith("ng_"):
        from diffbrain.fit.search import nevergrad_available

        if not nevergrad_available():
            raise typer.BadParameter(
                f"{method.value} needs the optional package nevergrad: pip install nevergrad, or choose "
                "another --method.",
                param_hint="'--method'",
            )
    if input_scale is not None:
        _check_number("--input-scale", input_scale, "from pA to the model's input unit", positive=True)
    if data.is_dir():
        raise typer.BadParameter(f"{data} is a folder; pass a recording file.", param_hint="'--data'")
    suffix = data.suffix.lstrip(".").lower()
    kind = data_format or (DataFormat(suffix) if suffix in {f.value for f in DataFormat} else None)
    if kind is DataFormat.csv:
        if voltage is None or dt is None:
            raise typer.BadParameter("CSV data needs --voltage and --dt.", param_hint="'--data'")
        _check_number("--dt", dt, "ms", positive=True)
    elif kind is None:
        raise typer.BadParameter(
            f"cannot tell the format of {data} from its extension; pass --format ({' | '.join(DataFormat)}).",
            param_hint="'--data'",
        )
    else:
        given = {"--voltage": voltage is not None, "--current-unit": current_unit is not CurrentUnit.pA}
        given["--no-index-column"] = not index_column
        given["--dt"] = dt is not None and kind is not DataFormat.npz
        wrong = [option for option, set_ in given.items() if set_]
        if wrong:
            raise typer.BadParameter(
                f"{wrong[0]} is for CSV data (and --dt for NPZ files without a stored dt); "
                f"{kind.value.upper()} files carry their own units and sampling interval.",
                param_hint=f"'{wrong[0]}'",
            )
    neuron = entry.make()
    bounds = _parse_free(free, neuron)
    check_distinct({"--out": out, "--plot": plot}, inputs={"--data": data, "--voltage": voltage})
    check_output("--out", out)
    check_output("--plot", plot)
    import jax

    from diffbrain import fit

    try:  # bounds the model refuses (C=-10:10), before the header announces the fit, in its float64
        with jax.enable_x64(True):
            fit.free_params(neuron, bounds)
    except ValueError as error:
        raise typer.BadParameter(_as_free_option(str(error)), param_hint="'--free'") from None
    try:
        if kind is DataFormat.csv:
            cell = fit.load_csv(data, voltage, dt, current_unit=current_unit.value, index_column=index_column)
        else:
            cell = fit.load(data, kind.value, **({} if dt is None else {"dt": dt}))
    except (ValueError, FileNotFoundError) as error:
        raise _loading_error(str(error), data, voltage) from None
    if len(cell) == 0:
        raise typer.BadParameter(f"{data} holds no sweeps.", param_hint="'--data'")
    shortest = min(recording.n_samples for recording in cell)
    if kind is DataFormat.csv and shortest < 2:
        raise typer.BadParameter(
            f"{data} reads as {len(cell)} sweeps of {shortest} sample(s): a CSV table holds one row per "
            "sweep, the first column the sweep index; transpose a table with one column per sweep.",
            param_hint="'--data'",
        )
    _out.print(
        f"[bold cyan]{entry.name}[/]: {len(cell)} sweeps from {escape(str(data))}; {method}, "
        f"{starts} starts, budget {budget} simulations"
    )
    try:
        with _out.status("fitting…"), warnings.catch_warnings():
            # a fit without a finite loss is reported below, in the options' terms
            warnings.filterwarnings("ignore", "the fit: no start reached a finite loss", RuntimeWarning)
            result = fit.fit(
                neuron,
                cell,
                free=bounds,
                loss=getattr(fit, _LOSSES[loss])(),
                method=method.value,
                n_starts=starts,
                budget=budget,
                key=jax.random.key(seed),
                input_scale=input_scale,
                devices=devices,
            )
    except ValueError as error:
        # fit names its Python arguments; blame the option that sets one where the message names it
        options = {"devices": "--devices", "input_scale": "--input-scale", "budget": "--budget"}
        # a count is all --devices takes: not the list of devices or None fit also accepts
        message = str(error).replace(", a list of devices, or None for all", " (leave --devices out for all)")
        for name, option in options.items():  # `devices=99` → --devices 99
            with_value = re.compile(rf"`{name}(?:=([^`]*))?`")
            message = with_value.sub(lambda m, o=option: f"{o} {m[1]}" if m[1] else o, message)
        hint = next((option for option in options.values() if option in message), None)
        if hint is None:
            raise _fail(message) from None
        raise typer.BadParameter(message, param_hint=f"'{hint}'") from None
    if not math.isfinite(result.loss):
        raise _no_fit(result, budget, method, out, plot)
    table = Table(title=f"best of {len(result.starts)} starts: loss {result.loss:.6g}", title_justify="left")
    for column in ("parameter", "value", "bounds"):
        table.add_column(column)
    for name, value in result.params.items():
        table.add_row(name, f"{value:.6g}", f"[{bounds[name][0]:g}, {bounds[name][1]:g}]")
    _out.print(table)
    not_run = sum(start.status == "not run" for start in result.starts)
    _out.print(
        f"{result.simulations:g} simulations, {result.wall_time:.3g} s; {result.n_failed} failed starts"
        + (f", {not_run} not run (raise --budget)" if not_run else "")
    )
    outputs = []
    if out is not None:
        outputs.append(("--out", out, lambda: result.save(out), ""))
    if plot is not None:
        outputs.append(
            ("--plot", plot, lambda: _write_fit_plot(plot, neuron, cell, bounds, result, input_scale), "")
        )
    write_outputs(outputs)


def _loading_error(message: str, data: Path, voltage: Path | None) -> typer.BadParameter:
    """A loader's error in the options' terms, against the option it concerns: --voltage (its file), --dt
    or --data."""
    if "index_column=" in message:  # load_csv's index column: the option, and the layout it expects
        message = message.replace("index_column=True", "--index-column (the default)")
        message = message.replace("index_column=False", "--no-index-column")
        message += " A table holds one row per sweep: transpose one with a column per sweep."
    options = ["--data"] if f"{str(data)!r}" in message else []
    if voltage is not None and f"{str(voltage)!r}" in message:
        options.append("--voltage")
    if voltage is not None and message.startswith("Recording (file "):  # a CSV sweep's samples
        options = ["--voltage"] if "`voltage`" in message else ["--data"]
    if "`dt`" in message:
        message, options = message.replace("`dt`", "--dt"), ["--dt"]
    return typer.BadParameter(message, param_hint=" / ".join(f"'{o}'" for o in options or ["--data"]))


def _no_fit(result, budget: int, method: FitMethod, out: Path | None, plot: Path | None) -> typer.Exit:
    """Report a fit in which no start reached a finite loss (none ran, or every one failed) and write
    ``--out`` (the starts and why each stopped; not --plot: there is no fit to draw); the exit to raise."""
    failed = [start.message for start in result.starts if start.status == "failed"]
    if failed:
        _err.print(
            f"[bold red]Error:[/] no start reached a finite loss ({len(failed)} of {len(result.starts)} "
            f"failed; the first: {escape(failed[0])}). Check the --free bounds and the data for values that "
            "make the model blow up."
        )
    else:
        _err.print(
            f"[bold red]Error:[/] no start ran: --budget {budget} simulations did not pay for the first "
            f"evaluation of {method.value} (the search methods evaluate a whole population at once); raise "
            "--budget."
        )
    if out is not None:
        with contextlib.suppress(typer.Exit):  # a failed write is reported; the exit status is 1 anyway
            write_outputs([("--out", out, lambda: result.save(out), " (no fit: why each start stopped)")])
    if plot is not None:
        _err.print(f"--plot: {escape(str(plot))} not written: there is no fit to draw.")
    return typer.Exit(code=1)


def _is_under(path: object, folder: Path) -> bool:
    """Whether ``path`` (an OSError's file name: maybe None, or a descriptor) lies inside ``folder``."""
    if not isinstance(path, str | os.PathLike):
        return False
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


@app.command("reproduce")
def reproduce_command(
    quick: Annotated[bool, typer.Option(help="Small budgets: under 10 minutes on 2 CPU cores.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            parser=output_folder,
            metavar="<path>",
            help="Output folder: one folder per section and report.md.",
            show_default="reproduce; with --quick, reproduce-quick",
        ),
    ] = None,
) -> None:
    """Re-run the paper's workflow (fits, multi-area network, learning, benchmarks) and write a report.

    Finished sections with the same settings are reused, so an interrupted run resumes where it stopped.
    The data sets are read from $DIFFBRAIN_DATA (else ../shared/data beside the checkout); without the
    macaque connectome the run is refused before it starts.
    """
    from diffbrain import reproduce

    if out is None:  # a quick run never replaces the sections of a full one
        out = Path("reproduce-quick" if quick else "reproduce")
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file; pass a folder.", param_hint="'--out'")
    report = out / reproduce.REPORT
    if report.is_dir():
        raise typer.BadParameter(
            f"{report} is a folder, where the report is written; remove or rename it.", param_hint="'--out'"
        )
    check_output("--out", report)  # writable before any section runs
    try:
        reproduce.check_output_folder(out)
    except reproduce.OutputFolderError as error:
        raise typer.BadParameter(str(error), param_hint="'--out'") from None
    except OSError as error:  # a section folder that cannot be read
        reason = f"{error.strerror or error} ({error.filename})"
        raise typer.BadParameter(f"cannot read under {out}: {reason}.", param_hint="'--out'") from None
    budget = reproduce.QUICK if quick else reproduce.FULL
    try:  # missing connectome data, before the run is announced
        reproduce._refuse_missing_data(out, reproduce.section_keys(budget), None)
    except FileNotFoundError as error:
        raise _fail(str(error), code=1) from None
    expected = reproduce.expected_seconds(budget, out)
    _out.print(
        f"[bold]diffbrain reproduce[/] ({budget.name} budget) into {escape(str(out))}: expected duration "
        f"about {expected / 60:.0f} min on a 2-core CPU (finished sections are reused)"
    )
    start = time.perf_counter()
    try:
        report = reproduce.run(out, budget, log=lambda line: _out.print(escape(line)))
    except reproduce.OutputFolderError as error:  # another run took the folder since the check
        raise typer.BadParameter(str(error), param_hint="'--out'") from None
    except OSError as error:
        if isinstance(error, FileNotFoundError) and not any(
            _is_under(name, out) for name in (error.filename, error.filename2)
        ):  # missing data (the connectome): its message says where to put it
            raise _fail(str(error), code=1) from None
        raise _fail(
            f"cannot write under {out}: {error.strerror or error} ({error.filename}).", code=1
        ) from None
    except ValueError as error:
        raise _fail(str(error), code=1) from None
    table = Table(
        title=f"diffbrain reproduce ({budget.name}): {escape(str(report.path))}", title_justify="left"
    )
    for column in ("section", "quantity", "value", "unit"):
        table.add_column(column)
    shown = None
    for section, quantity, value, unit in report.summary:
        if shown is not None and section != shown:
            table.add_section()
        table.add_row(section if section != shown else "", escape(quantity), value, unit)
        shown = section
    _out.print(table)
    _out.print(f"wrote {escape(str(report.path))} in {time.perf_counter() - start:.0f} s")


app.command("train")(_cli_train.train)
