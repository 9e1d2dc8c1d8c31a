"""The `diffbrain` command: listing, simulating, writing files, and clear errors on bad input."""

import csv
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from diffbrain import __version__, cli, zoo
from diffbrain.cli import app
from diffbrain.zoo import registry

_runner = CliRunner()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BOX_SIDES = re.compile(r"[│┃]")  # table and panel borders, so cells and wrapped messages read as text
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _invoke(*args: str):
    result = _runner.invoke(app, list(args), env={"COLUMNS": "200"})
    plain = _BOX_SIDES.sub(" ", _ANSI.sub("", result.output))
    return result, " ".join(plain.split())


def _spike_count(text: str) -> int:
    match = re.search(r"spikes: (\d+)", text)
    assert match, text
    return int(match.group(1))


def test_python_m_diffbrain_help_runs_in_a_subprocess(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "diffbrain", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: diffbrain" in result.stdout
    assert "simulate" in result.stdout and "models" in result.stdout


def test_version():
    result, text = _invoke("--version")
    assert result.exit_code == 0
    assert text == f"diffbrain {__version__}"


def test_no_arguments_shows_help():
    result, text = _invoke()
    assert result.exit_code == 2  # click's no_args_is_help: the help, as a usage error
    assert "Usage:" in text and "simulate" in text


def test_models_lists_every_neuron_with_parameters_and_units(monkeypatch):
    monkeypatch.setattr(cli, "_out", Console(width=200))  # the width of the terminal pytest runs in
    result, text = _invoke("models")
    assert result.exit_code == 0, text
    assert re.search(r"lif .*V_th -50 mV spike threshold", text)
    assert re.search(r"C 250 pF membrane capacitance", text)
    assert re.search(r"--current 500 pA", text)
    for entry in registry.NEURONS.values():
        assert f" {entry.name} " in text
        assert entry.make().input_unit in text


def test_a_narrow_terminal_folds_the_other_columns_never_a_models_name(monkeypatch):
    monkeypatch.setattr(cli, "_out", Console(width=60))
    result, text = _invoke("models")
    assert result.exit_code == 0, text
    for name in (*registry.NEURONS, *registry.SYNAPSES):
        assert f" {name} " in text


def test_models_lists_every_synapse():
    result, text = _invoke("models")
    assert result.exit_code == 0, text
    assert "Synapse models" in text and registry.SYNAPSES
    for name in registry.SYNAPSES:
        assert f" {name} " in text
    assert re.search(r"tau_decay \d+ ms", text)


def test_simulate_lif_prints_spikes_and_writes_csv_and_png(tmp_path):
    entry = registry.get_neuron("lif")
    csv_path, png_path = tmp_path / "out" / "lif.csv", tmp_path / "out" / "lif.png"
    result, text = _invoke("simulate", "lif", "--out", str(csv_path), "--plot", str(png_path))
    assert result.exit_code == 0, text
    assert f"step current {entry.current:g} pA" in text
    count = _spike_count(text)
    assert count > 0
    rate = float(re.search(r"rate: ([\d.]+) Hz", text).group(1))
    assert rate == pytest.approx(count / entry.duration * 1000, rel=1e-3)
    assert "wall time:" in text

    with csv_path.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["t_ms", "V_mV", "spike"]
    table = np.array(rows[1:], dtype=float)
    n_steps = round(entry.duration / entry.dt)
    assert table.shape == (n_steps, 3)
    np.testing.assert_allclose(table[:, 0], np.arange(1, n_steps + 1) * entry.dt, rtol=1e-5)
    assert np.all(np.isfinite(table[:, 1]))
    assert table[:, 2].sum() == count
    assert set(np.unique(table[:, 2])) <= {0.0, 1.0}

    data = png_path.read_bytes()
    assert data.startswith(_PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk follows the signature
    assert width >= 600 and height >= 300
    assert len(data) > 10_000
    # Atomic writes leave no temporary files behind.
    assert sorted(p.name for p in csv_path.parent.iterdir()) == ["lif.csv", "lif.png"]


def test_simulate_matches_the_library(tmp_path):
    import jax.numpy as jnp

    entry = registry.get_neuron("lif")
    result, text = _invoke("simulate", "lif", "--current", "400", "--duration", "50", "--dt", "0.05")
    assert result.exit_code == 0, text
    model = zoo.astype(entry.make(), jnp.float32)
    trace = zoo.simulate(model, jnp.full(1000, 400.0, jnp.float32), 0.05)
    assert _spike_count(text) == int(trace.spikes.sum()) > 0


@pytest.mark.parametrize("name", list(registry.NEURONS))
def test_every_registered_model_spikes_with_its_defaults(name):
    result, text = _invoke("simulate", name)
    assert result.exit_code == 0, text
    assert _spike_count(text) > 0


def test_precision_is_float32_by_default_and_float64_on_request(tmp_path):
    # conftest enables float64 in JAX, so float32 here means the command casts explicitly.
    voltages = {}
    for flag in ([], ["--float64"]):
        out = tmp_path / f"trace{len(flag)}.csv"
        result, text = _invoke("simulate", "lif", "--duration", "20", "--out", str(out), *flag)
        assert result.exit_code == 0, text
        rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
        voltages[text.split("exp-euler; ")[1].split()[0]] = np.array([row[1] for row in rows], float)
    # the CSV keeps 9 significant digits of V, enough to tell the precisions apart
    assert set(voltages) == {"float32", "float64"}
    np.testing.assert_allclose(voltages["float32"], voltages["float64"], rtol=1e-5)
    assert np.any(voltages["float32"] != voltages["float64"])


def test_the_csv_time_is_k_dt_in_float64_whatever_the_precision(tmp_path):
    """Review: t_ms came from the float32 trace (0.300000012, and from 2²⁴ steps on repeated times)."""
    out = tmp_path / "trace.csv"
    result, text = _invoke("simulate", "lif", "--duration", "20", "--dt", "0.1", "--out", str(out))
    assert result.exit_code == 0 and "float32" in text, text
    times = [line.split(",")[0] for line in out.read_text().splitlines()[1:]]
    assert times == [f"{k * 0.1:.12g}" for k in range(1, 201)]
    assert times[:3] == ["0.1", "0.2", "0.3"] and times[-1] == "20"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--dt", "0"], "--dt"),
        (["--dt", "-0.1"], "--dt"),
        (["--duration", "0"], "--duration"),
        (["--duration", "-5"], "--duration"),
        (["--duration", "0.01", "--dt", "0.1"], "--duration"),
        (["--duration", "1e12"], "--duration"),
        (["--current", "nan"], "--current"),
        (["--dt", "inf"], "--dt"),
        (["--dt", "fast"], "--dt"),
        (["--solver", "rk4"], "--solver"),
        (["--duration", "1.45", "--dt", "1"], "--duration"),  # not a whole number of steps, as for networks
        (["--duration", "1000", "--dt", "1e-306"], "--duration"),  # 1e309 steps: an OverflowError
        (["--plot", "blocker/trace.png"], "--plot"),  # blocker is a file, so the folder cannot be made
        # lif's default --duration (200 ms) is not a multiple of the --dt given: --dt is to blame
        (["--dt", "0.03"], "--dt"),
        (["--dt", "300"], "--dt"),
    ],
)
def test_bad_options_fail_naming_the_option(tmp_path, monkeypatch, args, named):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("")
    out = tmp_path / "trace.csv"
    result, text = _invoke("simulate", "lif", "--out", str(out), *args)
    assert result.exit_code == 2, text
    assert f"'{named}'" in text
    assert "Traceback" not in text and "spikes:" not in text  # refused before simulating
    assert not out.exists()


