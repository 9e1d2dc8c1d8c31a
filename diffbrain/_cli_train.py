"""``diffbrain train``: train the spiking E/I network on a cognitive task; metrics, checkpoint and plots.

JAX, optax and Matplotlib are imported inside the command, so ``diffbrain --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import csv
import enum
import functools
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ._atomic import exclusive_lock, write_atomically
from ._cli_paths import output_folder

_out = Console()
_err = Console(stderr=True)

CONFIG, METRICS_CSV, LOCK = "config.json", "metrics.csv", ".lock"
MAX_TRIAL_STEPS = 1_000_000
"""The most steps a trial may take (its duration over --dt): one of 10⁶ steps already holds a batch's inputs
in gigabytes, and a smaller --dt fails in sampling, out of memory, after writing into --out."""
_ADDED_SETTINGS = {"connectivity": "dense", "p_connect": 1.0}
"""Settings added after runs were first written: a config.json without them ran with these values."""
PLOTS = ("accuracy.png", "raster.png", "weights.png")
OUTPUTS = (METRICS_CSV, *PLOTS, "weights.json", "persistence.json")
"""The files a run writes into --out after training (besides config.json and `learn.train`'s checkpoint
files: `learn.trainer.CHECKPOINT`, `~learn.trainer.METRICS`, `~learn.trainer.RUN`)."""
_MARKS = ("task", "method", "n_rec")
"""Settings every config.json `diffbrain train` wrote holds: a JSON object without them is someone else's."""


class Task(enum.StrEnum):
    """The tasks `diffbrain train` knows (`diffbrain.tasks`, default protocols)."""

    evidence_accumulation = "evidence-accumulation"
    delayed_match_to_sample = "delayed-match-to-sample"
    perceptual_decision_making = "perceptual-decision-making"
    context_decision_making = "context-decision-making"


class Connectivity(enum.StrEnum):
    """How the recurrent weights are held (`diffbrain.learn.EINetwork`)."""

    dense = "dense"
    sparse = "sparse"


class Method(enum.StrEnum):
    """How the gradient is computed (`diffbrain.learn.METHODS`)."""

    bptt = "bptt"
    bptt_checkpoint = "bptt-checkpoint"
    d_rtrl = "d-rtrl"
    es_d_rtrl = "es-d-rtrl"


@functools.cache
def _optimizer(lr: float):
    """Adam after clipping the gradient to norm 1; one object per rate, so runs share their compilation."""
    import optax

    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))


def _make_task(task: Task, dt: float, delay: float | None):
    from diffbrain import tasks

    cls = {
        Task.evidence_accumulation: tasks.EvidenceAccumulation,
        Task.delayed_match_to_sample: tasks.DelayedMatchToSample,
        Task.perceptual_decision_making: tasks.PerceptualDecisionMaking,
        Task.context_decision_making: tasks.ContextDecisionMaking,
    }[task]
    overrides = {"dt": dt} | ({} if delay is None else {"delay_duration": delay})
    try:
        return cls(**overrides)
    except ValueError as error:
        # the task names its fields: of its periods, --delay sets one and --dt must divide them all; its
        # rates (no option sets them) give at most one spike per step only up to a dt
        if "more than one spike per step" in str(error):
            defaults = cls()
            fastest = max(getattr(defaults, name) for name in defaults.rate_fields)
            raise typer.BadParameter(
                f"{dt:g} ms gives {cls.__name__}'s {fastest:g} Hz inputs more than one spike per step "
                f"(rate·dt > 1); pass a --dt of at most {1000.0 / fastest:g} ms.",
                param_hint="'--dt'",
            ) from None
        period = re.search(r"`(\w+)_duration`=(\S+) ms is not a non-negative whole number", str(error))
        if period is None:
            raise typer.BadParameter(str(error), param_hint="'--dt' / '--delay'") from None
        name, duration = period[1], float(period[2])
        if name == "delay" and delay is not None:
            raise typer.BadParameter(
                f"must be a multiple of --dt ({dt:g} ms), ≥ 0; got {duration:g} ms.",
                param_hint="'--delay'",
            ) from None
        raise typer.BadParameter(
            f"{dt:g} ms does not divide the {duration:g} ms {name} period of {cls.__name__}; pass a --dt "
            "that divides every period (the default 1 ms does).",
            param_hint="'--dt'",
        ) from None


