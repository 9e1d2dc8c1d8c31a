"""`diffbrain simulate coba|cuba|multiarea|microcircuit` (`diffbrain._cli_networks.simulate_network`):
rates table, PNG and CSV written atomically, errors that name the option."""

import re

import numpy as np
import pytest
from typer.testing import CliRunner

from diffbrain._cli_networks import DATA_FOLDERS, _data_folder
from diffbrain.cli import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["simulate", *args], env={"COLUMNS": "200"})


def _text(result) -> str:
    """The output as one line of words, without the error panel's borders (long messages wrap in it)."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())


def test_coba_prints_rates_and_writes_raster_and_csv(tmp_path):
    raster, out = tmp_path / "plots" / "coba.png", tmp_path / "coba.csv"
    result = _run("coba", "--scale", "0.1", "--duration", "100", "--raster", str(raster), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "400 neurons, 100 ms" in result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") >= 4}
    assert set(rows) >= {"E", "I"} and "320" in rows["E"] and "80" in rows["I"]
    assert raster.stat().st_size > 5000
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    assert open(out).readline().strip() == "t_ms,E,I"
    np.testing.assert_allclose(table[:, 0], 2.5 + 5.0 * np.arange(20))
    # The printed E rate is the mean of the binned trace (equal bins cover the whole run).
    printed = float(rows["E"].split("│")[3])
    assert printed == pytest.approx(table[:, 1].mean(), rel=0.01)
    assert not list(tmp_path.rglob(".*.tmp"))


def test_cuba_runs():
    result = _run("cuba", "--scale", "0.1", "--duration", "20")
    assert result.exit_code == 0, result.output
    assert "cuba, scale 0.1: 400 neurons" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("hopfield",), "hopfield"),
        (("coba", "--current", "5"), "--current applies to a single neuron, not the coba network"),
        (("lif", "--scale", "2", "--raster", "x.png"), "--scale, --raster applies to networks"),
        (("coba", "--scale", "0.001"), "--scale"),
        (("coba", "--duration", "-5"), "--duration"),
        (("coba", "--dt", "nan"), "--dt"),
        (("coba", "--scale", "0.1", "--duration", "0.25"), "multiple of dt"),
        (("microcircuit", "--scale", "2"), "at most full scale"),
        (("coba", "--data", "/nonexistent"), "--data is for multiarea and microcircuit"),
        (("coba", "--duration", "1e9"), "limit 100,000,000"),
        (("coba", "--seed", str(2**70)), "must lie in 0 … 2³² − 1"),
    ],
)
def test_bad_input_names_the_option(args, message):
    result = _run(*args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_connectome_models_need_their_data(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFBRAIN_DATA", str(tmp_path))
    result = _run("multiarea", "--duration", "1")
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "'--data'" in text
    assert f"the {DATA_FOLDERS['multiarea']} folder, which is not at" in text and "$DIFFBRAIN_DATA" in text
    result = _run("microcircuit", "--data", str(tmp_path / "missing"))
    assert result.exit_code == 2 and "does not exist" in " ".join(result.output.split())


def test_without_data_or_environment_the_shared_data_beside_the_checkout_is_used(shared_data, monkeypatch):
    monkeypatch.delenv("DIFFBRAIN_DATA", raising=False)
    for name, folder in DATA_FOLDERS.items():
        found = _data_folder(name, None)
        assert found.is_dir() and found.resolve() == (shared_data / folder).resolve()


def test_bad_data_folder_is_blamed_on_data(tmp_path):
    for name in ("microcircuit", "multiarea"):
        result = _run(name, "--data", str(tmp_path), "--duration", "1")
        assert result.exit_code == 2
        assert "'--data'" in result.output and "'--scale'" not in result.output
    for file in ("fln_29x29.csv", "distance_mm_29x29.csv", "hierarchy_29.csv", "areas.txt"):
        (tmp_path / file).write_text("x,y\n")
    result = _run("multiarea", "--data", str(tmp_path), "--duration", "1")
    assert result.exit_code == 2 and "'--data'" in result.output
    assert "not a table of numbers" in " ".join(result.output.split())


def test_multiarea_dt_above_the_shortest_delay_is_an_error_not_a_hang(shared_data):
    """The shortest wired mean delay of the Markov connectome is 1.43 ms; --dt 2.5 used to hang the build."""
    folder = shared_data / DATA_FOLDERS["multiarea"]
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    result = _run("multiarea", "--data", str(folder), "--duration", "5", "--dt", "2.5")
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "'--dt'" in output and "1.43 ms" in output and "`dt` = 2.5 ms" in output


def test_unwritable_raster_is_refused_before_simulating(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = tmp_path / "rates.csv"
    result = _run(
        "coba", "--scale", "0.1", "--duration", "10", "--raster", str(blocker / "x.png"), "--out", str(out)
    )
    assert result.exit_code == 2
    assert "'--raster'" in result.output and "is a file, not a folder" in _text(result)
    assert "wall time" not in result.output and not out.exists()


def test_a_raster_that_fails_after_simulating_still_writes_the_rates(tmp_path, monkeypatch):
    from diffbrain import _cli_networks

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_cli_networks, "_write_figure", full_disk)
    out = tmp_path / "rates.csv"
    result = _run(
        "coba", "--scale", "0.05", "--duration", "10", "--raster", str(tmp_path / "x.png"), "--out", str(out)
    )
    assert result.exit_code == 1, result.output
    assert "--raster: cannot write" in _text(result)
    assert open(out).readline().strip() == "t_ms,E,I" and np.loadtxt(
        out, delimiter=",", skiprows=1
    ).shape == (2, 3)


def test_a_bin_longer_than_the_run_is_refused(tmp_path):
    out = tmp_path / "rates.csv"
    result = _run("coba", "--scale", "0.05", "--duration", "5", "--bin", "1e9", "--out", str(out))
    assert result.exit_code == 2
    assert "'--bin'" in result.output and "longer than --duration" in _text(result)
    assert not out.exists()


def test_multiarea_from_the_shared_connectome(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFBRAIN_DATA", str(shared_data))
    raster = tmp_path / "multiarea.png"
    result = _run("multiarea", "--scale", "0.01", "--duration", "20", "--raster", str(raster))
    assert result.exit_code == 0, result.output
    populations = [line for line in result.output.splitlines() if "/E " in line or "/I " in line]
    assert len(populations) == 58 and "V1/E" in populations[0]
    assert raster.stat().st_size > 5000


def test_microcircuit_prints_the_reference_rates(shared_data):
    folder = shared_data / DATA_FOLDERS["microcircuit"]
    result = _run("microcircuit", "--scale", "0.01", "--duration", "10", "--data", str(folder))
    assert result.exit_code == 0, result.output
    assert "reference (Hz)" in result.output and "L23e" in result.output and "771 neurons" in result.output


def test_a_microcircuit_scale_leaving_a_population_empty_names_the_option(shared_data):
    """Review: the message said "`scale` = 0.0001 …; pass scale ≥ …", the Python argument."""
    folder = shared_data / DATA_FOLDERS["microcircuit"]
    result = _run("microcircuit", "--scale", "0.0001", "--duration", "1", "--data", str(folder))
    assert result.exit_code == 2, result.output
    text = _text(result)
    assert "Invalid value for '--scale': --scale 0.0001 leaves population(s)" in text
    assert "empty; pass --scale ≥ 0.00047." in text and "`" not in text


def test_a_bin_that_is_not_a_multiple_of_dt_is_refused(tmp_path):
    """Review: --bin 0.25 at --dt 0.1 was silently rounded to 0.2 ms bins."""
    out = tmp_path / "rates.csv"
    for bin_ms in ("0.25", "0.05"):
        result = _run("coba", "--scale", "0.05", "--duration", "2", "--bin", bin_ms, "--out", str(out))
        assert result.exit_code == 2 and "'--bin'" in result.output, result.output
        assert re.search(r"multiple of dt|shorter than one time step", _text(result))
    assert not out.exists()