def test_a_dt_that_misses_the_default_duration_names_it():
    result, text = _invoke("simulate", "hh", "--dt", "0.03")
    assert result.exit_code == 2, text
    assert "'--dt'" in text and "'--duration'" not in text and "hh runs for 100 ms unless --duration" in text


def test_the_dt_help_says_how_the_adaptive_solvers_count_spikes():
    result, text = _invoke("simulate", "--help")
    assert result.exit_code == 0, text
    assert (
        "With --solver tsit5/kvaerno5 the interval of the trace printed and written: the adaptive solver "
        "chooses its own steps and is sampled every dt/k ms, k = ⌈dt / 0.1⌉, and spikes are counted where "
        "V crosses the threshold between those samples (--plot draws V at every sample)." in text
    )


@pytest.mark.parametrize(
    ("model", "current", "solver", "dt", "expected"),
    [
        ("hh", None, "tsit5", "0.1", 7),
        ("hh", None, "tsit5", "1", 7),
        ("hh", None, "tsit5", "2", 7),
        ("traubhh", "8", "tsit5", "0.5", 20),
        ("traubhh", "8", "tsit5", "1", 20),
        ("traubhh", "8", "kvaerno5", "0.5", 20),
    ],
)
def test_an_adaptive_solver_counts_every_spike_at_any_dt(model, current, solver, dt, expected):
    """Review: spikes were counted at the --dt samples: hh --solver tsit5 --dt 2 reported 3 spikes (7 at
    dt ≤ 0.5), and a 0.5 ms cap still let traubhh --current 8 report 16 of 20 at --dt 0.5."""
    args = ("--current", current) if current else ()
    result, text = _invoke("simulate", model, *args, "--solver", solver, "--dt", dt)
    assert result.exit_code == 0 and _spike_count(text) == expected, text


