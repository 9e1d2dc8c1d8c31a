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
    output = _text(result)
    assert "'--dt'" in output and "1.428571 ms" in output and "got 2.5 ms" in output


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


def _rate_rows(result) -> dict[str, float]:
    """The printed rates table: population → rate (Hz)."""
    rows = [line.split("│") for line in result.output.splitlines() if line.count("│") >= 4]
    return {cells[1].strip(): float(cells[3]) for cells in rows if cells[1].strip() != "population"}


def _multiarea_rates(folder, pulse, duration_ms: float = 150.0):
    """The E and I rates (Hz) of `MultiArea.simulate` as `simulate multiarea --scale 0.01` runs it."""
    import jax

    from diffbrain.zoo.networks import MultiArea

    build_key, run_key = jax.random.split(jax.random.key(0))
    model = MultiArea.from_connectome(folder, n_per_area=20, key=build_key)
    result = model.simulate(duration_ms, run_key, pulse=pulse)
    return dict(zip(result.names, np.asarray(result.rates()).tolist(), strict=True))


def test_multiarea_runs_without_a_pulse_unless_asked_and_says_so(shared_data):
    """Review: MultiArea.simulate's default pulse (6.3 mV into V1 from 100 to 200 ms) was on without a word:
    the printed V1/E rate was 4.85 Hz instead of the spontaneous 0.90 Hz."""
    folder = shared_data / DATA_FOLDERS["multiarea"]
    for pulse, line in (
        (None, "no pulse: spontaneous activity (--pulse AREA adds 6.3 mV of drive into AREA's excitatory"),
        ("V1", "pulse: 6.3 mV of drive into V1's excitatory neurons, 100 ms to the end of the run at 150 ms"),
    ):
        args = ("--pulse", pulse) if pulse else ()
        result = _run("multiarea", "--scale", "0.01", "--duration", "150", "--data", str(folder), *args)
        assert result.exit_code == 0, result.output
        assert line in _text(result)
        printed, expected = _rate_rows(result), _multiarea_rates(folder, pulse)
        for name in ("V1/E", "V2/E", "V4/E"):
            assert printed[name] == float(f"{expected[name]:.3g}"), (pulse, name)
    assert _multiarea_rates(folder, "V1")["V1/E"] > 2 * _multiarea_rates(folder, None)["V1/E"]


def test_the_pulse_help_says_what_it_adds_and_that_there_is_none_by_default():
    from diffbrain.zoo.networks import MultiArea

    text = _text(_run("--help"))
    assert "multiarea: add 6.3 mV of drive into AREA's excitatory neurons from 100 to 200 ms" in text
    assert "Default: no pulse" in text
    pulse = MultiArea.pulse.__defaults__  # (area, start_ms, duration_ms, amplitude_mV): the help's numbers
    assert pulse[1:] == (100.0, 100.0, 6.3)


def _three_area_connectome(folder):
    """A connectome of areas A, B, C (no V1); shortest wired mean delay 10 mm / 3.5 m/s = 2.86 ms."""
    folder.mkdir()
    distance = np.array([[0, 10, 20], [10, 0, 15], [20, 15, 0]], float)
    fln = np.array([[0, 0.5, 0.1], [0.6, 0, 0.3], [0.2, 0.4, 0]])
    np.savetxt(folder / "distance_mm_29x29.csv", distance, delimiter=",")
    np.savetxt(folder / "fln_29x29.csv", fln, delimiter=",")
    np.savetxt(folder / "hierarchy_29.csv", [0.0, 0.5, 1.0], delimiter=",")
    (folder / "areas.txt").write_text("A\nB\nC\n")
    return folder


def test_a_connectome_without_v1_runs_and_a_pulse_area_it_lacks_is_blamed_on_pulse(tmp_path):
    """Review: with --data lacking an area V1 the hidden default pulse failed as "Invalid value for
    '--duration/--dt': `area` 'V1' is not one of …"."""
    folder = _three_area_connectome(tmp_path / "conn3")
    result = _run("multiarea", "--data", str(folder), "--duration", "20")
    assert result.exit_code == 0, result.output
    assert set(_rate_rows(result)) == {"A/E", "A/I", "B/E", "B/I", "C/E", "C/I"}
    result = _run("multiarea", "--data", str(folder), "--duration", "150", "--pulse", "V1")
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--pulse': 'V1' is not an area of the connectome; its areas: A, B, C." in _text(
        result
    )
    assert "scale" not in result.output  # refused before the header
    result = _run("multiarea", "--data", str(folder), "--duration", "150", "--pulse", "B")
    assert result.exit_code == 0 and "pulse: 6.3 mV of drive into B's excitatory neurons" in _text(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--duration", "50", "--pulse", "A"),
            "the pulse into A starts at 100 ms, when the 50 ms run has ended",
        ),
        (
            ("--duration", "100", "--pulse", "A"),
            "the pulse into A starts at 100 ms, when the 100 ms run has ended",
        ),
        (("--dt", "3"), "--dt must lie below the shortest mean delay: 2.857143 ms, from B to A"),
        (  # the delay itself (10 mm / 3.5 m/s, written out in full) is not below it
            ("--dt", repr(10 / 3.5)),
            "--dt must lie below the shortest mean delay: 2.857143 ms, from B to A",
        ),
    ],
    ids=["pulse-after-the-run", "pulse-at-the-end", "dt-above-the-delay", "dt-at-the-delay"],
)
def test_a_pulse_after_the_run_and_a_dt_above_the_delays_are_refused(tmp_path, args, message):
    folder = _three_area_connectome(tmp_path / "conn3")
    result = _run("multiarea", "--data", str(folder), "--duration", "150", *args)
    assert result.exit_code == 2 and message in _text(result), result.output