def _check_trial_length(task, dt: float, delay: float | None) -> None:
    """Refuse a --dt (or --delay) that makes a trial of ``task`` longer than `MAX_TRIAL_STEPS` steps."""
    if task.n_steps <= MAX_TRIAL_STEPS:
        return
    duration = task.n_steps * dt
    longer = "" if delay is None else " or a shorter --delay"
    raise typer.BadParameter(
        f"{dt:g} ms makes a trial of {type(task).__name__} ({duration:g} ms) {task.n_steps:,} steps, more "
        f"than {MAX_TRIAL_STEPS:,}; pass a --dt of at least {duration / MAX_TRIAL_STEPS:g} ms{longer}.",
        param_hint="'--dt'" if delay is None else "'--dt' / '--delay'",
    )


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Make ``out`` and hold the lock on ``out/LOCK`` for the block, or refuse the run at once when another
    `diffbrain train` holds it: two runs into one folder would overwrite each other's config.json and
    checkpoint. The lock goes with the process, however it ends; the file stays (removing it would let a
    third run lock a new file while the second holds the old)."""
    with contextlib.ExitStack() as stack:
        try:
            out.mkdir(parents=True, exist_ok=True)
            stack.enter_context(exclusive_lock(out / LOCK, wait=False))
        except BlockingIOError:
            raise typer.BadParameter(
                f"another diffbrain train is writing into {out} (it holds the lock on {out / LOCK}); wait "
                "for it to end or choose another --out.",
                param_hint="'--out'",
            ) from None
        except OSError as error:
            raise typer.BadParameter(
                f"cannot write {out}: {error.strerror or error}.", param_hint="'--out'"
            ) from None
        yield


def _check_positive(option: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a finite number > 0, got {value}.", param_hint=f"'{option}'")


def _check_config(out: Path, config: dict, defaults: dict) -> bool:
    """Refuse to resume a run in ``out`` that was started with other settings, or to replace files named as
    a run's outputs (`OUTPUTS`, and `learn.train`'s metrics.json and run.json unless beside its
    checkpoint.eqx, which makes ``out`` a `learn.train` run that it resumes or refuses itself) in an ``out``
    without a config.json; True if ``out`` holds a run to resume
    with the same settings. A run is its checkpoint: a config.json without one (a run stopped
    before its first checkpoint) is of a new run, which rewrites it. A setting saved as None there was the
    task's default, given in ``defaults``."""
    from diffbrain.learn.trainer import CHECKPOINT, METRICS, RUN

    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file; pass a folder.", param_hint="'--out'")
    path = out / CONFIG
    if not path.exists():
        names = OUTPUTS if (out / CHECKPOINT).exists() else (*OUTPUTS, METRICS, RUN)
        foreign = [name for name in names if (out / name).exists()]
        if foreign:
            raise typer.BadParameter(
                f"{out} holds files named as train's outputs ({', '.join(foreign)}) but no {CONFIG} of "
                "diffbrain train: they are not a train run's, and this run would replace them; choose "
                "another --out or remove them.",
                param_hint="'--out'",
            )
        return False
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        saved = error
    if isinstance(saved, dict):
        missing = [key for key in _MARKS if key not in saved]
        reason = f"no {', '.join(missing)} setting" if missing else None
    else:
        reason = saved.strerror if isinstance(saved, OSError) else "not a JSON object"
    if reason is not None:
        raise typer.BadParameter(
            f"{path} is not a diffbrain train config ({reason}); choose another --out or remove it.",
            param_hint="'--out'",
        )
    if not (out / CHECKPOINT).exists():
        return False
    saved = _ADDED_SETTINGS | saved
    # config.json files written before the task's own values were recorded hold None for them
    saved |= {key: value for key, value in defaults.items() if saved.get(key) is None}
    # only the settings are compared: config.json files written before "steps" was left out hold one too
    changed = {key: (saved.get(key), value) for key, value in config.items()}
    changed = {key: pair for key, pair in changed.items() if pair[0] != pair[1]}
    if changed:
        listing = ", ".join(f"{key}: {old!r} there, {new!r} now" for key, (old, new) in changed.items())
        raise typer.BadParameter(
            f"{out} holds a run with other settings ({listing}); resume with the same options or choose "
            "another --out.",
            param_hint="'--out'",
        )
    return True