def test_traubhh_at_its_default_dt_counts_the_spikes_of_an_adaptive_solve():
    """Review: at the default --dt of 0.01 ms the interval errors (9.15 ms against 9.04) added up until
    the sixth spike at 1 nA, 49.6 ms, fell past the 50 ms run: 5 spikes where tsit5 counts 6."""
    result, text = _invoke("simulate", "traubhh")
    adaptive, adaptive_text = _invoke("simulate", "traubhh", "--solver", "tsit5")
    assert result.exit_code == 0 and adaptive.exit_code == 0, text + adaptive_text
    assert _spike_count(text) == _spike_count(adaptive_text) == 6, text + adaptive_text


def test_an_adaptive_solvers_trace_is_written_at_dt_with_every_spike(tmp_path):
    out = tmp_path / "hh.csv"
    result, text = _invoke("simulate", "hh", "--solver", "tsit5", "--dt", "2", "--out", str(out))
    assert result.exit_code == 0 and _spike_count(text) == 7, text
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    np.testing.assert_allclose(table[:, 0], np.arange(1, 51) * 2.0)
    assert table[:, 2].sum() == 7
    fine = zoo.solve(zoo.HH(), np.full(4000, registry.get_neuron("hh").current, np.float32), 0.025)
    # V at every 80th sample, t = 2, 4, … ms (a neighbouring sample differs by mV within a spike)
    np.testing.assert_allclose(table[:, 1], np.asarray(fine.V)[79::80], rtol=0, atol=0.05)


def test_an_adaptive_solvers_plot_draws_v_between_the_steps(tmp_path, monkeypatch):
    """Review: at --dt 2 the plot drew V only every 2 ms, where HH's spikes (peaks near +40 mV, 1 ms wide)
    barely show; it draws every sample the spikes are counted on (dt/20 apart) instead."""
    from diffbrain import cli

    drawn = {}
    monkeypatch.setattr(cli, "_write_plot", lambda *args: drawn.update(args=args))
    png = str(tmp_path / "v.png")
    result, text = _invoke("simulate", "hh", "--solver", "tsit5", "--dt", "2", "--plot", png)
    assert result.exit_code == 0 and _spike_count(text) == 7, text
    t, voltage, fine = drawn["args"][2], drawn["args"][3], drawn["args"][-1]
    times, every_sample = fine
    assert t.size == 50 and times.size == every_sample.size == 1000
    np.testing.assert_allclose(times[19::20], t)
    np.testing.assert_array_equal(every_sample[19::20], voltage)
    assert np.count_nonzero((every_sample[1:] >= 0) & (every_sample[:-1] < 0)) == 7  # every spike drawn
    assert every_sample.max() > 35.0 and voltage.max() < 30.0  # peaks 39.8 mV; 28.4 on the dt grid


def test_an_adaptive_solver_refuses_more_samples_than_the_step_limit():
    result, text = _invoke("simulate", "hh", "--solver", "tsit5", "--dt", "1", "--duration", "12000000")
    assert result.exit_code == 2, text
    assert (
        "Invalid value for '--duration': 1.2e+07 ms with --solver tsit5 is 120,000,000 samples (limit "
        "100,000,000): spikes are counted on samples at most 0.1 ms apart; shorten --duration."
    ) in text
    assert "step current" not in text


