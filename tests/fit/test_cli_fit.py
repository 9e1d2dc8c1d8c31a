"""`diffbrain fit`: fits a recording file, writes the result JSON and the plot, rejects bad options."""

import re
import warnings
from types import SimpleNamespace

import jax.numpy as jnp
import pytest
from typer.testing import CliRunner

from diffbrain import fit, zoo
from diffbrain.cli import app

_runner = CliRunner()


@pytest.fixture(scope="module")
def recording_file(tmp_path_factory):
    sweeps = fit.synthetic_sweeps(zoo.LIF(g_L=20.0, V_th=0.0), jnp.full((1, 400), 200.0), dt=0.1)
    return sweeps[0].save_npz(tmp_path_factory.mktemp("data") / "lif.npz")


def _invoke(*args):
    result = _runner.invoke(app, ["fit", *map(str, args)], env={"COLUMNS": "200"})
    return result, " ".join(re.sub(r"\x1b\[[0-9;]*m", "", result.output).split())


def test_fit_writes_json_and_plot(recording_file, tmp_path):
    out, plot = tmp_path / "fit.json", tmp_path / "fit.png"
    result, text = _invoke(
        "lif",
        "--data",
        recording_file,
        "--free",
        "g_L=5:50",
        "--method",
        "lbfgsb",
        "--starts",
        "1",
        "--budget",
        "30",
        "--out",
        out,
        "--plot",
        plot,
    )
    assert result.exit_code == 0, text
    loaded = fit.FitResult.load(out)
    assert loaded.params["g_L"] == pytest.approx(20.0, rel=1e-3)
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--free", "gNa=1:2"], "its parameters are"),
        (["--free", "g_L=5"], "NAME=LOW:HIGH"),
        (["--free", "g_L", "--method", "newton"], "lbfgsb"),
        (["--free", "g_L", "--voltage", "v.csv"], "--voltage is for CSV data"),
        (["--free", "g_L", "--current-unit", "nA"], "--current-unit is for CSV data"),
        (["--free", "g_L", "--dt", "0.1"], "'--dt': NPZ file"),
    ],
)
def test_bad_options_are_explained(recording_file, args, message):
    result, text = _invoke("lif", "--data", recording_file, *args, "--budget", "5")
    assert result.exit_code != 0 and message in text, text


def test_fit_splits_the_batch_over_the_devices_asked_for(recording_file, tmp_path):
    out = tmp_path / "fit.json"
    args = ("lif", "--data", recording_file, "--free", "g_L=5:50", "--method", "random", "--budget", "16")
    result, text = _invoke(*args, "--devices", "2", "--out", out)
    assert result.exit_code == 0, text
    assert fit.FitResult.load(out).info["devices"] == 2
    result, text = _invoke(*args, "--devices", "99")
    assert result.exit_code != 0 and "more devices" in text, text


def test_a_fit_in_which_no_start_ran_fails_and_says_to_raise_the_budget(recording_file, tmp_path):
    """Review: it exited 0 with a table of an untried start (loss inf) and a raw RuntimeWarning."""
    out, plot = tmp_path / "fit.json", tmp_path / "fit.png"
    args = ("lif", "--data", recording_file, "--free", "g_L=5:50", "--method", "cmaes", "--budget", "3")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, text = _invoke(*args, "--out", out, "--plot", plot)
    assert result.exit_code == 1, text
    assert "Error: no start ran: --budget 3 simulations" in text and "raise --budget" in text
    assert "best of" not in text and "loss inf" not in text
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert {start.status for start in fit.FitResult.load(out).starts} == {"not run"}  # the record of why
    assert not plot.exists() and "not written: there is no fit to draw" in text


def test_a_fit_whose_every_start_failed_fails_naming_the_first_failure(recording_file, monkeypatch):
    failed = fit.result.StartResult(jnp.zeros(1), float("inf"), "failed", "the loss was NaN at step 1", 5.0)
    monkeypatch.setattr(
        fit, "fit", lambda *args, **kwargs: SimpleNamespace(loss=float("inf"), starts=[failed] * 2)
    )
    result, text = _invoke("lif", "--data", recording_file, "--free", "g_L=5:50", "--budget", "10")
    assert result.exit_code == 1, text
    assert "no start reached a finite loss (2 of 2 failed; the first: the loss was NaN at step 1)" in text
    assert "--free bounds" in text and "best of" not in text