def _in_option_terms(message: str) -> str:
    """A `learn.train` error in the options' terms: ``checkpoint_dir`` is --out, ``steps=3`` --steps 3."""
    message = message.replace("checkpoint_dir", "--out")
    return re.sub(r"\bsteps ?(=|≥) ?(\d+)", lambda m: f"--steps {'≥ ' if m[1] == '≥' else ''}{m[2]}", message)


def _write_metrics_csv(path: Path, metrics: dict) -> None:
    def write(file):
        writer = csv.writer(file)
        writer.writerow(["step", "loss", "accuracy"])
        for step, (loss, accuracy) in enumerate(zip(metrics["loss"], metrics["accuracy"], strict=True)):
            writer.writerow([step + 1, f"{loss:.6g}", f"{accuracy:.6g}"])

    write_atomically(path, write, newline="")


def _save_figure(figure, path: Path) -> None:
    from .cli import save_png  # here: diffbrain.cli imports this module

    save_png(figure, path, dpi=110)


def _figure(**kwargs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(layout="constrained", **kwargs)
    FigureCanvasAgg(figure)
    return figure


def _plot_accuracy(path: Path, metrics: dict, title: str) -> None:
    import numpy as np

    accuracy = np.asarray(metrics["accuracy"])
    steps = np.arange(1, accuracy.size + 1)
    window = min(20, accuracy.size)
    smooth = np.convolve(accuracy, np.ones(window) / window, mode="valid")
    figure = _figure(figsize=(7, 4))
    axis = figure.subplots()
    axis.plot(steps, accuracy, ".", ms=3, color="tab:gray", label="batch")
    axis.plot(steps[window - 1 :], smooth, color="tab:blue", label=f"mean of {window}")
    axis.axhline(0.5, color="k", lw=0.5, ls=":")
    axis.set(xlabel="training step", ylabel="accuracy", ylim=(0, 1.02), title=title)
    axis.legend(loc="lower right")
    _save_figure(figure, path)


def _plot_raster(path: Path, net, task, key) -> None:
    import jax
    import numpy as np

    batch = task.sample(key, 1)
    _, (spikes, _) = jax.lax.scan(lambda s, x: net.step(s, x), net.init_state(1), batch.inputs)
    spikes = np.asarray(spikes[:, 0])
    exc = np.asarray(net.is_excitatory)
    figure = _figure(figsize=(9, 5))
    axis = figure.subplots()
    for group, color in ((exc, "tab:blue"), (~exc, "tab:red")):
        steps, neurons = np.nonzero(spikes[:, group])
        axis.plot(steps * task.dt, np.flatnonzero(group)[neurons], "|", ms=2, color=color)
    for name, span in task.periods.items():
        if span.stop > span.start and not name.startswith("gap"):
            axis.axvline(span.start * task.dt, color="k", lw=0.3)
            axis.text(span.start * task.dt, net.n_rec, name, fontsize=6, va="bottom")
    axis.set(xlabel="time (ms)", ylabel="neuron (blue E, red I)", ylim=(-1, net.n_rec + 1))
    axis.set_title(f"one trial after training, label {int(batch.labels[0])}", pad=14)
    _save_figure(figure, path)


def _persistence(net, task, key, trials: int = 64) -> dict | None:
    """`learn.analysis.persistent_activity` over ``trials`` trials: selectivity in the stimulus periods
    (those before the delay, fixation and gaps left out) to each trial's label, rates in the delay; None
    without a delay. Delayed match-to-sample's label (match or not) is drawn independently of the sample and
    decided only by the test after the delay, so there selectivity is to the sample stimulus instead (the
    sample group that fired in the sample period), which is what the delay has to hold."""
    import jax
    import numpy as np

    from diffbrain import tasks
    from diffbrain.learn import analysis

    delay = task.window("delay") if "delay" in task.periods else np.zeros(task.n_steps, bool)
    if not delay.any():
        return None
    before = list(task.periods)[: list(task.periods).index("delay")]
    stimulus = task.window(*(name for name in before if not name.startswith(("gap", "fixation"))))
    batch = task.sample(key, trials)
    labels, selective_to = batch.labels, "label"
    if isinstance(task, tasks.DelayedMatchToSample):
        groups = np.asarray(batch.inputs).reshape(task.n_steps, trials, task.n_groups, -1).sum(-1)
        labels, selective_to = groups[task.window("sample"), :, 1:].sum(0).argmax(-1), "sample"
    _, (spikes, _) = jax.lax.scan(lambda s, x: net.step(s, x), net.init_state(trials), batch.inputs)
    result = analysis.persistent_activity(spikes, labels, stimulus, delay, dt=task.dt)

    def plain(values):
        return [None if np.isnan(v) else round(float(v), 3) for v in values]

    return {
        "selective_to": selective_to,
        "classes": result.classes.tolist(),  # the class of each entry of the lists below
        "selective_neurons": result.selective.sum(axis=1).tolist(),
        "delay_rate_preferred_hz": plain(result.preferred),
        "delay_rate_nonpreferred_hz": plain(result.nonpreferred),
        "baseline_rate_hz": plain(result.baseline),
    }


def _weight_fits(before, after) -> dict:
    """The log-normal fits of each weight group before and after training; a group with fewer than two
    synapses (``--n-rec 2`` has no inhibitory neuron, ``--p-connect 0`` no recurrent synapse) has no fit:
    None, ``null`` in weights.json."""
    from diffbrain.learn import analysis

    return {
        stage: analysis.weight_distributions(net) for stage, net in (("before", before), ("after", after))
    }


def _plot_weights(path: Path, before, after, fits: dict) -> None:
    """Histograms of each weight group before and after training, with their log-normal ``fits``."""
    import numpy as np

    from diffbrain.learn import analysis

    stages = {"before": before, "after": after}
    groups = {stage: analysis.weight_groups(net) for stage, net in stages.items()}
    positive = {stage: {g: v[v > 0] for g, v in values.items()} for stage, values in groups.items()}
    figure = _figure(figsize=(11, 3.6))
    for axis, group in zip(figure.subplots(1, 3), ("input", "E", "I"), strict=True):
        axis.set(xlabel=f"log10 |W| ({group}, units of g_L)", ylabel="synapses")
        logs = [np.log10(positive[stage][group]) for stage in stages]
        if not any(v.size for v in logs):
            axis.text(0.5, 0.5, "no synapses", ha="center", va="center", transform=axis.transAxes)
            continue
        bins = np.linspace(min(v.min() for v in logs if v.size), max(v.max() for v in logs if v.size), 50)
        for stage, values, color in zip(stages, logs, ("tab:gray", "tab:orange"), strict=True):
            fit = fits[stage][group]
            fitted = f"μ={fit.mu:.2f}, σ={fit.sigma:.2f}" if fit else f"{values.size} synapse(s), no fit"
            axis.hist(values, bins=bins, histtype="step", color=color, label=f"{stage}: {fitted}")
        axis.legend(fontsize=7, title="log-normal fit of ln|W|", title_fontsize=7)
    _save_figure(figure, path)


def _diverged(out: Path, message: str, title: str) -> typer.Exit:
    """Report a diverged run on stderr with advice that fits the command, write metrics.csv and accuracy.png
    of the steps in the last finite checkpoint; returns the exit (status 1) to raise."""
    from diffbrain.learn import trainer

    from .cli import write_outputs  # here: diffbrain.cli imports this module

    what = message.split(". ")[0]  # learn's advice (lower the rate, clip) does not fit: the CLI clips already
    _err.print(
        f"{what}. The gradients are already clipped to norm 1: rerun with a smaller --lr and a new --out.",
        style="red",
        markup=False,
    )
    metrics_json = out / trainer.METRICS
    metrics = json.loads(metrics_json.read_text()) if metrics_json.exists() else {"loss": []}
    if metrics["loss"]:  # none if it diverged before the first checkpoint
        writes = {
            METRICS_CSV: lambda path: _write_metrics_csv(path, metrics),
            PLOTS[0]: lambda path: _plot_accuracy(path, metrics, f"{title} · diverged"),
        }
        note = f" (the {len(metrics['loss'])} step(s) kept)"
        try:
            write_outputs(
                ("--out", out / name, functools.partial(write, out / name), note)
                for name, write in writes.items()
            )
        except typer.Exit:  # a file that could not be written is reported; the run's status is 1 either way
            pass
    return typer.Exit(1)


def train(
    task: Annotated[Task, typer.Option(help="The task (a default protocol of `diffbrain.tasks`).")] = (
        Task.evidence_accumulation
    ),
    method: Annotated[
        Method,
        typer.Option(
            help="bptt | bptt-checkpoint (BPTT recomputing segments of ~√T steps: same gradient, less "
            "memory) | d-rtrl | es-d-rtrl"
        ),
    ] = Method.bptt,
    n_rec: Annotated[int, typer.Option(min=2, help="Recurrent neurons (80 % excitatory).")] = 200,
    connectivity: Annotated[
        Connectivity, typer.Option(help="Recurrent weights as a dense masked matrix or a sparse ops.CSR.")
    ] = Connectivity.dense,
    p_connect: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Recurrent connection probability (no autapses).")
    ] = 1.0,
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps, a resumed run's included.")] = 100,
    out: Annotated[
        Path,
        typer.Option(
            parser=output_folder,
            metavar="PATH",
            help="Folder for the checkpoint, metrics.csv and the plots.",
        ),
    ] = Path("train-out"),
    batch_size: Annotated[int, typer.Option(min=1, help="Trials per step.")] = 32,
    lr: Annotated[float, typer.Option(help="Adam learning rate (gradients clipped to norm 1).")] = 1e-2,
    dt: Annotated[float, typer.Option(help="Time step, ms.")] = 1.0,
    delay: Annotated[float | None, typer.Option(help="Delay period, ms (default: the task's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the weights and of the batches.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Steps between checkpoints.")] = 10,
) -> None:
    """Train the spiking E/I network on a task; write metrics.csv, a checkpoint (rerun to resume) and plots.

    Plots: accuracy.png (accuracy per step), raster.png (one trial after training), weights.png (input,
    E and I weight histograms before vs after, with log-normal fits, also in weights.json; null for a group
    with fewer than two synapses). With a delay
    period, persistence.json holds the delay-period rates of the class-selective neurons.
    """
    from .cli import check_seed, write_outputs  # here: diffbrain.cli imports this module

    check_seed(seed)
    _check_positive("--lr", lr)
    _check_positive("--dt", dt)
    the_task = _make_task(task, dt, delay)
    _check_trial_length(the_task, dt, delay)
    delay = getattr(the_task, "delay_duration", None)  # the task's own when not given: the same run
    config = {
        "task": str(task), "method": str(method), "n_rec": n_rec, "connectivity": str(connectivity),
        "p_connect": p_connect, "batch_size": batch_size, "lr": lr, "dt": dt, "delay": delay, "seed": seed,
    }  # fmt: skip
    defaults = {"delay": getattr(_make_task(task, dt, None), "delay_duration", None)}
    _check_config(out, config, defaults)  # a folder refused here is left as it was, without a lock file

    import jax
    import numpy as np

    from diffbrain import learn

    with _locked(out):
        resuming = _check_config(out, config, defaults)  # again: another run may have written it meanwhile
        try:
            if not resuming:  # the settings only: the steps done are in metrics.csv, and may grow on a resume
                write_atomically(out / CONFIG, lambda file: json.dump(config, file, indent=1), "w")
        except OSError as error:
            reason = error.strerror or error
            raise typer.BadParameter(f"cannot write {out}: {reason}.", param_hint="'--out'") from None

        wiring = f"{connectivity}, p = {p_connect:g}"
        title = f"{task} · {method} · {n_rec} neurons ({wiring}) · batch {batch_size} · lr {lr:g}"
        weights_key, batches_key, raster_key = jax.random.split(jax.random.key(seed), 3)
        initial = learn.EINetwork(
            the_task.n_inputs, n_rec, the_task.n_outputs, key=weights_key, dt=dt, connectivity=p_connect,
            sparse=connectivity == Connectivity.sparse,
        )  # fmt: skip
        try:
            result = learn.train(
                initial, the_task, str(method), _optimizer(lr), steps=steps, batch_size=batch_size,
                key=batches_key, checkpoint_dir=out, checkpoint_every=checkpoint_every,
            )  # fmt: skip
        except learn.trainer.CheckpointMismatch as error:  # e.g. fewer --steps than the checkpoint holds
            if not resuming:  # a checkpoint without config.json (learn.train's own) is of another run
                (out / CONFIG).unlink(missing_ok=True)
            raise typer.BadParameter(_in_option_terms(str(error)), param_hint="'--steps' / '--out'") from None
        except FloatingPointError as error:  # diverged: the last finite checkpoint is kept
            raise _diverged(out, str(error), title) from None

        metrics = result.metrics
        distributions = _weight_fits(initial, result.net)
        fits = {
            stage: {g: None if fit is None else fit._asdict() for g, fit in values.items()}
            for stage, values in distributions.items()
        }
        persistence = _persistence(result.net, the_task, raster_key)

        last = metrics["accuracy"][-min(10, steps) :]
        _out.print(
            f"{task} with {method}: {steps} steps, accuracy {np.mean(last):.1%} (mean of the last "
            f"{len(last)}), loss {metrics['loss'][-1]:.4f}"
        )
        for group, fit in fits["after"].items():
            before = fits["before"][group]
            if before is None or fit is None:
                _out.print(f"  {group:>5} weights: fewer than 2 synapses, no log-normal fit")
                continue
            _out.print(
                f"  {group:>5} weights ln|W| ~ N({before['mu']:.2f}, {before['sigma']:.2f}²) → "
                f"N({fit['mu']:.2f}, {fit['sigma']:.2f}²)"
            )
        if persistence is not None:
            _out.print(
                f"  delay activity of class-selective neurons {persistence['selective_neurons']}: "
                f"{persistence['delay_rate_preferred_hz']} Hz on preferred trials, "
                f"{persistence['delay_rate_nonpreferred_hz']} Hz on the others "
                f"(baseline {persistence['baseline_rate_hz']} Hz) — persistence.json"
            )
        writes = {
            METRICS_CSV: lambda path: _write_metrics_csv(path, metrics),
            PLOTS[0]: lambda path: _plot_accuracy(path, metrics, title),
            PLOTS[1]: lambda path: _plot_raster(path, result.net, the_task, raster_key),
            PLOTS[2]: lambda path: _plot_weights(path, initial, result.net, distributions),
            "weights.json": lambda path: write_atomically(path, lambda file: json.dump(fits, file, indent=1)),
        }
        if persistence is not None:
            writes["persistence.json"] = lambda path: write_atomically(
                path, lambda file: json.dump(persistence, file, indent=1)
            )
        write_outputs(
            ("--out", out / name, functools.partial(write, out / name), "") for name, write in writes.items()
        )
