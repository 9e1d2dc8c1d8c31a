"""Review s26 of the CLI: the network --out CSV keeps the bin centres of long runs, cuba's --dt limit, and
refusals that name the option before anything is announced (`fit --free`, `reproduce` without its data)."""

import re
from types import SimpleNamespace

import numpy as np
from typer.testing import CliRunner

from diffbrain.cli import app

runner = CliRunner()


def _invoke(*args: str):
    """The result and its output as one line of words, without panel borders (long messages wrap in them)."""
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result, " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())


def test_network_csv_keeps_bin_centres_past_100_000_ms(tmp_path):
    """Review: t_ms was written with 6 significant digits, so `simulate cuba --duration 100020 --bin 5` wrote
    100002, 100008 for the centres 100002.5, 100007.5 (and --bin 1 repeated times in neighbouring rows)."""
    from diffbrain._cli_networks import _write_rates_csv

    n_bins = 100_020 // 5
    result = SimpleNamespace(names=["E", "I"], rate_trace=lambda bin_ms: np.full((n_bins, 2), 1.23456789))
    path = tmp_path / "rates.csv"
    _write_rates_csv(path, result, 5.0)
    lines = path.read_text().splitlines()
    assert lines[0] == "t_ms,E,I"
    assert lines[-2:] == ["100012.5,1.23457,1.23457", "100017.5,1.23457,1.23457"]
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    np.testing.assert_array_equal(table[:, 0], (np.arange(n_bins) + 0.5) * 5.0)
    one_ms = tmp_path / "one_ms.csv"
    _write_rates_csv(one_ms, SimpleNamespace(names=["E"], rate_trace=lambda b: np.zeros((100_006, 1))), 1.0)
    times = np.loadtxt(one_ms, delimiter=",", skiprows=1)[:, 0]
    assert len(np.unique(times)) == len(times) and times[-1] == 100_005.5


def test_cuba_refuses_a_dt_at_which_its_rates_drift():
    """Review: cuba took any --dt; its E rate went from 5.03 Hz at 0.1 ms to 5.69 at 2, 6.5 at 10, 8.13 at
    20 (4,000 neurons, 1000 ms), exit 0."""
    from diffbrain._cli_networks import MAX_DT

    result, text = _invoke("simulate", "cuba", "--scale", "0.05", "--duration", "20", "--dt", "2")
    assert result.exit_code == 2, text
    assert (
        "Invalid value for '--dt': 2 ms is above 1 ms, the largest time step the cuba network takes" in text
    )
    assert "pass --dt ≤ 1." in text and "cuba:" not in text  # refused before the header
    assert MAX_DT["cuba"] == 1.0
    _, help_text = _invoke("simulate", "--help")
    assert "coba and microcircuit take at most 0.5 ms, cuba 1 ms" in help_text


def test_fit_bounds_the_model_refuses_name_free_before_the_header(tmp_path):
    """Review: `--free "C=-10:10,g_L"` printed the "lif: 2 sweeps" header, then blamed `free['C']`, a Python
    argument, not --free."""
    from diffbrain import fit

    data = tmp_path / "cell.npz"
    fit.Recording(0.1, np.full((2, 50), 300.0), np.full((2, 50), -65.0)).save_npz(data)
    args = ("fit", "lif", "--data", str(data), "--free", "C=-10:10,g_L", "--budget", "2", "--starts", "1")
    result, text = _invoke(*args)
    assert result.exit_code == 2, text
    assert (
        "Invalid value for '--free': C=-10:10 reaches C = -10, which LIF refuses: LIF: `C` must be > 0 pF"
    ) in text
    assert "Narrow the bounds of `C` to values LIF accepts." in text
    assert "free[" not in text and "sweeps from" not in text


def test_reproduce_without_the_connectome_is_refused_before_it_is_announced(tmp_path, monkeypatch):
    """Review: without the connectome, `reproduce --quick` printed "expected duration about 3 min" and only
    then refused, though its help says the run is refused before it starts."""
    monkeypatch.setenv("DIFFBRAIN_DATA", str(tmp_path / "nonexistent"))
    out = tmp_path / "quick"
    result, text = _invoke("reproduce", "--quick", "--out", str(out))
    assert result.exit_code == 1, text
    expected = (
        "Error: the network section needs the connectome data folder conn-macaque-markov2014-29areas, which "
        f"is not at {tmp_path / 'nonexistent' / 'conn-macaque-markov2014-29areas'}"
    )
    assert "".join(text.split()).startswith("".join(expected.split())), text  # the console wraps in paths
    assert "expected duration" not in text and not out.exists()