def test_an_output_that_fails_after_the_simulation_does_not_lose_the_others(tmp_path, monkeypatch):
    from diffbrain import cli

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "save_csv", full_disk)
    png = tmp_path / "trace.png"
    result, text = _invoke(
        "simulate", "lif", "--duration", "5", "--out", str(tmp_path / "t.csv"), "--plot", str(png)
    )
    assert result.exit_code == 1, text  # the simulation ran; writing failed: not a usage error
    assert "--out: cannot write" in text and "No space left on device" in text
    assert png.read_bytes().startswith(_PNG_SIGNATURE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.png"]


def test_unknown_model_lists_the_choices():
    result, text = _invoke("simulate", "nosuchneuron")
    assert result.exit_code == 2
    assert "nosuchneuron" in text
    assert all(name in text for name in registry.NEURONS)
    assert "Traceback" not in text


@pytest.mark.parametrize("duration", ["200", "2e7"])
def test_a_model_with_resets_is_refused_an_adaptive_solver_before_its_duration(duration):
    """Review s23: lif --solver tsit5 --duration 3e6 was blamed on --duration (too many samples), and once
    shortened refused for its resets; and the refusal advised the Python API (zoo.simulate)."""
    result, text = _invoke("simulate", "adex", "--solver", "tsit5", "--dt", "1", "--duration", duration)
    assert result.exit_code == 2, text
    assert (
        "Invalid value for '--solver': adex resets V at each spike, which the adaptive solvers (tsit5, "
        "kvaerno5) cannot integrate; leave out --solver (exp-euler)."
    ) in text
    assert "zoo.simulate" not in text and "Traceback" not in text


def test_tsit5_solves_hh_like_exponential_euler():
    result, text = _invoke("simulate", "hh", "--solver", "tsit5", "--duration", "50")
    assert result.exit_code == 0, text
    adaptive = _spike_count(text)
    result, text = _invoke("simulate", "hh", "--duration", "50")
    assert result.exit_code == 0, text
    assert adaptive > 0
    assert abs(adaptive - _spike_count(text)) <= 1


def test_unwritable_output_is_an_error_naming_the_option(tmp_path):
    (tmp_path / "taken").mkdir()
    result, text = _invoke("simulate", "lif", "--duration", "5", "--out", str(tmp_path / "taken"))
    assert result.exit_code == 2, text
    assert "'--out'" in text and "taken is a folder" in text and "spikes:" not in text
    assert "Traceback" not in text
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no temporary file left behind


def test_a_failed_simulation_reports_the_check_without_a_stack_dump(monkeypatch):
    import equinox as eqx
    import jax.numpy as jnp

    def exploding(model, inputs, dt):
        return eqx.error_if(inputs, jnp.isfinite(inputs).all(), "The simulation produced NaN or inf.")

    monkeypatch.setattr(zoo, "simulate", exploding)
    result, text = _invoke("simulate", "lif", "--duration", "5")
    assert result.exit_code == 1, text
    assert "the simulation failed: The simulation produced NaN or inf." in text
    assert "Traceback" not in text and "stack" not in text


def test_bench_then_leaderboard(tmp_path):
    results, board = tmp_path / "results", tmp_path / "board"
    tiny_grid = ["--models", "lif", "--sizes", "10", "--steps", "20", "--repeats", "1"]
    ran = _runner.invoke(app, ["bench", "throughput", "--out", str(results), *tiny_grid])
    assert ran.exit_code == 0, ran.output
    assert (results / "throughput.csv").exists()
    rendered = _runner.invoke(app, ["leaderboard", str(results), "--out", str(board)])
    assert rendered.exit_code == 0, rendered.output
    readme = (board / "README.md").read_text()
    assert "## throughput" in readme and "| lif/n=10 |" in readme
    assert (board / "throughput_throughput.png").exists()


def test_leaderboard_without_results_names_the_problem(tmp_path):
    result = _runner.invoke(app, ["leaderboard", str(tmp_path)])
    assert result.exit_code == 2
    assert "no benchmark records" in result.output


def test_leaderboard_drops_a_suite_missing_from_the_results_only_with_replace(tmp_path):
    """Review: the default `--out leaderboard` deleted every suite the results did not hold, exit 0."""
    from diffbrain.bench import records

    def record(suite):
        return records.Record(suite, "n=1", "diffbrain", "run_time", 1.0, "s", repeats=1, date="2026-01-01")

    results, board = tmp_path / "results", tmp_path / "board"
    for suite in ("kept", "rendered"):
        records.write_csv([record(suite)], results / f"{suite}.csv")
    assert _runner.invoke(app, ["leaderboard", str(results), "--out", str(board)]).exit_code == 0
    (results / "kept.csv").unlink()
    result, text = _invoke("leaderboard", str(results), "--out", str(board))
    assert result.exit_code == 2 and "holds the suites ['kept']" in text and "--replace" in text, text
    assert (board / "kept.csv").exists()
    result, text = _invoke("leaderboard", str(results), "--out", str(board), "--replace")
    assert result.exit_code == 0, text
    assert not (board / "kept.csv").exists() and (board / "rendered.csv").exists()


@pytest.fixture
def cell_npz(tmp_path):
    """A tiny LIF recording: 2 sweeps of 20 ms at 0.1 ms (300 and 500 pA)."""
    import jax.numpy as jnp

    from diffbrain import fit

    model = zoo.astype(registry.get_neuron("lif").make(), jnp.float32)
    current = np.stack([np.full(200, 300.0), np.full(200, 500.0)])
    voltage = np.stack([np.asarray(zoo.simulate(model, jnp.asarray(i, jnp.float32), 0.1).V) for i in current])
    path = tmp_path / "cell.npz"
    fit.Recording(0.1, current, voltage).save_npz(path)
    return path


_FIT_QUICK = ("--free", "g_L", "--budget", "2", "--starts", "1")


def test_fit_refuses_an_unwritable_output_before_fitting(cell_npz, tmp_path):
    (tmp_path / "blocker").write_text("")
    out, plot = tmp_path / "blocker" / "r.json", tmp_path / "fit.png"
    result, text = _invoke(
        "fit", "lif", "--data", str(cell_npz), *_FIT_QUICK, "--out", str(out), "--plot", str(plot)
    )
    assert result.exit_code == 2, text
    assert "'--out'" in text and "blocker is a file, not a folder" in text
    assert "sweeps from" not in text  # before loading, let alone fitting
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "cell.npz"]


