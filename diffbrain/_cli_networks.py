"""``diffbrain simulate coba|cuba|multiarea|microcircuit``: simulate a spiking network, print its rates.

`diffbrain.cli.simulate` checks the options common to neurons and networks, then calls `simulate_network`.
JAX and Matplotlib are imported when it runs, so ``diffbrain --help`` stays fast.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._data import shared_data

NETWORKS = {
    "coba": "Brette et al. (2007) COBA benchmark: 4,000 LIF neurons, conductance synapses (scale 1 = 4,000)",
    "cuba": "Brette et al. (2007) CUBA benchmark: 4,000 LIF neurons, current synapses (scale 1 = 4,000)",
    "multiarea": "Joglekar et al. (2018) macaque 29-area model (scale 1 = 2,000 neurons per area)",
    "microcircuit": "Potjans & Diesmann (2014) cortical microcircuit (scale 1 = 77,169 neurons)",
}
"""The networks `simulate_network` knows, with what ``--scale 1`` means."""
DEFAULT_SCALE = {"coba": 1.0, "cuba": 1.0, "multiarea": 0.025, "microcircuit": 0.1}
"""Sizes that run in seconds to a minute on a laptop CPU: 4,000, 4,000, 29 × 50 and 7,717 neurons."""
DATA_FOLDERS = {"multiarea": "conn-macaque-markov2014-29areas", "microcircuit": "conn-potjans-diesmann2014"}
"""The data each connectome model reads: ``--data``, else ``<folder>`` in `diffbrain._data.shared_data`
(``$DIFFBRAIN_DATA``, else ../shared/data beside the source checkout)."""
RECORDED = 400
"""About this many neurons are recorded for the raster, spread evenly over the populations."""
DEFAULT_DURATION = 1000.0
"""ms simulated unless --duration says otherwise."""
DEFAULT_BIN = 5.0
"""ms, the rate bin of --raster and --out unless --bin says otherwise."""
MAX_DT = {"coba": 0.5, "cuba": 1.0, "microcircuit": 0.5}
"""The largest --dt, ms, of the networks that have one. coba: with coarser steps its conductance synapses
make the rates run away (E rate, 4,000 neurons, seed 0, 240 ms: 16.4 Hz at dt 0.1 ms, 15.2 at 0.5, 14.4 at
0.6, 157 at 0.8, 143 at 1). cuba: coarser steps drift its rates up; 1 ms is a fifth of its 5 ms refractory
period and excitatory synaptic τ (E rate, 4,000 neurons, seed 0, 1000 ms: 5.03 Hz at dt 0.1 ms,
5.14 at 1, 5.69 at 2, 6.5 at 10, 8.13 at 20). microcircuit: `Microcircuit.build` refuses a coarser step.
multiarea's lies below its shortest long-range delay (`_shortest_delay`)."""
DT_REASONS = {
    "coba": "the coba network takes: with coarser steps its conductance synapses make the rates run away "
    "(about 150 Hz at 0.8–1 ms against 16 Hz at 0.1 ms)",
    "cuba": "the cuba network takes: coarser steps drift its rates up (E 5.7 Hz at 2 ms, 8.1 at 20, against "
    "5.0 at 0.1 ms)",
    "microcircuit": "the microcircuit takes (its own is 0.1 ms)",
}
"""Why each network of `MAX_DT` refuses a coarser --dt, as the refusal says it."""

_out = Console()


def _fail(message: str, option: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=f"'{option}'")


def _data_folder(name: str, data: Path | None) -> Path:
    if data is None:
        data = shared_data() / DATA_FOLDERS[name]
        if not data.is_dir():
            raise _fail(
                f"{name} needs its data, the {DATA_FOLDERS[name]} folder, which is not at {data} "
                "($DIFFBRAIN_DATA, else ../shared/data beside the checkout): pass --data FOLDER or set "
                "$DIFFBRAIN_DATA to the folder that holds it.",
                "--data",
            )
    if not data.exists():
        raise _fail(f"{data} does not exist; pass the {DATA_FOLDERS[name]} folder.", "--data")
    return data


