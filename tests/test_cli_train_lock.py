"""`diffbrain train` refuses, before it writes into --out: a folder another run holds the lock of, and a --dt
that makes a trial too long to sample."""

import re

import typer
from typer.testing import CliRunner

from diffbrain import _cli_train
from diffbrain._atomic import exclusive_lock

app = typer.Typer()
app.command("train")(_cli_train.train)


@app.callback()
def _main() -> None:
    """A group, so the command is invoked by name as under `diffbrain`."""


_runner = CliRunner()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
SMALL = ("--n-rec", "10", "--batch-size", "2", "--steps", "1")


def _invoke(*args: str):
    result = _runner.invoke(app, ["train", *args], env={"COLUMNS": "200"})
    return result, _squeezed(result.output)


def _squeezed(text: str) -> str:
    """``text`` without whitespace and panel borders: the consoles wrap at their width, inside paths too."""
    return "".join(re.sub(r"[│╭╮╰╯─]", "", _ANSI.sub("", text)).split())


def test_train_refuses_an_out_folder_another_run_holds_and_leaves_it_as_it_was(tmp_path):
    """Review s26: two runs into one --out took no lock; both exit 0, one's config.json beside the other's
    checkpoint. The lock is held here as a run holds it (its file in --out, without waiting)."""
    out = tmp_path / "run"
    out.mkdir()
    config = '{"task": "evidence-accumulation", "method": "bptt", "n_rec": 10, "lr": 0.05}'
    (out / "config.json").write_text(config)  # of a run started, not yet at its first checkpoint
    with exclusive_lock(out / _cli_train.LOCK, wait=False):
        result, text = _invoke(*SMALL, "--dt", "10", "--lr", "0.01", "--out", str(out))
    assert result.exit_code == 2, text
    assert (
        _squeezed(
            f"Invalid value for '--out': another diffbrain train is writing into {out} (it holds the lock on "
            f"{out / _cli_train.LOCK}); wait for it to end or choose another --out."
        )
        in text
    )
    assert sorted(path.name for path in out.iterdir()) == [_cli_train.LOCK, "config.json"]
    assert (out / "config.json").read_text() == config


def test_train_refuses_a_time_step_that_makes_a_trial_too_long_before_writing(tmp_path):
    """Review s26: --dt 1e-9 passed and failed in sampling (16 TiB, MemoryError) after writing config.json
    and run.json into --out."""
    result, text = _invoke(*SMALL, "--dt", "1e-9", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, text
    assert (
        _squeezed(
            "Invalid value for '--dt': 1e-09 ms makes a trial of EvidenceAccumulation (2200 ms) "
            "2,200,000,000,000 steps, more than 1,000,000; pass a --dt of at least 0.0022 ms."
        )
        in text
    )
    assert not (tmp_path / "run").exists()


def test_train_names_the_delay_too_when_it_makes_the_trial_too_long(tmp_path):
    result, text = _invoke(*SMALL, "--dt", "1", "--delay", "2e6", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, text
    assert (
        _squeezed("Invalid value for '--dt' / '--delay': 1 ms makes a trial of EvidenceAccumulation") in text
    )
    assert _squeezed("pass a --dt of at least 2.0012 ms or a shorter --delay.") in text
    assert not (tmp_path / "run").exists()