def test_fit_writes_the_plot_when_the_json_fails_after_fitting(cell_npz, tmp_path, monkeypatch):
    from diffbrain import fit

    def read_only(self, path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fit.FitResult, "save", read_only)
    plot = tmp_path / "fit.png"
    result, text = _invoke(
        "fit",
        "lif",
        "--data",
        str(cell_npz),
        *_FIT_QUICK,
        "--out",
        str(tmp_path / "r.json"),
        "--plot",
        str(plot),
    )
    assert result.exit_code == 1, text
    assert "--out: cannot write" in text and "Permission denied" in text
    assert plot.read_bytes().startswith(_PNG_SIGNATURE)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--starts", "0"], "--starts"),
        (["--budget", "0"], "--budget"),
        (["--devices", "0"], "--devices"),
        (["--input-scale", "0"], "--input-scale"),
        (["--free", "foo=0:1"], "--free"),
        (["--free", "g_L=50:1"], "--free"),
        (["--free", "g_L=nan:1"], "--free"),
        (["--format", "xyz"], "--format"),
        (["--method", "newton"], "--method"),
        (["--loss", "l2"], "--loss"),
        (["--current-unit", "mV"], "--current-unit"),
        (["--format", "csv", "--voltage", "V.csv", "--dt", "0"], "--dt"),
        (["--seed", str(2**63)], "--seed"),  # an OverflowError after loading the data
        (["--seed", str(-(2**63) - 1)], "--seed"),
    ],
)
def test_fit_bad_options_name_the_option_before_loading(cell_npz, args, named):
    result, text = _invoke("fit", "lif", "--data", str(cell_npz), *_FIT_QUICK, *args)
    assert result.exit_code == 2, text
    assert f"'{named}'" in text, text
    assert "sweeps from" not in text and "Traceback" not in text


def test_fit_refuses_a_parameter_named_twice_in_free(cell_npz):
    """Review: `--free g_L=10:50,g_L=1:2` kept the last bounds without a word."""
    result, text = _invoke("fit", "lif", "--data", str(cell_npz), *_FIT_QUICK, "--free", "g_L=10:50,g_L=1:2")
    assert result.exit_code == 2, text
    assert "Invalid value for '--free': 'g_L' is named twice; give each parameter once." in text
    assert "sweeps from" not in text


def test_fit_devices_beyond_those_there_are_are_refused_in_the_options_terms(cell_npz):
    """Review: the advice offered "a list of devices, or None", which --devices cannot take."""
    result, text = _invoke("fit", "lif", "--data", str(cell_npz), *_FIT_QUICK, "--devices", "9999")
    assert result.exit_code == 2 and "Invalid value for '--devices': --devices 9999 asks for more" in text, (
        text
    )
    assert (
        "pass a count from 1 to" in text and "(leave --devices out for all)." in text and "None" not in text
    )