@pytest.mark.parametrize("name", ["coba", "cuba", "microcircuit"])
def test_pulse_is_refused_for_the_other_networks(name):
    result = _run(name, "--pulse", "V1")
    assert result.exit_code == 2
    assert f"Invalid value for '--pulse': is for multiarea; the {name} network takes no pulse" in _text(
        result
    )


def test_coba_refuses_a_dt_at_which_its_rates_run_away():
    """Review: --dt 1 printed E/I rates of 144 Hz (16.4 at 0.1 ms, 15.5 at 0.5), exit 0."""
    result = _run("coba", "--scale", "0.05", "--duration", "20", "--dt", "1")
    assert result.exit_code == 2, result.output
    text = _text(result)
    assert (
        "Invalid value for '--dt': 1 ms is above 0.5 ms, the largest time step the coba network takes" in text
    )
    assert "pass --dt ≤ 0.5." in text and "coba:" not in text  # refused before the header
    result = _run("coba", "--scale", "0.05", "--duration", "20", "--dt", "0.5")
    assert result.exit_code == 0, result.output
    result = _run("cuba", "--scale", "0.05", "--duration", "20", "--dt", "1")  # cuba's limit, 1 ms
    assert result.exit_code == 0, result.output


def test_the_microcircuit_dt_limit_is_the_librarys(shared_data):
    from diffbrain._cli_networks import MAX_DT
    from diffbrain.zoo.networks.microcircuit import Microcircuit, read_data

    circuit = Microcircuit.from_data(read_data(shared_data / DATA_FOLDERS["microcircuit"]), scale=0.01)
    circuit.step_factor(MAX_DT["microcircuit"])
    with pytest.raises(ValueError, match="must be a time step"):
        circuit.step_factor(MAX_DT["microcircuit"] * 1.001)


def test_network_dt_errors_blame_dt_alone_before_the_header(shared_data):
    """Review: multiarea --dt 2 spoke of `distance_mm`/`speed`/`delay_jitter=0` (no such options) without the
    largest valid --dt, and microcircuit --dt 2 was blamed on '--duration/--dt'; both after the header."""
    folder = shared_data / DATA_FOLDERS["multiarea"]
    result = _run("multiarea", "--data", str(folder), "--duration", "100", "--dt", "2")
    assert result.exit_code == 2, result.output
    text = _text(result)
    assert (
        "Invalid value for '--dt': the multiarea network draws each long-range delay around its pair's mean "
        "and redraws it until it exceeds one step, so --dt must lie below the shortest mean delay: 1.428571 "
        "ms, from 8B to 9/46d (wiring distance / 3.5 m/s conduction speed); got 2 ms. Pass --dt ≤ 1.428, "
        "e.g. 1."
    ) in text
    assert "`" not in text and "delay_jitter" not in text and "scale 0.025" not in text
    folder = shared_data / DATA_FOLDERS["microcircuit"]
    result = _run("microcircuit", "--data", str(folder), "--scale", "0.01", "--duration", "100", "--dt", "2")
    assert result.exit_code == 2, result.output
    text = _text(result)
    assert (
        "Invalid value for '--dt': 2 ms is above 0.5 ms, the largest time step the microcircuit takes "
        "(its own is 0.1 ms); pass --dt ≤ 0.5."
    ) in text
    assert "--duration" not in text and "scale 0.01" not in text


def test_the_dt_help_gives_the_networks_limits():
    from diffbrain._cli_networks import MAX_DT

    text = _text(_run("--help"))
    assert f"coba and microcircuit take at most {MAX_DT['coba']:g} ms" in text
    assert MAX_DT["coba"] == MAX_DT["microcircuit"]
    assert (
        "multiarea less than its shortest long-range delay (--dt ≤ 1.428 for the Markov connectome)" in text
    )


