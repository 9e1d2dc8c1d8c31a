"""The `diffbrain` command: listing, simulating, writing files, and clear errors on bad input."""

import csv
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from diffbrain import __version__, zoo
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
    _, text = _invoke()
    assert "Usage:" in text and "simulate" in text


def test_models_lists_every_neuron_with_parameters_and_units():
    result, text = _invoke("models")
    assert result.exit_code == 0, text
    assert re.search(r"lif .*V_th -50 mV spike threshold", text)
    assert re.search(r"C 250 pF membrane capacitance", text)
    assert re.search(r"--current 500 pA", text)
    for entry in registry.NEURONS.values():
        assert f" {entry.name} " in text
        assert entry.make().input_unit in text


def test_models_lists_every_synapse_when_the_zoo_has_them():
    synapses = getattr(registry, "SYNAPSES", {})
    if not synapses:
        pytest.skip("no synapse registry yet")
    result, text = _invoke("models")
    assert result.exit_code == 0, text
    assert "Synapse models" in text
    for name in synapses:
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
    first_times = {}
    for flag in ([], ["--float64"]):
        out = tmp_path / f"trace{len(flag)}.csv"
        result, text = _invoke("simulate", "lif", "--duration", "20", "--out", str(out), *flag)
        assert result.exit_code == 0, text
        first_times[text.split("exp-euler; ")[1].split()[0]] = out.read_text().splitlines()[1].split(",")[0]
    # 0.1 ms is not exact in binary; the CSV keeps 9 significant digits, enough to tell the precisions apart.
    assert first_times == {"float32": "0.100000001", "float64": "0.1"}


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
    ],
)
def test_bad_options_fail_naming_the_option(tmp_path, args, named):
    out = tmp_path / "trace.csv"
    result, text = _invoke("simulate", "lif", "--out", str(out), *args)
    assert result.exit_code == 2, text
    assert f"'{named}'" in text
    assert "Traceback" not in text
    assert not out.exists()


def test_unknown_model_lists_the_choices():
    result, text = _invoke("simulate", "nosuchneuron")
    assert result.exit_code == 2
    assert "nosuchneuron" in text
    assert all(name in text for name in registry.NEURONS)
    assert "Traceback" not in text


def test_diffrax_solver_on_a_model_with_resets_is_a_clear_error():
    if not hasattr(zoo, "solve"):
        pytest.skip("zoo.solve is not available")
    result, text = _invoke("simulate", "lif", "--solver", "tsit5")
    assert result.exit_code == 2, text
    assert "Error:" in text and "tsit5" in text
    assert "Traceback" not in text


def test_tsit5_solves_hh_like_exponential_euler():
    if "hh" not in registry.NEURONS or not hasattr(zoo, "solve"):
        pytest.skip("hh or zoo.solve is not available")
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
    assert "'--out'" in text and "taken" in text
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
