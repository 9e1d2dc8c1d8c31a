"""`diffbrain train`: files written, resuming after an interruption, refusing mismatched settings."""

import contextlib
import csv
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from diffbrain import _cli_train
from diffbrain._atomic import exclusive_lock
from diffbrain.learn.trainer import METRICS, RUN

app = typer.Typer()
app.command("train")(_cli_train.train)


@app.callback()
def _main() -> None:
    """A group, so the command is invoked by name as under `diffbrain`."""


_runner = CliRunner()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The evidence-accumulation protocol at dt = 10 ms (220 steps) on 10 neurons: seconds per run.
TINY = ("--n-rec", "10", "--batch-size", "2", "--dt", "10", "--seed", "3")
# One step of 10 neurons, --dt given by each test: for refusals before training.
ONE_STEP = ("--n-rec", "10", "--batch-size", "2", "--steps", "1")


def _invoke(*args: str):
    result = _runner.invoke(app, ["train", *args], env={"COLUMNS": "200"})
    return result, " ".join(
        re.sub(r"[│╭╮╰╯─]", " ", _ANSI.sub("", result.output)).split()
    )  # panel borders too


def _squeezed(text: str) -> str:
    """``text`` without whitespace and panel borders: the consoles wrap at their width, inside paths too."""
    return "".join(re.sub(r"[│╭╮╰╯─]", "", _ANSI.sub("", text)).split())