@pytest.mark.filterwarnings(
    "ignore:overflow encountered:RuntimeWarning", "ignore:LIF. dt = 1e.39:UserWarning"
)
def test_a_simulation_that_blows_up_gives_the_options_advice():
    """Review: the NaN check advised `check_finite=False`, a Python argument with no option."""
    result, text = _invoke("simulate", "lif", "--dt", "1e39", "--duration", "1e39")
    assert result.exit_code == 1, text
    assert "the simulation failed: The simulation produced NaN or inf in the model state." in text
    assert text.endswith("Reduce --dt or --current.") and "check_finite" not in text


def test_a_current_beyond_float32_is_refused_naming_the_option():
    """It overflowed to inf and the model's check blamed `inputs`, a Python argument."""
    result, text = _invoke("simulate", "lif", "--current", "1e39")
    assert result.exit_code == 2, text
    assert "'--current'" in text and "float32's range" in text and "--float64" in text


def test_fit_without_nevergrad_refuses_its_methods_before_loading(cell_npz, monkeypatch):
    from diffbrain.fit import search

    monkeypatch.setattr(search, "nevergrad_available", lambda: False)
    result, text = _invoke("fit", "lif", "--data", str(cell_npz), *_FIT_QUICK, "--method", "ng_de")
    assert result.exit_code == 2, text
    assert "'--method'" in text and "pip install nevergrad" in text
    assert "sweeps from" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_fit_blames_a_voltage_table_and_dt_on_their_own_options(cell_npz, tmp_path):
    np.savetxt(tmp_path / "I.csv", np.full((2, 11), 100.0), delimiter=",")
    np.savetxt(tmp_path / "V.csv", np.full((3, 11), -65.0), delimiter=",")
    csv = ("--data", str(tmp_path / "I.csv"), "--dt", "0.1", *_FIT_QUICK)
    result, text = _invoke("fit", "lif", *csv, "--voltage", str(tmp_path / "missing.csv"))
    assert result.exit_code == 2 and "Invalid value for '--voltage'" in text and "not found" in text, text
    result, text = _invoke("fit", "lif", *csv, "--voltage", str(tmp_path / "V.csv"))
    assert result.exit_code == 2 and "'--data' / '--voltage'" in text and "same sweeps" in text, text
    result, text = _invoke("fit", "lif", "--data", str(cell_npz), *_FIT_QUICK, "--dt", "0.1")
    assert result.exit_code == 2 and "Invalid value for '--dt'" in text, text
    assert "--dt is only for layouts without one" in text and "`dt`" not in text


def test_fit_csv_errors_speak_of_options_and_blame_the_table_at_fault(tmp_path):
    """Review: a table without an index column was told to pass `index_column=False` (a Python argument),
    and a NaN in the voltage table was blamed on --data."""
    current, voltage = np.full((2, 30), 100.0), np.full((2, 30), -65.0)
    np.savetxt(tmp_path / "I.csv", current, delimiter=",")  # no index column
    np.savetxt(tmp_path / "V.csv", voltage, delimiter=",")
    tables = ("--data", str(tmp_path / "I.csv"), "--voltage", str(tmp_path / "V.csv"), "--dt", "0.1")
    result, text = _invoke("fit", "lif", *tables, *_FIT_QUICK)
    assert result.exit_code == 2 and "Invalid value for '--data'" in text, text
    assert "pass --no-index-column" in text and "index_column" not in text
    result, text = _invoke("fit", "lif", *tables, *_FIT_QUICK, "--no-index-column")
    assert result.exit_code == 0 and "2 sweeps from" in text, text
    voltage[1, 5] = np.nan
    np.savetxt(tmp_path / "V.csv", voltage, delimiter=",")
    result, text = _invoke("fit", "lif", *tables, *_FIT_QUICK, "--no-index-column")
    assert result.exit_code == 2 and "Invalid value for '--voltage'" in text and "`voltage` has 1 NaN" in text


def test_fit_errors_name_the_option_not_the_argument(cell_npz):
    result, text = _invoke("fit", "hh", "--data", str(cell_npz), *_FIT_QUICK)
    assert result.exit_code == 2 and "'--input-scale'" in text, text
    assert "pass --input-scale (the factor" in text and "`input_scale`" not in text