@pytest.mark.parametrize("bin_ms", ["0.25", "500", "5"])
def test_bin_without_raster_or_out_is_refused(bin_ms):
    """Review: --bin was accepted and ignored without --raster/--out, even one not a multiple of --dt."""
    result = _run("coba", "--scale", "0.05", "--duration", "100", "--bin", bin_ms)
    assert result.exit_code == 2, result.output
    assert (
        "Invalid value for '--bin': sets the rate bin of --raster and --out; without either it does"
        in _text(result)
    )


def test_a_pulse_that_starts_after_the_last_step_is_refused(shared_data):
    """Review: at --dt 0.7 the pulse starts at step round(100/0.7) = 143 (100.1 ms), and a --duration 100.1
    run has 143 steps: it never turned on, and the header said it was on from 100 ms."""
    folder = shared_data / DATA_FOLDERS["multiarea"]
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    args = ("multiarea", "--scale", "0.01", "--data", str(folder), "--dt", "0.7", "--pulse", "V1")
    result = _run(*args, "--duration", "100.1")
    assert result.exit_code == 2, result.output
    assert (
        "Invalid value for '--pulse': the pulse into V1 starts at 100.1 ms (100 ms in whole steps of --dt "
        "0.7 ms), when the 100.1 ms run has ended; pass --duration ≥ 100.8 or leave --pulse out."
    ) in _text(result)


def test_the_pulse_header_gives_its_times_in_whole_steps():
    """Review: at --dt 0.3 the pulse is on from step 333 to 667, 99.9 to 200.1 ms; the header said 100 to
    200."""
    from diffbrain._cli_networks import _pulse_line

    assert _pulse_line("V1", 300.0, 0.3).endswith("99.9 ms to 200.1 ms")
    assert _pulse_line("V1", 150.0, 0.3).endswith("99.9 ms to the end of the run at 150 ms")
    assert _pulse_line(None, 300.0, 0.3).endswith("excitatory neurons, 99.9 ms to 200.1 ms)")
    assert _pulse_line("V1", 300.0, 0.1).endswith("100 ms to 200 ms")


def test_a_refused_dt_is_never_shown_inside_the_bound(shared_data):
    """Review: --dt 1.429 was refused as above "1.43 ms … Pass --dt < 1.43" (the bound is 1.428571), and coba
    --dt 0.5000001 as "0.5 ms is above 0.5 ms"."""
    folder = shared_data / DATA_FOLDERS["multiarea"]
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    result = _run(
        "multiarea", "--scale", "0.01", "--data", str(folder), "--dt", "1.429", "--duration", "100.03"
    )
    assert result.exit_code == 2, result.output
    text = _text(result)
    assert "the shortest mean delay: 1.428571 ms" in text and "got 1.429 ms. Pass --dt ≤ 1.428," in text, text
    assert "1.43 " not in text and "1.43," not in text
    result = _run("coba", "--scale", "0.05", "--duration", "100", "--dt", "0.5000001")
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--dt': 0.5000001 ms is above 0.5 ms" in _text(result)
    help_text = _text(_run("--help"))
    assert "1.43" not in help_text and "--dt ≤ 1.428 for the Markov connectome" in help_text


def test_a_dt_that_does_not_divide_the_default_bin_blames_dt_and_names_the_default(tmp_path):
    """Review: "Invalid value for '--bin': 5 ms is not a multiple of dt = 0.3 ms", though --bin was not
    given."""
    out = tmp_path / "rates.csv"
    result = _run("coba", "--scale", "0.05", "--dt", "0.3", "--duration", "300", "--out", str(out))
    assert result.exit_code == 2, result.output
    text = _text(result)
    assert (
        "Invalid value for '--dt': 0.3 ms does not divide the rate bin of --raster/--out, 5 ms unless --bin "
        "says otherwise; pass --bin, a multiple of --dt (e.g. 5.1), or a --dt that divides 5."
    ) in text, text
    result = _run(
        "coba", "--scale", "0.05", "--dt", "0.3", "--duration", "300", "--bin", "5", "--out", str(out)
    )
    assert "Invalid value for '--bin': 5 ms is not a multiple of dt = 0.3 ms" in _text(result)


def test_a_duration_shorter_than_the_default_bin_says_the_bin_is_the_default(tmp_path):
    result = _run("coba", "--scale", "0.05", "--duration", "2", "--out", str(tmp_path / "rates.csv"))
    assert result.exit_code == 2, result.output
    assert (
        "Invalid value for '--bin': 5 ms (its default) is longer than --duration 2 ms, so --raster/--out "
        "would hold no rate; pass a shorter --bin."
    ) in _text(result)


@pytest.mark.parametrize("output", ["--raster", "--out"])
def test_bin_with_raster_or_out_alone_is_taken(tmp_path, output):
    """--bin needs --raster or --out, not both."""
    path = tmp_path / ("rates.png" if output == "--raster" else "rates.csv")
    result = _run("coba", "--scale", "0.05", "--duration", "20", "--bin", "10", output, str(path))
    assert result.exit_code == 0, result.output
    assert path.is_file()