def _write_config_of_a_run_stopped_before_its_first_checkpoint(out):
    """A config.json of train's (the settings it marks its runs with), so ``out`` is a train folder."""
    (out / "config.json").write_text('{"task": "evidence-accumulation", "method": "bptt", "n_rec": 10}')


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_train_writes_metrics_checkpoint_and_plots_and_resumes(tmp_path):
    out = tmp_path / "run"
    result, text = _invoke(*TINY, "--method", "es-d-rtrl", "--steps", "2", "--out", str(out))
    assert result.exit_code == 0, text
    assert "es-d-rtrl: 2 steps" in text and "weights ln|W|" in text
    for name in ("metrics.csv", "checkpoint.eqx", "config.json", "weights.json", *_cli_train.PLOTS):
        assert (out / name).stat().st_size > 0, name
    for name in _cli_train.PLOTS:
        assert (out / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not list(out.glob(".*.tmp"))
    first = _rows(out / "metrics.csv")
    assert [row["step"] for row in first] == ["1", "2"]
    assert all(0 <= float(row["accuracy"]) <= 1 and np.isfinite(float(row["loss"])) for row in first)
    fits = json.loads((out / "weights.json").read_text())
    assert set(fits) == {"before", "after"} and set(fits["after"]) == {"input", "E", "I"}
    assert fits["before"]["input"]["mu"] == pytest.approx(np.log(0.03), abs=0.1)
    persistence = json.loads((out / "persistence.json").read_text())
    assert len(persistence["selective_neurons"]) == 2 and "delay activity" in text
    assert persistence["classes"] == [0, 1]  # evidence accumulation (the default task): left, right

    # a longer run in the same folder continues from the checkpoint: the first steps are kept as they were,
    # and the settings file, the same, is not written again
    written = (out / "config.json").stat().st_mtime_ns
    result, text = _invoke(*TINY, "--method", "es-d-rtrl", "--steps", "3", "--out", str(out))
    assert result.exit_code == 0, text
    assert (out / "config.json").stat().st_mtime_ns == written
    resumed = _rows(out / "metrics.csv")
    assert [row["step"] for row in resumed] == ["1", "2", "3"] and resumed[:2] == first
    config = (out / "config.json").read_text()
    assert json.loads(config)["method"] == "es-d-rtrl" and "steps" not in json.loads(config)

    # fewer steps than the checkpoint holds are refused, and nothing is overwritten
    result, text = _invoke(*TINY, "--method", "es-d-rtrl", "--steps", "2", "--out", str(out))
    assert result.exit_code == 2 and "holds 3 steps, more than --steps 2; pass --steps ≥ 3" in text, text
    assert f"--out {out} holds" in text and "checkpoint_dir" not in text
    assert _rows(out / "metrics.csv") == resumed
    assert (out / "config.json").read_text() == config

    # and it equals a run that was never interrupted
    straight = tmp_path / "straight"
    result, text = _invoke(*TINY, "--method", "es-d-rtrl", "--steps", "3", "--out", str(straight))
    assert result.exit_code == 0, text
    assert _rows(straight / "metrics.csv") == resumed


def test_train_refuses_to_resume_with_other_settings(tmp_path):
    out = tmp_path / "run"
    (out).mkdir()
    # written before --connectivity and --p-connect existed: they count as dense and 1.0
    config = {"task": "evidence-accumulation", "method": "bptt", "n_rec": 10, "batch_size": 2, "lr": 0.01}
    config |= {"dt": 10.0, "delay": None, "seed": 3, "steps": 5}
    (out / "config.json").write_text(json.dumps(config))
    (out / "checkpoint.eqx").write_bytes(b"a run to resume")
    result, text = _invoke(*TINY, "--method", "d-rtrl", "--steps", "1", "--out", str(out))
    assert result.exit_code == 2
    assert "method: 'bptt' there, 'd-rtrl' now" in text and "--out" in text and "connectivity" not in text
    assert (out / "checkpoint.eqx").read_bytes() == b"a run to resume"
    assert json.loads((out / "config.json").read_text()) == config


def test_a_run_stopped_before_its_first_checkpoint_leaves_nothing_to_resume(tmp_path):
    """Review: config.json, written before the first step, made --out refuse every other setting after a
    Ctrl-C while compiling, though it held no checkpoint to resume."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(
        json.dumps({"task": "evidence-accumulation", "method": "bptt", "n_rec": 300})
    )
    result, text = _invoke(*TINY, "--method", "es-d-rtrl", "--steps", "1", "--out", str(out))
    assert result.exit_code == 0, text
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "es-d-rtrl" and config["n_rec"] == 10
    assert (out / "checkpoint.eqx").exists()


def test_the_tasks_own_delay_given_or_not_is_the_same_run(tmp_path):
    """Review: config.json held the option as given (None), so `--delay 1000` (the default) was refused."""
    out = tmp_path / "run"
    result, text = _invoke(*TINY, "--task", "evidence-accumulation", "--steps", "1", "--out", str(out))
    assert result.exit_code == 0, text
    assert json.loads((out / "config.json").read_text())["delay"] == 1000.0
    for delay in ("1000", "1000.0"):
        result, text = _invoke(*TINY, "--delay", delay, "--steps", "1", "--out", str(out))
        assert result.exit_code == 0, text
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(config | {"delay": None}))  # as written before the fix
    result, text = _invoke(*TINY, "--delay", "1000", "--steps", "1", "--out", str(out))
    assert result.exit_code == 0, text
    result, text = _invoke(*TINY, "--delay", "500", "--steps", "1", "--out", str(out))
    assert result.exit_code == 2 and "delay: 1000.0 there, 500.0 now" in text, text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--lr", "-1"), "--lr"),
        # 50 ms gaps are not whole steps of 3 ms: --dt's fault, not a `gap_duration` the CLI does not have
        (("--dt", "3"), "'--dt': 3 ms does not divide the 50 ms gap period of EvidenceAccumulation"),
        (("--dt", "10", "--delay", "55"), "'--delay': must be a multiple of --dt (10 ms), ≥ 0; got 55 ms"),
        # 40 Hz at 50 ms is 2 spikes per step: --dt's fault, not a `cue_rate` the CLI does not have
        (
            ("--dt", "50"),
            "'--dt': 50 ms gives EvidenceAccumulation's 40 Hz inputs more than one spike per step",
        ),
        (("--dt", "50"), "pass a --dt of at most 25 ms"),
        (("--task", "delayed-match-to-sample", "--dt", "100"), "'--dt': 100 ms gives DelayedMatchToSample's"),
        (("--method", "adjoint"), "--method"),
        (("--seed", str(2**32)), "'--seed': must lie in 0 … 2³² − 1"),  # only 32 bits reach the key
        (("--seed", "-1"), "'--seed': must lie in 0 … 2³² − 1"),
    ],
)
def test_train_rejects_bad_options_before_training(args, message, tmp_path):
    # TINY after args: a bad option accepted would train for seconds and fail, not for minutes
    result, text = _invoke("--out", str(tmp_path / "run"), *args, *TINY[:4], "--steps", "1")
    assert result.exit_code == 2, text
    assert message in text and "`" not in text
    assert not (tmp_path / "run").exists()  # nothing written, not even config.json


@pytest.mark.parametrize("content", ["{", "[1, 2]", "5", "\udcff"])
def test_train_refuses_an_out_folder_whose_config_is_not_one(content, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_bytes(b"\xff" if content == "\udcff" else content.encode())
    result, text = _invoke(*TINY, "--steps", "1", "--out", str(out))
    assert result.exit_code == 2, text
    assert "'--out'" in text and "is not a diffbrain train config" in text
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_train_refuses_an_out_folder_holding_another_programs_config(tmp_path):
    """Review: any JSON object as config.json was taken for a run's and replaced without a word."""
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.json").write_text('{"project": "my-analysis", "learning_rate": 0.5}')
    result, text = _invoke(*TINY, "--steps", "1", "--out", str(out))
    assert result.exit_code == 2, text
    assert "'--out'" in text and "is not a diffbrain train config (no task, method, n_rec setting)" in text
    assert (out / "config.json").read_text() == '{"project": "my-analysis", "learning_rate": 0.5}'
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_a_refused_checkpoint_leaves_no_config_of_the_refused_settings(tmp_path):
    """Review: a checkpoint folder without config.json (learn.train's own) refused other settings, but
    config.json was written with them first, so the checkpoint's own settings were refused next."""
    out = tmp_path / "run"
    result, text = _invoke(*TINY, "--steps", "1", "--out", str(out))
    assert result.exit_code == 0, text
    for name in ("config.json", *_cli_train.OUTPUTS):  # leaves learn.train's checkpoint
        (out / name).unlink(missing_ok=True)
    result, text = _invoke(*TINY[2:], "--n-rec", "20", "--steps", "1", "--out", str(out))
    assert result.exit_code == 2 and _squeezed("n_exc: 8 there, 16 now") in _squeezed(text), text
    assert not (out / "config.json").exists()
    result, text = _invoke(*TINY, "--steps", "1", "--out", str(out))
    assert result.exit_code == 0, text
    assert json.loads((out / "config.json").read_text())["n_rec"] == 10


def test_an_output_that_cannot_be_written_is_one_error_naming_out_and_the_rest_is_written(tmp_path):
    """Review: an OSError while writing metrics.csv, the plots or the JSON files ended the run with a raw
    traceback (here weights.png is a folder; equally a full disk)."""
    out = tmp_path / "run"
    (out / "weights.png").mkdir(parents=True)
    _write_config_of_a_run_stopped_before_its_first_checkpoint(out)
    result = _runner.invoke(app, ["train", *TINY, "--steps", "1", "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert _squeezed(result.stderr) == _squeezed(
        f"Error: --out: cannot write {out / 'weights.png'}: Is a directory."
    )
    assert json.loads((out / "weights.json").read_text())["after"]
    assert [row["step"] for row in _rows(out / "metrics.csv")] == ["1"]


def test_train_refuses_a_file_as_out(tmp_path):
    out = tmp_path / "afile"
    out.write_text("x")
    result, text = _invoke(*TINY, "--steps", "1", "--out", str(out))
    assert result.exit_code == 2, text
    assert "'--out'" in text and "is a file; pass a folder" in text and out.read_text() == "x"


def test_a_diverged_run_says_so_on_stderr_and_keeps_the_metrics_of_its_finite_steps(tmp_path):
    # Adam at lr 1e300 sends the weights to ~1e300: the conductances overflow, step 2's loss is not finite
    out = tmp_path / "run"
    args = (*TINY, "--lr", "1e300", "--steps", "3", "--checkpoint-every", "1", "--out", str(out))
    result = _runner.invoke(app, ["train", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    stderr = " ".join(result.stderr.split())
    assert "training diverged at step 2" in stderr and "rerun with a smaller --lr and a new --out" in stderr
    assert "Lower the learning rate" not in stderr and "training diverged" not in result.stdout
    assert [row["step"] for row in _rows(out / "metrics.csv")] == ["1"]
    assert (out / "accuracy.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_diverged_run_whose_outputs_cannot_be_written_says_so_in_one_line(tmp_path):
    """It ended in a raw traceback."""
    out = tmp_path / "run"
    (out / "accuracy.png").mkdir(parents=True)
    _write_config_of_a_run_stopped_before_its_first_checkpoint(out)
    args = (*TINY, "--lr", "1e300", "--steps", "3", "--checkpoint-every", "1", "--out", str(out))
    result = _runner.invoke(app, ["train", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert _squeezed(f"Error: --out: cannot write {out / 'accuracy.png'}: Is a directory.") in _squeezed(
        result.stderr
    )
    assert [row["step"] for row in _rows(out / "metrics.csv")] == ["1"]


def test_train_with_sparse_recurrent_connectivity(tmp_path):
    out = tmp_path / "sparse"
    args = ("--connectivity", "sparse", "--p-connect", "0.3", "--method", "es-d-rtrl", "--steps", "1")
    result, text = _invoke(*TINY, *args, "--out", str(out))
    assert result.exit_code == 0, text
    config = json.loads((out / "config.json").read_text())
    assert config["connectivity"] == "sparse" and config["p_connect"] == 0.3
    fits = json.loads((out / "weights.json").read_text())
    # 10 neurons, 8 E and 2 I, p = 0.3 without autapses: about 22 E and 5 I synapses
    assert 8 <= fits["before"]["E"]["count"] <= 40 and fits["before"]["I"]["count"] >= 2
    assert fits["after"]["E"]["count"] == fits["before"]["E"]["count"]


def test_train_method_choices_are_the_librarys():
    from diffbrain import learn

    assert [method.value for method in _cli_train.Method] == list(learn.METHODS)


def test_train_with_checkpointed_bptt(tmp_path):
    out = tmp_path / "checkpointed"
    result, text = _invoke(*TINY, "--method", "bptt-checkpoint", "--steps", "1", "--out", str(out))
    assert result.exit_code == 0, text
    assert json.loads((out / "config.json").read_text())["method"] == "bptt-checkpoint"
    assert [row["step"] for row in _rows(out / "metrics.csv")] == ["1"]


def test_train_writes_its_outputs_when_a_weight_group_has_no_synapses(tmp_path):
    # --p-connect 0: no recurrent synapse, so the E and I groups cannot be fitted; the run still finishes
    out = tmp_path / "unconnected"
    result, text = _invoke(*TINY, "--p-connect", "0", "--steps", "1", "--out", str(out))
    assert result.exit_code == 0, text
    assert "E weights: fewer than 2 synapses" in text and "I weights: fewer than 2 synapses" in text
    fits = json.loads((out / "weights.json").read_text())
    assert fits["after"]["E"] is None and fits["after"]["I"] is None
    assert fits["after"]["input"]["count"] == 100 * 10  # 100 input channels onto 10 neurons
    for name in ("metrics.csv", "persistence.json", *_cli_train.PLOTS):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.parametrize("name", ["delayed_match_to_sample", "evidence_accumulation"])
def test_persistence_selectivity_is_to_what_the_delay_holds(name, monkeypatch):
    # Delayed match-to-sample: the match label is independent of the sample and decided after the delay, so
    # selectivity is to the sample stimulus, read off the sample period; other tasks use the trial's label.
    import jax

    from diffbrain import learn
    from diffbrain.learn import analysis

    task = _cli_train._make_task(_cli_train.Task[name], 10.0, 200.0)
    seen = {}
    real = analysis.persistent_activity

    def spy(spikes, labels, stimulus, delay, **kwargs):
        seen.update(labels=np.asarray(labels), stimulus=np.asarray(stimulus))
        return real(spikes, labels, stimulus, delay, **kwargs)

    monkeypatch.setattr(analysis, "persistent_activity", spy)
    net = learn.EINetwork(task.n_inputs, 6, task.n_outputs, key=jax.random.key(0), dt=task.dt)
    key = jax.random.key(1)
    result = _cli_train._persistence(net, task, key, trials=16)
    rates = type(task)(**{f: getattr(task, f) for f in ("dt", "delay_duration")}, encoding="rate").sample(
        key, 16
    )
    if name == "delayed_match_to_sample":
        sample_rates = np.asarray(rates.inputs)[task.window("sample")]
        sample_rates = sample_rates.reshape(-1, 16, task.n_groups, task.channels_per_group)
        expected = sample_rates[0, :, 1:, 0].argmax(-1)  # the sample group firing, same trials as Poisson
        assert not np.array_equal(expected, np.asarray(rates.labels) - 1), "the test tells the two apart"
        np.testing.assert_array_equal(seen["labels"], expected)
        np.testing.assert_array_equal(seen["stimulus"], task.window("sample"))
        assert result["selective_to"] == "sample"
    else:
        np.testing.assert_array_equal(seen["labels"], np.asarray(rates.labels))
        assert result["selective_to"] == "label"


@pytest.mark.parametrize(
    "names",
    [
        ("metrics.csv", "weights.json", "accuracy.png"),
        ("persistence.json",),
        ("metrics.json",),
        ("run.json",),
        ("metrics.json", "run.json"),
    ],
)
def test_train_refuses_to_replace_files_of_its_names_in_a_folder_without_its_config(names, tmp_path):
    """Review: train into a folder of the user's own metrics.csv, weights.json and accuracy.png replaced them
    without a word (only a foreign config.json was refused); then learn.train's metrics.json and run.json
    were still replaced."""
    out = tmp_path / "mine"
    out.mkdir()
    for name in names:
        (out / name).write_text("my own data")
    result, text = _invoke(*TINY, "--steps", "1", "--out", str(out))
    assert result.exit_code == 2, text
    listed = ", ".join(name for name in (*_cli_train.OUTPUTS, METRICS, RUN) if name in names)
    assert _squeezed(
        f"Invalid value for '--out': {out} holds files named as train's outputs ({listed}) but no "
        "config.json of diffbrain train: they are not a train run's, and this run would replace them; "
        "choose another --out or remove them."
    ) in _squeezed(text)
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    assert all((out / name).read_text() == "my own data" for name in names)


def test_train_replaces_its_own_outputs_when_run_again_into_its_folder(tmp_path):
    out = tmp_path / "run"
    for steps in ("1", "2"):
        result, text = _invoke(*TINY, "--steps", steps, "--out", str(out))
        assert result.exit_code == 0, text
    assert [row["step"] for row in _rows(out / "metrics.csv")] == ["1", "2"]


def test_train_refuses_an_empty_out_instead_of_writing_into_the_current_folder(tmp_path, monkeypatch):
    """Review: --out '' was read as the current folder, which got config.json, the checkpoint and the
    plots."""
    monkeypatch.chdir(tmp_path)
    result, text = _invoke(*TINY, "--steps", "1", "--out", "")
    assert result.exit_code == 2, text
    assert "Invalid value for '--out': empty, which would mean the current folder; name a folder." in text
    assert list(tmp_path.iterdir()) == []


def test_learn_trains_own_checkpoint_folder_without_config_is_still_resumed(tmp_path):
    """Its metrics.json and run.json beside checkpoint.eqx are learn.train's, which checks them itself."""
    out = tmp_path / "run"
    result, text = _invoke(*TINY, "--steps", "1", "--out", str(out))
    assert result.exit_code == 0, text
    for name in ("config.json", *_cli_train.OUTPUTS):
        (out / name).unlink()
    result, text = _invoke(*TINY, "--steps", "2", "--out", str(out))
    assert result.exit_code == 0, text
    assert [row["step"] for row in _rows(out / "metrics.csv")] == ["1", "2"]


def test_train_refuses_an_out_folder_another_run_holds_and_leaves_it_as_it_was(tmp_path):
    """Review s26: two runs into one --out took no lock; both exit 0, one's config.json beside the other's
    checkpoint. The lock is held here as a run holds it (its file in --out, without waiting)."""
    out = tmp_path / "run"
    out.mkdir()
    config = '{"task": "evidence-accumulation", "method": "bptt", "n_rec": 10, "lr": 0.05}'
    (out / "config.json").write_text(config)  # of a run started, not yet at its first checkpoint
    with exclusive_lock(out / _cli_train.LOCK, wait=False):
        result, output = _invoke(*ONE_STEP, "--dt", "10", "--lr", "0.01", "--out", str(out))
    assert result.exit_code == 2, output
    text = _squeezed(output)
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
    result, output = _invoke(*ONE_STEP, "--dt", "1e-9", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, output
    text = _squeezed(output)
    assert (
        _squeezed(
            "Invalid value for '--dt': 1e-09 ms makes a trial of EvidenceAccumulation (2200 ms) "
            "2,200,000,000,000 steps, more than 1,000,000; pass a --dt of at least 0.0022 ms."
        )
        in text
    )
    assert not (tmp_path / "run").exists()


def test_train_names_the_delay_too_when_it_makes_the_trial_too_long(tmp_path):
    result, output = _invoke(*ONE_STEP, "--dt", "1", "--delay", "2e6", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, output
    text = _squeezed(output)
    assert (
        _squeezed("Invalid value for '--dt' / '--delay': 1 ms makes a trial of EvidenceAccumulation") in text
    )
    assert _squeezed("pass a --dt of at least 2.0012 ms or a shorter --delay.") in text
    assert not (tmp_path / "run").exists()


def test_a_run_written_into_out_while_this_one_waited_for_the_lock_is_refused(tmp_path, monkeypatch):
    """The settings are checked again under the lock: another run may have written its config.json and
    checkpoint between the first check and taking the lock; training on would overwrite that run's files."""
    out = tmp_path / "run"
    config = {"task": "evidence-accumulation", "method": "bptt", "n_rec": 10, "batch_size": 2, "lr": 0.01}
    config |= {"dt": 10.0, "delay": None, "seed": 3, "connectivity": "dense", "p_connect": 1.0}
    real_locked = _cli_train._locked

    @contextlib.contextmanager
    def another_run_writes_first(folder):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "checkpoint.eqx").write_bytes(b"the other run's")
        with real_locked(folder):
            yield

    monkeypatch.setattr(_cli_train, "_locked", another_run_writes_first)
    result, text = _invoke(*TINY, "--method", "d-rtrl", "--steps", "1", "--out", str(out))
    assert result.exit_code == 2, text
    assert "method: 'bptt' there, 'd-rtrl' now" in text and "--out" in text
    assert json.loads((out / "config.json").read_text()) == config
    assert (out / "checkpoint.eqx").read_bytes() == b"the other run's"


def test_a_trial_of_at_most_max_trial_steps_steps_is_accepted():
    """The limit is inclusive: exactly `MAX_TRIAL_STEPS` steps is a trial to train on, one more is refused."""
    _cli_train._check_trial_length(SimpleNamespace(n_steps=_cli_train.MAX_TRIAL_STEPS), 1.0, None)
    with pytest.raises(typer.BadParameter, match="more than 1,000,000; pass a --dt of at least"):
        _cli_train._check_trial_length(SimpleNamespace(n_steps=_cli_train.MAX_TRIAL_STEPS + 1), 1.0, None)
