"""Where `diffbrain` writes: devices and FIFOs written into, outputs that would replace each other or an
input refused before any work."""

import os
import re
import stat
import threading

import numpy as np
import pytest
from typer.testing import CliRunner

from diffbrain import cli
from diffbrain.cli import app

_runner = CliRunner()
_DECORATION = re.compile(r"\x1b\[[0-9;]*m|[│┃╭╮╰╯─]")


def _invoke(*args: str):
    result = _runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result, " ".join(_DECORATION.sub(" ", result.output).split())


def _read_in_background(fifo) -> tuple[threading.Thread, list[str]]:
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    return reader, received


def test_simulate_writes_into_a_fifo_and_leaves_it_a_fifo(tmp_path):
    """Review: `--out` naming a FIFO or character device replaced it with a regular file (as root,
    `--out /dev/null` destroyed /dev/null)."""
    fifo = tmp_path / "trace"
    os.mkfifo(fifo)
    reader, received = _read_in_background(fifo)
    result, text = _invoke("simulate", "lif", "--duration", "0.3", "--out", str(fifo))
    assert result.exit_code == 0, text
    reader.join(timeout=5)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert received and received[0].splitlines()[0] == "t_ms,V_mV,spike"


def test_check_output_accepts_a_fifo_in_a_folder_it_cannot_write(tmp_path, monkeypatch):
    """`--out /dev/stdout` as a user who cannot write /dev: the FIFO is written into, so only it must be
    writable, not its folder."""
    fifo = tmp_path / "stdout"
    os.mkfifo(fifo)
    access = os.access
    monkeypatch.setattr(cli.os, "access", lambda path, mode: access(path, mode) and not os.path.isdir(path))
    cli.check_output("--out", fifo)
    with pytest.raises(cli.typer.BadParameter, match="is not writable"):
        cli.check_output("--out", tmp_path / "trace.csv")


def test_simulate_refuses_out_and_plot_naming_one_file(tmp_path):
    """Review: `--out trace.csv --plot trace.csv` wrote the CSV, then the PNG over it, exit 0."""
    path = tmp_path / "trace.csv"
    result, text = _invoke("simulate", "lif", "--duration", "1", "--out", str(path), "--plot", str(path))
    assert result.exit_code == 2, text
    assert "Invalid value for '--plot'" in text and "--out and --plot both name" in text
    assert "spikes:" not in text and not path.exists()


def test_simulate_network_refuses_raster_and_out_naming_one_file(tmp_path):
    path = tmp_path / "rates.csv"
    result, text = _invoke(
        "simulate",
        "coba",
        "--duration",
        "10",
        "--raster",
        str(path),
        "--out",
        str(tmp_path / "." / "rates.csv"),
    )
    assert result.exit_code == 2, text
    assert "Invalid value for '--out'" in text and "--raster and --out both name" in text


def test_outputs_may_share_a_device(tmp_path):
    fifo = tmp_path / "null"
    os.mkfifo(fifo)
    cli.check_distinct({"--out": fifo, "--plot": fifo})


@pytest.mark.parametrize("option", ["--out", "--plot"])
def test_fit_refuses_an_output_that_is_an_input(tmp_path, option):
    """Review: `fit --voltage V.csv --out V.csv` replaced the recording with the fit's JSON."""
    current, voltage = tmp_path / "I.csv", tmp_path / "V.csv"
    np.savetxt(current, np.column_stack([np.arange(2), np.full((2, 10), 100.0)]), delimiter=",")
    np.savetxt(voltage, np.column_stack([np.arange(2), np.full((2, 10), -65.0)]), delimiter=",")
    before = voltage.read_bytes()
    args = ("--data", str(current), "--voltage", str(voltage), "--dt", "0.1", "--free", "g_L")
    result, text = _invoke("fit", "lif", *args, option, str(voltage))
    assert result.exit_code == 2, text
    assert f"Invalid value for '{option}'" in text and "is the --voltage file" in text
    assert voltage.read_bytes() == before and "sweeps from" not in text


def test_a_refused_run_leaves_no_folder_and_a_finished_one_makes_it(tmp_path):
    """Review: check_output made --out's folders before later checks refused the run, leaving them empty."""
    args = ("--voltage", str(tmp_path / "V.csv"), "--dt", "0.1", "--free", "g_L")
    result, text = _invoke(
        "fit",
        "lif",
        "--data",
        str(tmp_path / "missing.csv"),
        *args,
        "--out",
        str(tmp_path / "new" / "fit.json"),
    )
    assert result.exit_code == 2 and "Invalid value for '--data'" in text, text
    assert not (tmp_path / "new").exists()
    out = tmp_path / "new" / "deep" / "trace.csv"
    result, text = _invoke("simulate", "lif", "--duration", "1", "--out", str(out))
    assert result.exit_code == 0, text
    assert out.read_text().startswith("t_ms,V_mV,spike")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("simulate", "lif", "--duration", "1", "--out", ""), "--out"),
        (("simulate", "lif", "--duration", "1", "--plot", ""), "--plot"),
        (("simulate", "cuba", "--scale", "0.05", "--duration", "10", "--raster", ""), "--raster"),
        (("simulate", "cuba", "--scale", "0.05", "--duration", "10", "--out", ""), "--out"),
        (("fit", "lif", "--data", "d.csv", "--out", ""), "--out"),
        (("fit", "lif", "--data", "d.csv", "--plot", ""), "--plot"),
    ],
)
def test_an_empty_output_file_is_refused_by_name(args, option, tmp_path, monkeypatch):
    """Review: typer reads '' as Path('.'), the current folder: an empty file name must be refused as such."""
    monkeypatch.chdir(tmp_path)
    result, text = _invoke(*args)
    assert result.exit_code == 2, text
    assert f"Invalid value for '{option}': empty, which would mean the current folder; name a file." in text
    assert list(tmp_path.iterdir()) == []