def _recorded(sizes) -> list[int]:
    """Up to `RECORDED` neuron indices, evenly spaced within each population."""
    import numpy as np

    per_population = max(1, RECORDED // len(sizes))
    start, chosen = 0, []
    for size in sizes:
        chosen += np.unique(np.linspace(start, start + size - 1, min(size, per_population)).round()).tolist()
        start += size
    return [int(index) for index in chosen]


def _check_model(name: str, scale: float, dt: float, data: Path | None, pulse: str | None, duration: float):
    """Check what the network ``name`` is built from before anything is printed: read its data, check
    --scale, --dt (`MAX_DT`; multiarea: below its shortest long-range delay) and --pulse against it. Returns
    what `_simulate` builds from: None (coba, cuba), the connectome (multiarea) or the `Microcircuit`."""
    from diffbrain.zoo import networks

    if name in MAX_DT and dt > MAX_DT[name]:
        raise _fail(
            f"{_exact(dt)} ms is above {MAX_DT[name]:g} ms, the largest time step {DT_REASONS[name]}; "
            f"pass --dt ≤ {MAX_DT[name]:g}.",
            "--dt",
        )
    if name in ("coba", "cuba"):
        _check_ei_size(name, scale, round(4000 * scale))
        return None
    folder = _data_folder(name, data)
    if name == "multiarea":
        from diffbrain.zoo.networks.multiarea import N_REFERENCE, read_connectome

        connectome = _read(read_connectome, folder)
        n_per_area = round(N_REFERENCE * scale)
        smallest = _smallest_size(networks.MultiArea.build, "exc_fraction", 1, 1)
        if n_per_area < smallest:
            raise _fail(
                f"{scale:g} gives {n_per_area} neurons per area; an area needs at least {smallest} "
                f"(excitatory and inhibitory ones): pass --scale ≥ {smallest / N_REFERENCE:g}.",
                "--scale",
            )
        _check_multiarea_dt(connectome, dt)
        _check_pulse(pulse, connectome["areas"], duration, dt)
        return connectome
    from diffbrain.zoo.networks.microcircuit import Microcircuit, read_data

    params = _read(read_data, folder)
    try:
        return Microcircuit.from_data(params, scale=scale)
    except ValueError as error:  # it names its argument: `scale` = 0.0001 …; pass scale ≥ …
        message = str(error).replace("`scale` = ", "--scale ").replace("pass scale ", "pass --scale ")
        raise _fail(message, "--scale") from None


def _shortest_delay(connectome: dict) -> tuple[float, str, str, float]:
    """The shortest mean long-range delay of ``connectome`` (wiring distance / `MultiArea.build`'s default
    conduction speed), ms, with its source and target areas and the speed (m/s = mm/ms); infinite when no
    two areas are wired."""
    import inspect

    from diffbrain.zoo import networks
    from diffbrain.zoo.networks.multiarea import shortest_mean_delay

    speed = inspect.signature(networks.MultiArea.build).parameters["speed"].default
    areas = connectome["areas"]
    shortest, source, target = shortest_mean_delay(connectome["fln"], connectome["distance_mm"], speed)
    return shortest, areas[source], areas[target], speed


def _check_multiarea_dt(connectome: dict, dt: float) -> None:
    """--dt must lie below every wired pair's mean delay: each delay is drawn around its mean and redrawn
    until it exceeds one step (`MultiArea.build`), else a `typer.BadParameter` states the bound."""
    shortest, source, target, speed = _shortest_delay(connectome)
    if dt < shortest:
        return
    if shortest == 0:
        raise _fail(
            f"the connectome wires {source} to {target} at distance 0 mm, so their delay is 0 ms, and every "
            "long-range delay must exceed one step: no --dt is valid; pass --data whose wired areas lie "
            "apart.",
            "--data",
        )
    raise _fail(
        "the multiarea network draws each long-range delay around its pair's mean and redraws it until it "
        f"exceeds one step, so --dt must lie below the shortest mean delay: {shortest:.7g} ms, from {source} "
        f"to {target} (wiring distance / {speed:g} m/s conduction speed); got {_exact(dt)} ms. Pass --dt ≤ "
        f"{_digits_below(shortest):g}, e.g. {_round_step_below(shortest):g}.",
        "--dt",
    )


def _exact(value: float) -> str:
    """``value`` in the fewest digits that read back as it (``0.5000001``, not ``0.5`` as ``:g`` rounds)."""
    text = repr(float(value))
    return text.removesuffix(".0")


def _digits_below(limit: float) -> float:
    """The largest number of 4 significant digits below ``limit`` (> 0): a bound to print that is not
    rounded up past ``limit`` (1.428571 → 1.428, not 1.43)."""
    unit = 10.0 ** (math.floor(math.log10(limit)) - 3)  # of the 4th significant digit
    below = float(f"{math.floor(limit / unit) * unit:.4g}")
    return below if below < limit else float(f"{below - unit:.4g}")  # limit itself has ≤ 4 digits


def _round_step_below(limit: float) -> float:
    """The largest of 1, 2 or 5 × 10ᵏ ms below ``limit`` ms (> 0)."""
    exponent = math.floor(math.log10(limit))  # 10^exponent ≤ limit, so 0.5·10^exponent is below it
    steps = (float(f"{base * 10.0**exponent:.12g}") for base in (5, 2, 1, 0.5))
    return next(step for step in steps if step < limit)


def _pulse_shape() -> tuple[float, float, float]:
    """`MultiArea.pulse`'s default onset and length (ms) and amplitude (mV), as --pulse applies it."""
    import inspect

    from diffbrain.zoo import networks

    defaults = inspect.signature(networks.MultiArea.pulse).parameters
    return tuple(float(defaults[name].default) for name in ("start_ms", "duration_ms", "amplitude_mV"))


def _pulse_steps(dt: float) -> tuple[int, int]:
    """The steps at which --pulse's window (`_pulse_shape`) starts and stops at ``dt`` ms, rounded as the
    network rounds it (`steps_of`): it is on in steps ``start ≤ k < stop``."""
    from diffbrain.zoo.networks.network import steps_of

    start, length, _ = _pulse_shape()
    return int(steps_of(start, dt)), int(steps_of(start + length, dt))


def _check_pulse(pulse: str | None, areas, duration: float, dt: float) -> None:
    """--pulse must name an area of the connectome, and the run must last past the pulse's first step."""
    if pulse is None:
        return
    if pulse not in areas:
        raise _fail(f"{pulse!r} is not an area of the connectome; its areas: {', '.join(areas)}.", "--pulse")
    from diffbrain.zoo._checks import whole_steps

    n_steps = whole_steps(duration, dt) if dt <= duration else None
    if n_steps is None:  # refused next, by the --duration check
        return
    start, _, _ = _pulse_shape()
    start_step, _ = _pulse_steps(dt)
    if n_steps <= start_step:
        rounded = f" ({start:g} ms in whole steps of --dt {dt:g} ms)" if start_step * dt != start else ""
        raise _fail(
            f"the pulse into {pulse} starts at {start_step * dt:g} ms{rounded}, when the {duration:g} ms run "
            f"has ended; pass --duration ≥ {(start_step + 1) * dt:g} or leave --pulse out.",
            "--pulse",
        )


def _pulse_line(pulse: str | None, duration: float, dt: float) -> str:
    """The header line of a multiarea run saying whether and when the pulse is on, its times in whole steps
    of ``dt`` ms as the network rounds them."""
    _, _, amplitude = _pulse_shape()
    start_step, stop_step = _pulse_steps(dt)
    start, stop = start_step * dt, stop_step * dt
    if pulse is None:
        return (
            f"no pulse: spontaneous activity (--pulse AREA adds {amplitude:g} mV of drive into AREA's "
            f"excitatory neurons, {start:g} ms to {stop:g} ms)"
        )
    from diffbrain.zoo._checks import whole_steps

    until = (
        f"{stop:g} ms" if stop_step <= whole_steps(duration, dt) else f"the end of the run at {duration:g} ms"
    )
    return (
        f"pulse: {amplitude:g} mV of drive into {escape(pulse)}'s excitatory neurons, {start:g} ms to {until}"
    )


def _simulate(name: str, source, duration_ms: float, scale: float, dt: float, seed: int, pulse, raster):
    """Build network ``name`` from ``source`` (`_check_model`'s) and simulate it; returns the result and the
    reference rates (Hz) or None."""
    import jax

    from diffbrain.zoo import networks

    build_key, run_key = jax.random.split(jax.random.key(seed))
    if name in ("coba", "cuba"):
        n = round(4000 * scale)
        try:
            net = getattr(networks.EINetwork, name)(build_key, n=n)
        except ValueError as error:
            raise _fail(f"--scale {scale:g} gives {n} neurons: {error}", "--scale") from None
        record = _recorded(net.sizes) if raster else 0
        return networks.simulate(net, duration_ms, run_key, dt=dt, record=record), None
    if name == "multiarea":
        from diffbrain.zoo.networks.multiarea import N_REFERENCE

        n_per_area = round(N_REFERENCE * scale)
        try:
            model = networks.MultiArea.build(**source, n_per_area=n_per_area, key=build_key, dt=dt)
        except ValueError as error:
            if "`dt`" in str(error):
                raise _fail(str(error), "--dt") from None
            raise _fail(f"--scale {scale:g} ({n_per_area} neurons per area): {error}", "--scale") from None
        record = _recorded(model.network.sizes) if raster else 0
        return model.simulate(duration_ms, run_key, pulse=pulse, record=record), None
    net = source.build(build_key, dt=dt)
    record = _recorded(net.sizes) if raster else 0
    return net.simulate(duration_ms, run_key, record=record), source.reference_rates


def _check_default_bin(dt: float) -> None:
    """--dt must divide `DEFAULT_BIN` when --raster/--out bin the rates and --bin is not given, or a
    `typer.BadParameter` blames --dt and names the default and --bin."""
    from diffbrain.zoo._checks import whole_steps

    if dt <= DEFAULT_BIN and whole_steps(DEFAULT_BIN, dt) is not None:
        return
    multiple = max(1, math.ceil(DEFAULT_BIN / dt - 1e-9)) * dt
    raise _fail(
        f"{_exact(dt)} ms does not divide the rate bin of --raster/--out, {DEFAULT_BIN:g} ms unless --bin "
        f"says otherwise; pass --bin, a multiple of --dt (e.g. {multiple:.12g}), or a --dt that divides "
        f"{DEFAULT_BIN:g}.",
        "--dt",
    )


def _smallest_size(build, fraction: str, k_e: int, k_i: int) -> int:
    """The fewest neurons from which ``build`` (its default excitatory ``fraction``, rounded as it rounds)
    has ``k_e`` excitatory and ``k_i`` inhibitory ones."""
    import inspect

    exc_fraction = inspect.signature(build).parameters[fraction].default
    n = 2
    while round(exc_fraction * n) < k_e or n - round(exc_fraction * n) < k_i:
        n += 1
    return n


def _check_ei_size(name: str, scale: float, n: int) -> None:
    """``--scale`` must give the coba/cuba network enough neurons for each one's distinct inputs (its
    default ``in_degree``), or a `typer.BadParameter` states the smallest --scale."""
    import inspect

    from diffbrain.zoo import networks

    defaults = inspect.signature(networks.EINetwork.build).parameters
    in_degree, exc_fraction = defaults["in_degree"].default, defaults["exc_fraction"].default
    k_e = round(exc_fraction * in_degree)
    smallest = _smallest_size(networks.EINetwork.build, "exc_fraction", k_e, in_degree - k_e)
    if n < smallest:
        raise _fail(
            f"{scale:g} gives {n} neurons, too few for the {name} network's {in_degree} distinct inputs per "
            f"neuron ({k_e} excitatory, {in_degree - k_e} inhibitory): pass --scale ≥ {smallest / 4000:g} "
            f"({smallest} neurons).",
            "--scale",
        )


def _read(reader, folder: Path):
    """``reader(folder)``, its errors (missing, unreadable or malformed files) reported against --data."""
    try:
        return reader(folder)
    except (ValueError, OSError) as error:
        raise _fail(str(error), "--data") from None


def _rates_table(result, reference, title: str) -> Table:
    import numpy as np

    rates = np.asarray(result.rates())
    table = Table(title=escape(title), title_justify="left")
    for column in (
        "population",
        "neurons",
        "rate (Hz)",
        *(["reference (Hz)"] if reference is not None else []),
    ):
        table.add_column(column, justify="left" if column == "population" else "right")
    for index, (name, size) in enumerate(zip(result.names, result.sizes, strict=True)):
        row = [escape(name), f"{size:,}", f"{rates[index]:.3g}"]
        if reference is not None:
            row.append(f"{reference[index]:.3g}")
        table.add_row(*row)
    return table


def _write_rates_csv(path: Path, result, bin_ms: float) -> None:
    import numpy as np

    from .cli import save_csv

    trace = np.asarray(result.rate_trace(bin_ms))
    table = np.column_stack([(np.arange(trace.shape[0]) + 0.5) * bin_ms, trace])
    # t_ms as the neuron CSV's: 6 digits would round 100002.5 ms to 100002
    save_csv(path, table, ",".join(["t_ms", *result.names]), ",".join(["%.12g"] + ["%.6g"] * trace.shape[1]))


def _write_figure(path: Path, result, bin_ms: float, title: str) -> None:
    from diffbrain.zoo.networks import plot

    from .cli import save_png

    save_png(plot.overview(result, bin_ms, title=title), path, dpi=110)


def simulate_network(
    name: str,
    *,
    duration_ms: float | None,
    scale: float | None,
    dt: float,
    seed: int,
    raster: Path | None,
    out: Path | None,
    bin_ms: float | None,
    data: Path | None,
    pulse: str | None,
) -> None:
    """Simulate network ``name`` (a key of `NETWORKS`) for ``duration_ms`` ms at time step ``dt`` ms; print
    the rate of each population and write ``raster`` (PNG) and ``out`` (CSV of the rates in ``bin_ms`` ms
    bins). ``scale`` None: `DEFAULT_SCALE`; ``duration_ms`` None: `DEFAULT_DURATION` (then a --dt that does
    not divide it is to blame); ``bin_ms`` None: `DEFAULT_BIN`; ``pulse``: the multiarea area that gets
    `MultiArea.pulse`'s step of drive, or None for none. Bad values raise `typer.BadParameter` naming the
    option, before anything is printed."""
    scale = DEFAULT_SCALE[name] if scale is None else scale
    default_duration = duration_ms is None
    duration_ms = DEFAULT_DURATION if default_duration else duration_ms
    if bin_ms is not None and raster is None and out is None:
        raise _fail(
            "sets the rate bin of --raster and --out; without either it does nothing: leave it out.", "--bin"
        )
    default_bin = bin_ms is None
    bin_ms = DEFAULT_BIN if default_bin else bin_ms
    for option, value in (("--duration", duration_ms), ("--dt", dt), ("--scale", scale), ("--bin", bin_ms)):
        if not (math.isfinite(value) and value > 0):
            raise _fail(f"must be a finite number > 0, got {value:g}.", option)
    if bin_ms > duration_ms and (raster is not None or out is not None):
        raise _fail(
            f"{bin_ms:g} ms{' (its default)' if default_bin else ''} is longer than --duration "
            f"{duration_ms:g} ms, so --raster/--out would hold no rate; pass a shorter --bin.",
            "--bin",
        )
    if name == "microcircuit" and scale > 1:
        raise _fail(f"the microcircuit is at most full scale (1), got {scale:g}.", "--scale")
    if data is not None and name in ("coba", "cuba"):
        raise _fail(
            f"the {name} network is built from no data; --data is for multiarea and microcircuit.", "--data"
        )
    if pulse is not None and name != "multiarea":
        raise _fail(f"is for multiarea; the {name} network takes no pulse: leave it out.", "--pulse")
    from .cli import (
        _number_of_steps,
        _steps_of_default_duration,
        check_distinct,
        check_output,
        check_seed,
        whole_steps,
        write_outputs,
    )

    check_seed(seed)
    source = _check_model(name, scale, dt, data, pulse, duration_ms)

    # at least one step, a multiple of dt, at most the step limit
    if default_duration:
        _steps_of_default_duration(name, duration_ms, dt)
    else:
        _number_of_steps(duration_ms, dt)
    if raster is not None or out is not None:  # a bin of whole steps, or the CSV's t_ms would not be --bin's
        if default_bin:
            _check_default_bin(dt)
        else:
            whole_steps("--bin", bin_ms, dt)

    check_distinct({"--raster": raster, "--out": out})
    check_output("--raster", raster)
    check_output("--out", out)
    import jax

    _out.print(f"[bold cyan]{name}[/]: {escape(NETWORKS[name])}")
    _out.print(f"scale {scale:g}; {duration_ms:g} ms at dt {dt:g} ms; seed {seed}")
    if name == "multiarea":
        _out.print(_pulse_line(pulse, duration_ms, dt))
    start = time.perf_counter()
    try:
        result, reference = _simulate(name, source, duration_ms, scale, dt, seed, pulse, raster is not None)
        result = jax.block_until_ready(result)
    except ValueError as error:
        raise _fail(str(error), "--duration/--dt") from None
    wall = time.perf_counter() - start
    title = f"{name}, scale {scale:g}: {sum(result.sizes):,} neurons, {result.duration:g} ms"
    if pulse is not None:
        title += f", pulse into {pulse}"
    _out.print(_rates_table(result, reference, title))
    _out.print(f"wall time: {wall:.3g} s (building, compiling and simulating)")
    outputs = []
    if raster is not None:
        outputs.append(("--raster", raster, lambda: _write_figure(raster, result, bin_ms, title), ""))
    if out is not None:
        outputs.append(("--out", out, lambda: _write_rates_csv(out, result, bin_ms), ""))
    write_outputs(outputs)