def test_fit_csv_with_one_column_per_sweep_is_blamed_on_the_layout(tmp_path):
    # two sweeps of 50 samples written one column per sweep: read as 50 sweeps, each an index and one sample
    for name in ("I", "V"):
        np.savetxt(tmp_path / f"{name}.csv", np.full((50, 2), -65.0), delimiter=",")
    csv_args = ("--voltage", str(tmp_path / "V.csv"), "--dt", "0.1")
    result, text = _invoke("fit", "lif", "--data", str(tmp_path / "I.csv"), *csv_args, *_FIT_QUICK)
    assert result.exit_code == 2, text
    assert "'--data'" in text and "one row per sweep" in text and "transpose" in text
    assert "sweeps from" not in text


def test_fit_csv_without_sweeps_is_blamed_on_data(tmp_path):
    (tmp_path / "I.csv").write_text("")
    csv_args = ("--voltage", str(tmp_path / "I.csv"), "--dt", "0.1")
    result, text = _invoke("fit", "lif", "--data", str(tmp_path / "I.csv"), *csv_args, *_FIT_QUICK)
    assert result.exit_code == 2, text
    assert "'--data'" in text and "holds no rows of samples" in text


def test_fit_data_that_is_a_folder_is_named_so(tmp_path):
    result, text = _invoke("fit", "lif", "--data", str(tmp_path), "--format", "nwb", *_FIT_QUICK)
    assert result.exit_code == 2, text
    assert "'--data'" in text and "is a folder" in text


def test_fit_choices_are_the_librarys():
    from diffbrain import cli, fit

    assert [m.value for m in cli.FitMethod] == list(fit.METHODS)
    assert all(hasattr(fit, name) for name in cli._LOSSES.values()) and set(cli._LOSSES) == set(cli.Loss)


def test_fit_help_shows_the_default_bounds_and_every_method():
    result, text = _invoke("fit", "--help")
    assert result.exit_code == 0, text
    assert "v/10 to 10·v" in text  # Rich once ate "[v/10, 10·v]" as a markup tag
    assert "ng_ngopt" in text and "one row per sweep" in text
    # "best of 11 starts" after "4 starts" surprised: lbfgsb's restarts are independent starts too
    assert "lbfgs and lbfgsb add fresh random restarts while --budget is left" in text


def test_reproduce_refuses_a_file_as_out_folder(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    result, text = _invoke("reproduce", "--quick", "--out", str(afile))
    assert result.exit_code == 2, text
    assert "'--out'" in text and "is a file; pass a folder" in text
    assert "expected duration" not in text and afile.read_text() == "x"


@pytest.mark.parametrize("where", ["blocker/reproduce", "/proc/nowhere"])
def test_reproduce_names_out_when_it_cannot_be_made(where, tmp_path, monkeypatch):
    """Review: /proc/nowhere gave a bare "Error: [Errno 2] …" (a FileNotFoundError) naming no option."""
    from diffbrain import reproduce

    if where.startswith("/proc") and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("")
    monkeypatch.setattr(reproduce, "run", lambda *args, **kwargs: pytest.fail("ran without a folder"))
    result, text = _invoke("reproduce", "--quick", "--out", where)
    assert result.exit_code == 2, text
    assert "Invalid value for '--out'" in text and "expected duration" not in text


def test_reproduce_reports_a_write_error_without_a_traceback(tmp_path, monkeypatch):
    from diffbrain import reproduce

    def unwritable(out, budget, log):
        raise PermissionError(13, "Permission denied", str(out / "fit"))

    monkeypatch.setattr(reproduce, "run", unwritable)
    monkeypatch.setattr(reproduce, "_refuse_missing_data", lambda *args: None)  # runs without the data too
    result, text = _invoke("reproduce", "--quick", "--out", str(tmp_path / "rep"))
    assert result.exit_code == 1, text
    assert "cannot write under" in text and "Permission denied" in text and "Traceback" not in text


@pytest.mark.parametrize("command", [["bench", "throughput"], ["leaderboard", "results"]])
def test_an_empty_out_is_refused_not_taken_as_the_current_folder(tmp_path, monkeypatch, command):
    """Review: typer read `--out ''` as Path('') = '.', so `bench` merged its CSV into the current folder."""
    monkeypatch.chdir(tmp_path)
    result, text = _invoke(*command, "--out", "")
    assert result.exit_code == 2, text
    assert "Invalid value for '--out': empty" in text, text
    assert list(tmp_path.iterdir()) == []
