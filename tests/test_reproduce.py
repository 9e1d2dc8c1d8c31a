"""`diffbrain reproduce`: a tiny budget runs every section end to end; sections are atomic and resume."""

import dataclasses
import functools
import json
import math
import re
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from diffbrain import reproduce
from diffbrain.bench import records
from diffbrain.bench.records import git_commit
from diffbrain.cli import app
from diffbrain.zoo import networks

_PNG = b"\x89PNG\r\n\x1a\n"


def _coba_builder(config, key):
    """A small Brette (2007) COBA network in place of the connectome one (same result interface)."""
    net = networks.EINetwork.coba(key, n=200, in_degree=40)

    def simulate(duration_ms, key):
        return networks.simulate(net, duration_ms, key, dt=config.dt_ms, record=config.record)

    return reproduce.NetworkSetup(simulate, ("E", "I"), None, (), "A 200-neuron COBA network (test).")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reproduce, "QUICK", reproduce.TINY)
        patch.setattr(reproduce, "connectome_network", _coba_builder)
        patch.setattr(reproduce, "connectome_folder", lambda: None)  # _coba_builder reads no data
        result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(out)], env={"COLUMNS": "200"})
        again = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(out)], env={"COLUMNS": "200"})
    return out, result, again


def _finite(value) -> bool:
    return all(math.isfinite(v) for v in np.ravel(np.asarray(value, float)))


def test_report_has_every_section_and_figure(tiny_run):
    out, result, _ = tiny_run
    assert result.exit_code == 0, result.output
    assert "expected duration" in result.output and "held-out accuracy" in result.output
    report = (out / "report.md").read_text()
    for title in reproduce.TITLES.values():
        assert f"## {title}" in report
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert len(figures) >= 7
    for figure in figures:
        assert (out / figure).read_bytes().startswith(_PNG), figure
    assert sorted(path.name for path in out.iterdir()) == [".lock", *sorted(reproduce.SECTIONS), "report.md"]


def test_fit_section_holds_real_numbers(tiny_run):
    out = tiny_run[0]
    results = reproduce.load_section(out, "fit")["results"]
    assert set(results["problems"]) == {"gif-adapting", "traubhh-paper"} or "hh-noise" in results["problems"]
    for problem in results["problems"].values():
        assert set(problem["best"]) == {"gradient", "gradient-free"}
        for summary in problem["methods"].values():
            for run in summary["runs"]:
                history = np.asarray(run["history"])
                assert _finite(history) and 0 <= run["loss"] == pytest.approx(history[-1, 2])
                assert history[-1, 2] <= history[0, 2]  # the best loss only improves
                assert 0 < run["wall_time_s"] < 600 and 0 < run["simulations"] <= results["budget"] + 4
                assert set(run["params"]) == set(problem["truth"]) and _finite(list(run["params"].values()))


def test_network_section_holds_real_numbers(tiny_run):
    results = reproduce.load_section(tiny_run[0], "network")["results"]
    rates = np.asarray(results["rates_hz"])
    assert rates.shape == (2,) and np.all((rates > 1) & (rates < 200))  # the COBA net fires at ~5–30 Hz
    assert _finite(results["peak_response_hz"])
    time_to_peak, responding = np.asarray(results["latency_ms"], float), np.asarray(results["responding"])
    assert _finite(time_to_peak[responding]) and np.isnan(time_to_peak[~responding]).all()
    assert results["n_neurons"] == 200 and results["recorded_spikes"] > 0
    assert 0 < results["realtime_factor"] < 100


def test_learn_and_bench_sections_hold_real_numbers(tiny_run):
    out = tiny_run[0]
    learn = reproduce.load_section(out, "learn")["results"]
    config = reproduce.TINY.learn
    for method in config.methods:
        result = learn["methods"][method]
        assert len(result["accuracy"]) == len(result["loss"]) == config.steps
        assert _finite(result["loss"]) and all(0 <= a <= 1 for a in result["accuracy"])
        assert (result["held_out_accuracy"] * config.eval_batch) % 1 == pytest.approx(0, abs=1e-6)
    assert all(_finite(list(m.values())) for m in learn["median_weight"].values())
    rows = reproduce.load_section(out, "bench")["results"]["rows"]
    memory = {(r["method"], r["T"]): r["temp_memory_mib"] for r in rows}
    assert all(r["step_time_s"] > 0 and r["temp_memory_mib"] > 0 for r in rows)
    # The claim of section 4: BPTT's memory grows with T, ES-D-RTRL's does not.
    assert memory["bptt", 40] > 1.5 * memory["bptt", 20]
    assert memory["es-d-rtrl", 40] < 1.1 * memory["es-d-rtrl", 20]


def test_every_table_number_in_the_report_comes_from_the_results(tiny_run):
    out = tiny_run[0]
    report = (out / "report.md").read_text()
    fit = reproduce.load_section(out, "fit")["results"]
    for problem in fit["problems"].values():
        for method, summary in problem["methods"].items():
            assert f"| {method} | {summary['kind']} | {summary['median_loss']:.4g} |" in report
    network = reproduce.load_section(out, "network")["results"]
    assert f"| E | — | {network['rates_hz'][0]:.3g} |" in report


def test_a_second_run_reuses_every_section(tiny_run):
    again = tiny_run[2]
    assert again.exit_code == 0, again.output
    assert again.output.count("finished before") == len(reproduce.SECTIONS)


def test_an_interrupted_section_leaves_nothing_and_a_new_config_reruns(tmp_path):
    config = reproduce.BenchConfig(steps=(1,))
    calls = []

    def failing(config, folder, work):
        (folder / "half.png").write_bytes(b"")
        raise KeyboardInterrupt

    def compute(config, folder, work):
        calls.append(config)
        return {"value": 1.0}

    with pytest.raises(KeyboardInterrupt):
        reproduce.run_section(tmp_path, "bench", config, failing, log=lambda line: None)
    assert not (tmp_path / "bench").exists() and not list(tmp_path.glob(".bench*"))
    first = reproduce.run_section(tmp_path, "bench", config, compute, log=lambda line: None)
    assert reproduce.run_section(tmp_path, "bench", config, compute, log=lambda line: None) == first
    other = reproduce.BenchConfig(steps=(2,))
    reproduce.run_section(tmp_path, "bench", other, compute, log=lambda line: None)
    assert calls == [config, other]
    stored = json.loads((tmp_path / "bench" / reproduce.RESULT).read_text())
    assert stored["key"] == reproduce.section_key("bench", other) != first["key"]


def test_expected_duration_counts_only_unfinished_sections(tiny_run):
    out = tiny_run[0]
    assert reproduce.expected_seconds(reproduce.TINY, out, _coba_builder) == 0
    assert reproduce.expected_seconds(reproduce.FULL, out, _coba_builder) == sum(
        reproduce.FULL.expected.values()
    )
    # The run used the COBA builder: with the connectome builder, the network section is not finished.
    assert reproduce.expected_seconds(reproduce.TINY, out) == reproduce.TINY.expected["network"]


def test_each_section_records_and_reports_the_commit_that_computed_it(tiny_run):
    out = tiny_run[0]
    report = (out / "report.md").read_text()
    for name in reproduce.SECTIONS:
        section = reproduce.load_section(out, name)
        assert section["git_commit"] == git_commit() != ""
    assert report.count(f"at git commit `{git_commit()}`") == len(reproduce.SECTIONS)


def test_a_section_reused_from_another_commit_says_so(tmp_path, monkeypatch):
    """The key covers the configuration and the version, not the code: reusing a section computed at another
    commit names both commits and how to rerun it."""
    config, lines = reproduce.BenchConfig(steps=(1,)), []
    monkeypatch.setattr(records, "git_commit", lambda: "aaaa")
    reproduce.run_section(tmp_path, "bench", config, lambda *_: {"value": 1}, log=lines.append)
    reproduce.run_section(tmp_path, "bench", config, lambda *_: {"value": 2}, log=lines.append)
    assert lines[-1].endswith("reused")  # same commit: nothing to add
    monkeypatch.setattr(records, "git_commit", lambda: "bbbb-dirty")
    reused = reproduce.run_section(tmp_path, "bench", config, lambda *_: {"value": 3}, log=lines.append)
    assert reused["results"] == {"value": 1} and reused["git_commit"] == "aaaa"
    assert "computed at commit aaaa, this checkout is bbbb-dirty: delete" in lines[-1]
    assert lines[-1].endswith(f"{tmp_path / 'bench'} to rerun it")


def test_another_network_builder_changes_the_network_key_and_reruns_it(tmp_path):
    keys = reproduce.section_keys(reproduce.TINY, _coba_builder)
    default = reproduce.section_keys(reproduce.TINY)
    assert keys["network"] != default["network"]
    assert {n: k for n, k in keys.items() if n != "network"} == {
        n: k for n, k in default.items() if n != "network"
    }
    assert reproduce.qualified_name(_coba_builder) == f"{__name__}._coba_builder"
    assert reproduce.qualified_name(functools.partial(_coba_builder)) == f"{__name__}._coba_builder"
    config, calls = reproduce.TINY.network, []

    def compute(config, folder, work):
        calls.append(config)
        return {}

    for builder in (_coba_builder, _coba_builder, reproduce.connectome_network):
        key = reproduce.section_keys(reproduce.TINY, builder)["network"]
        reproduce.run_section(tmp_path, "network", config, compute, log=lambda line: None, key=key)
    assert len(calls) == 2  # the second run reused the first, the third builder reran it


def test_a_fit_without_the_papers_data_is_another_section(tmp_path, monkeypatch, shared_data):
    """It fits hh-noise in place of traubhh-paper: once the data are there, it runs again, not reused."""
    no_paper = dataclasses.replace(
        reproduce.TINY, fit=dataclasses.replace(reproduce.TINY.fit, problems=("hh-noise",))
    )
    assert "traubhh-paper" in reproduce.TINY.fit.problems
    keys = {}
    (tmp_path / "paper-hh-steps").mkdir()  # a folder without the data's files: the fit falls back too
    (tmp_path / "paper-hh-steps" / "input_traces_hh.csv").write_text("not, a table\n")  # nor a bad one
    for data in (shared_data, tmp_path):
        monkeypatch.setenv("DIFFBRAIN_DATA", str(data))
        keys[data] = [reproduce.section_keys(budget) for budget in (reproduce.TINY, no_paper)]
    (paper, other), (paper_missing, other_missing) = keys.values()
    assert paper_missing["fit"] != paper["fit"] and other_missing == other  # hh-noise needs no data
    assert {n: k for n, k in paper_missing.items() if n != "fit"} == {
        n: k for n, k in paper.items() if n != "fit"
    }


def _trace(seed=0, n_populations=40):
    """A synthetic binned rate trace of the QUICK network timing: 10 Hz ± 2 Hz Gaussian noise per bin."""
    config = reproduce.QUICK.network
    times = (np.arange(int(config.duration_ms / config.bin_ms)) + 0.5) * config.bin_ms
    trace = 10.0 + 2.0 * np.random.default_rng(seed).standard_normal((times.size, n_populations))
    return trace, times, config


def test_missing_connectome_data_stops_the_run_before_any_section(tmp_path, monkeypatch):
    """Review: with $DIFFBRAIN_DATA wrong, `reproduce --quick` fitted for 109 s, then stopped at the network
    section with a message that did not name $DIFFBRAIN_DATA."""
    monkeypatch.setenv("DIFFBRAIN_DATA", str(tmp_path / "nonexistent"))
    ran = []
    for name in reproduce.SECTIONS:
        monkeypatch.setitem(reproduce.COMPUTE, name, lambda *args, name=name, **kwargs: ran.append(name))
    args = ["reproduce", "--quick", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    text = "".join(result.output.split())  # the console wraps at its width, inside paths too
    assert "".join(f"{reproduce.CONNECTOME}, which is not at {tmp_path / 'nonexistent'}".split()) in text
    assert "set$DIFFBRAIN_DATAtothefolderthatholdsit" in text
    assert ran == []
    assert not (tmp_path / "out").exists()  # review: the refused run left out/ holding its .lock


def test_missing_connectome_data_is_refused_before_the_output_folder_is_made(tmp_path, monkeypatch):
    """Review: `reproduce` refused for missing data left its new output folder behind, holding .lock."""
    monkeypatch.setenv("DIFFBRAIN_DATA", str(tmp_path / "nonexistent"))
    with pytest.raises(FileNotFoundError, match=re.escape(reproduce.CONNECTOME)):
        reproduce.run(tmp_path / "new" / "out", reproduce.TINY)
    assert not (tmp_path / "new").exists()


def test_a_folder_in_place_of_the_report_is_named_as_such(tmp_path):
    """Review: the error told to give --out (a folder option) a file name."""
    (tmp_path / "out" / reproduce.REPORT).mkdir(parents=True)
    args = ["reproduce", "--quick", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    text = "".join(re.sub(r"[│╭╮╰╯─]", "", result.output).split())  # wrapped at the width, inside paths too
    report = tmp_path / "out" / reproduce.REPORT
    assert "".join(f"{report} is a folder, where the report is written; remove or rename it.".split()) in text
    assert "giveafilename" not in text


def test_pure_noise_does_not_respond_to_the_pulse():
    trace, times, config = _trace()
    result = reproduce.propagation(trace, times, config)
    assert not result.responding.any()
    assert np.median(result.threshold) == pytest.approx(6.0, rel=0.1)  # 3 SD of the 2 Hz noise
    assert np.all(result.peak > 0)  # a positive peak alone is no response
    assert np.any(result.peak > result.threshold)  # nor is a single bin over 3 SD


def test_a_response_within_the_window_is_read_and_a_late_one_is_not():
    trace, times, config = _trace(seed=1, n_populations=3)
    end = config.pulse_start_ms + config.pulse_ms + config.margin_ms
    onset = config.pulse_start_ms + 20.0
    trace[(times > onset) & (times < onset + 10)] += [30.0, 0.0, 0.0]  # population 0 responds
    trace[(times > end + 20) & (times < end + 40), 1] += 30.0  # population 1 fluctuates after the window
    result = reproduce.propagation(trace, times, config)
    assert result.responding.tolist() == [True, False, False]
    assert result.peak[0] > 25 and onset - config.pulse_start_ms < result.time_to_peak[0] < 35
    assert result.peak[1] < 15


def test_memory_growth_from_zero_memory():
    rows = [
        {"method": "a", "T": 10, "temp_memory_mib": 0.0, "step_time_s": 0.1},
        {"method": "a", "T": 20, "temp_memory_mib": 0.0, "step_time_s": 0.1},
        {"method": "b", "T": 10, "temp_memory_mib": 0.0, "step_time_s": 0.1},
        {"method": "b", "T": 20, "temp_memory_mib": 2.0, "step_time_s": 0.1},
        {"method": "c", "T": 10, "temp_memory_mib": 1.0, "step_time_s": 0.1},
        {"method": "c", "T": 20, "temp_memory_mib": 3.0, "step_time_s": 0.1},
    ]
    results = {"rows": rows, "n_rec": 10, "batch": 4}
    assert [reproduce._memory_growth(results, m) for m in "abc"] == [1.0, math.inf, 3.0]
    assert "a 1×, b inf×, c 3×" in "\n".join(reproduce._bench_markdown(results, {}))


def _publish(out, value, calls=None, **patches):
    """Publish section ``bench`` with results ``{"value": value}`` (``calls`` counts the computations),
    with `os.replace` or `shutil.rmtree` patched."""
    config = reproduce.BenchConfig(steps=(value,))

    def compute(config, folder, work):
        (calls if calls is not None else []).append(value)
        return {"value": value}

    with pytest.MonkeyPatch.context() as patch:
        for name, replacement in patches.items():
            patch.setattr(reproduce.os if name == "replace" else reproduce.shutil, name, replacement)
        return reproduce.run_section(out, "bench", config, compute, log=lambda line: None)


def test_a_finished_section_survives_a_failure_while_it_is_replaced(tmp_path):
    _publish(tmp_path, 1)
    replace = reproduce.os.replace

    def no_moving_in(source, target):
        if ".partial-" in str(source):
            raise OSError("disk full")
        replace(source, target)

    with pytest.raises(OSError, match="disk full"):
        _publish(tmp_path, 2, replace=no_moving_in)
    assert reproduce.load_section(tmp_path, "bench")["results"] == {"value": 1}
    assert not list(tmp_path.glob(".bench*"))

    # Killed after setting the old folder aside (no cleanup ran): the next run finds it again.
    (tmp_path / "bench").rename(tmp_path / ".bench.old-dead")
    (tmp_path / ".bench.partial-dead").mkdir()
    calls = []
    assert _publish(tmp_path, 1, calls)["results"] == {"value": 1} and calls == []  # reused
    assert not list(tmp_path.glob(".bench*"))

    # Killed after moving the new folder in, before deleting the old: the new one stands, the old goes.
    rmtree = reproduce.shutil.rmtree

    def killed(path, ignore_errors=False):
        if ".old-" in str(path):
            return
        rmtree(path, ignore_errors=ignore_errors)

    _publish(tmp_path, 3, rmtree=killed)
    assert reproduce.load_section(tmp_path, "bench")["results"] == {"value": 3}
    assert list(tmp_path.glob(".bench.old-*"))
    _publish(tmp_path, 3, calls)
    assert not list(tmp_path.glob(".bench*")) and calls == []


def test_a_damaged_result_counts_as_not_run_and_is_computed_again(tmp_path):
    _publish(tmp_path, 1)
    (tmp_path / "bench" / reproduce.RESULT).write_text('{"section": "bench", "key"')  # cut off mid-write
    with pytest.warns(
        UserWarning, match=r"result.json is unreadable \(damaged\?\); its section counts as not run"
    ):
        assert reproduce.load_section(tmp_path, "bench") is None
    calls = []
    with pytest.warns(UserWarning, match="unreadable"):
        assert _publish(tmp_path, 1, calls)["results"] == {"value": 1} and calls


def test_stale_scratch_folders_of_a_section_are_removed_when_it_is_published(tmp_path):
    stale = tmp_path / ".work" / "bench-0123456789abcdef"
    (stale / "bptt").mkdir(parents=True)
    (tmp_path / ".work" / "learn-0123456789abcdef").mkdir()
    _publish(tmp_path, 1)
    assert not stale.exists() and [p.name for p in (tmp_path / ".work").iterdir()] == [
        "learn-0123456789abcdef"
    ]


def test_connectome_network_setup_reads_propagation_along_the_hierarchy(shared_data, tmp_path):
    if not hasattr(networks, "MultiArea"):
        pytest.skip("zoo.networks.MultiArea is not available in this version")
    import jax

    config = reproduce.NetworkConfig(
        duration_ms=80.0, pulse_start_ms=20.0, pulse_ms=30.0, n_per_area=10, record=2
    )
    setup = reproduce.connectome_network(config, jax.random.key(0))
    assert (
        len(setup.names) == 58 and setup.names[setup.readout[0]] == "V1/E" and setup.stimulated == ("V1/E",)
    )
    assert np.all(np.diff(np.asarray(setup.hierarchy)[list(setup.readout)]) >= 0)  # areas in hierarchy order
    results = reproduce.network_section(
        config, tmp_path, tmp_path, log=lambda line: None, builder=lambda c, k: setup
    )
    assert len(results["readout"]) == 29 and _finite(results["rates_hz"])
    v1 = results["names"].index("V1/E")
    # The pulse (15 mV of drive for 30 ms) drives V1/E well above its baseline.
    assert results["peak_response_hz"][v1] > 20 and 0 <= results["latency_ms"][v1] < config.pulse_ms + 10


def _stub_sections(monkeypatch, fail: str | None = None):
    """Sections that finish at once (or, ``fail``, raise) and a report.md that lists them."""

    def compute(name):
        def section(config, folder, work, **kwargs):
            if name == fail:
                raise FileNotFoundError("connectome missing")
            return {}

        return section

    for name in reproduce.SECTIONS:
        monkeypatch.setitem(reproduce.COMPUTE, name, compute(name))
        monkeypatch.setitem(reproduce.ROWS, name, lambda results: [])
    monkeypatch.setattr(
        reproduce,
        "write_report",
        lambda out, budget, sections, *_: reproduce.write_atomically(
            out / reproduce.REPORT,
            lambda file: file.write(f"{reproduce.REPORT_HEADING}\nnew: {sorted(sections)}\n"),
        ),
    )


def test_a_run_that_recomputes_a_section_sets_the_old_report_aside_first(tmp_path, monkeypatch):
    """Review: a run that failed after republishing a section left report.md with the old numbers and links
    to figures the new section no longer has."""
    _stub_sections(monkeypatch, fail="network")
    (tmp_path / reproduce.REPORT).write_text(f"{reproduce.REPORT_HEADING}\nold numbers\n")
    lines = []
    with pytest.raises(FileNotFoundError, match="connectome missing"):
        reproduce.run(tmp_path, reproduce.TINY, log=lines.append)
    assert reproduce.load_section(tmp_path, "fit") is not None  # republished before the failure
    assert not (tmp_path / reproduce.REPORT).exists()
    assert (tmp_path / reproduce.STALE_REPORT).read_text() == f"{reproduce.REPORT_HEADING}\nold numbers\n"
    assert any("report.md set aside as report.md.stale" in line for line in lines)

    _stub_sections(monkeypatch)
    report = reproduce.run(tmp_path, reproduce.TINY, log=lines.append)
    assert report.path.read_text().startswith(f"{reproduce.REPORT_HEADING}\nnew:")
    assert not (tmp_path / reproduce.STALE_REPORT).exists()

    # every section reused: the report stays where it is until it is rewritten
    lines.clear()
    reproduce.run(tmp_path, reproduce.TINY, log=lines.append)
    assert not any("set aside" in line for line in lines) and (tmp_path / reproduce.REPORT).exists()


def _section_with_figures(tmp_path, name, config, results, figures, calls):
    """Run section ``name`` with a compute that writes placeholder ``figures`` and returns ``results``."""

    def compute(config, folder, work):
        calls.append(config)
        for figure in figures:
            (folder / figure).write_bytes(b"placeholder")
        return results

    return lambda log=lambda line: None: reproduce.run_section(tmp_path, name, config, compute, log=log)


def test_a_reused_section_draws_its_missing_figures_again_or_runs_again(tmp_path):
    """Review: a reused section whose figures (listed in result.json) were gone was reused anyway, and the
    report linked the missing files. What result.json holds is drawn again; otherwise the section reruns."""
    calls, lines = [], []
    rows = [
        {"method": "bptt", "T": T, "temp_memory_mib": 2.0 * T, "step_time_s": 0.01 * T} for T in (10, 100)
    ]
    bench = _section_with_figures(
        tmp_path,
        "bench",
        reproduce.BenchConfig(methods=("bptt",), steps=(10, 100)),
        {"n_rec": 5, "batch": 2, "rows": rows},
        ["learning_cost.png"],
        calls,
    )
    learning = {"bptt": {"loss": [1.0, 0.8, 0.7, 0.6], "accuracy": [0.5, 0.6, 0.6, 0.7]}}
    learn = _section_with_figures(
        tmp_path,
        "learn",
        reproduce.LearnConfig(steps=4),
        {"methods": learning},
        ["accuracy.png", "weights.png"],
        calls,
    )
    network = _section_with_figures(
        tmp_path, "network", reproduce.TINY.network, {}, ["raster.png", "rate_propagation.png"], calls
    )
    for section in (bench, learn, network):
        section()
    assert len(calls) == 3
    for figure in ("bench/learning_cost.png", "learn/accuracy.png"):
        (tmp_path / figure).unlink()
    bench(lines.append)
    learn(lines.append)
    assert len(calls) == 3  # reused, the figures drawn from result.json
    for figure in ("bench/learning_cost.png", "learn/accuracy.png"):
        assert (tmp_path / figure).read_bytes().startswith(_PNG), figure
    assert f"learn: drew accuracy.png again from {tmp_path / 'learn' / reproduce.RESULT}" in lines[-2]
    assert (tmp_path / "learn" / "weights.png").read_bytes() == b"placeholder"  # kept as it was

    # the weights (trained networks) and the network's spikes are not in result.json: those sections rerun
    for figure in ("learn/weights.png", "network/raster.png"):
        (tmp_path / figure).unlink()
        with pytest.warns(
            UserWarning, match=r"figures \['.*'\] that result.json lists are missing and cannot"
        ):
            assert reproduce.load_section(tmp_path, figure.split("/")[0]) is None
    with pytest.warns(UserWarning, match="cannot be drawn again"):
        learn()
    with pytest.warns(UserWarning, match="cannot be drawn again"):
        network()
    assert len(calls) == 5 and (tmp_path / "network" / "raster.png").exists()


def test_a_reused_run_draws_the_figures_its_report_links_again(tiny_run):
    """A folder that kept result.json only (as the committed leaderboard/reproduce did while *.png was
    git-ignored): a run reusing such sections draws fit's, learn's accuracy and bench's figures again; the
    report links no dead file."""
    out = tiny_run[0]
    gone = [
        *sorted((out / "fit").glob("*.png")),
        out / "learn" / "accuracy.png",
        out / "bench" / "learning_cost.png",
    ]
    assert len(gone) == 4
    for path in gone:
        path.unlink()
    lines = []
    report = reproduce.run(out, reproduce.TINY, network_builder=_coba_builder, log=lines.append)
    assert sum("finished before" in line for line in lines) == len(reproduce.SECTIONS)  # nothing recomputed
    for figure in re.findall(r"!\[[^]]*\]\(([^)]+)\)", report.path.read_text()):
        assert (out / figure).read_bytes().startswith(_PNG), figure


def test_a_lost_figure_is_warned_about_once_not_at_every_look_ahead(tmp_path):
    """`run` looks at each section three times (expected duration, setting the report aside, running it);
    the lost-figure warning came three times."""
    (tmp_path / "network").mkdir()
    (tmp_path / "network" / reproduce.RESULT).write_text(json.dumps({"key": "k", "figures": ["raster.png"]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reproduce.load_section(tmp_path, "network", "k", quiet=True) is None
    with pytest.warns(UserWarning, match="raster.png"):
        assert reproduce.load_section(tmp_path, "network", "k") is None


def test_the_data_folder_is_looked_up_when_used_not_at_import(tmp_path, monkeypatch, shared_data):
    """Review: $DIFFBRAIN_DATA was read once, when diffbrain.reproduce and diffbrain.bench.fit were imported;
    set afterwards (as the missing-data message says), one ignored it and the other did not, so the fit
    section's key said it fell back to hh-noise while the fit fitted traubhh-paper."""
    from diffbrain.bench import fit as fit_suite

    missing = tmp_path / "nonexistent"
    monkeypatch.setenv("DIFFBRAIN_DATA", str(missing))
    assert not reproduce._papers_data_found()
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        reproduce.connectome_folder()
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        fit_suite.build("traubhh-paper")  # the fit falls back as its key says
    assert reproduce.section_keys(reproduce.TINY)["fit"] == reproduce.section_key(
        "fit", reproduce.TINY.fit, "hh-noise for traubhh-paper"
    )
    monkeypatch.setenv("DIFFBRAIN_DATA", str(shared_data))
    assert reproduce._papers_data_found()
    assert reproduce.connectome_folder() == shared_data / reproduce.CONNECTOME
    assert reproduce.section_keys(reproduce.TINY)["fit"] == reproduce.section_key("fit", reproduce.TINY.fit)


def test_each_section_records_and_reports_the_machine_that_computed_it(tmp_path, monkeypatch):
    """Review: a reused section was reported under the header's machine (this invocation's); result.json
    recorded none."""
    monkeypatch.setattr(records, "cpu_model", lambda: "Old CPU (8 cores)")
    monkeypatch.setattr(records, "jax_backend", lambda: "gpu:H100×1")
    section = reproduce.run_section(
        tmp_path, "bench", reproduce.BenchConfig(steps=(1,)), lambda *_: {}, log=lambda line: None
    )
    machine = section["machine"]
    assert machine["cpu"] == "Old CPU (8 cores)" and machine["jax_backend"] == "gpu:H100×1"
    assert machine["load_average"] >= 0
    line = reproduce._computed_line(section)
    assert f"on Old CPU (8 cores), JAX backend gpu:H100×1, load average {machine['load_average']:.2f}" in line
    old = {key: value for key, value in section.items() if key != "machine"}  # a result.json of before
    assert "machine not recorded" in reproduce._computed_line(old)


def test_the_report_names_each_sections_machine(tiny_run):
    report = (tiny_run[0] / "report.md").read_text()
    assert report.count(f"s of CPU time) on {records.cpu_model()}, JAX backend") == len(reproduce.SECTIONS)


def test_redrawing_skips_a_damaged_result_with_a_warning(tmp_path):
    """Review: `redraw_figures` raised a bare JSONDecodeError on a damaged result.json, which `load_section`
    and `run` treat as a section not run."""
    rows = [{"method": "bptt", "T": T, "temp_memory_mib": 1.0, "step_time_s": 0.1} for T in (10, 20)]

    def bench(config, folder, work):
        (folder / "learning_cost.png").write_bytes(b"placeholder")
        return {"n_rec": 5, "batch": 2, "rows": rows}

    config = reproduce.BenchConfig(methods=("bptt",), steps=(10, 20))
    reproduce.run_section(tmp_path, "bench", config, bench, log=lambda line: None)
    (tmp_path / "bench" / "learning_cost.png").unlink()
    (tmp_path / "fit").mkdir()
    (tmp_path / "fit" / reproduce.RESULT).write_text('{"section": "fit", "key"')  # cut off mid-write
    with pytest.warns(UserWarning, match=r"fit/result.json is unreadable \(damaged\?\)"):
        drawn = reproduce.redraw_figures(tmp_path)
    assert drawn == {"bench": ["learning_cost.png"]}
    assert (tmp_path / "bench" / "learning_cost.png").read_bytes().startswith(_PNG)


def test_a_finished_network_section_needs_no_connectome_data(tmp_path, monkeypatch):
    """The connectome data are needed only to run the network section: with it finished under ``out``, a
    run without the data reuses it instead of refusing."""
    _stub_sections(monkeypatch)
    with monkeypatch.context() as patch:
        patch.setattr(reproduce, "connectome_folder", lambda: None)
        reproduce.run(tmp_path, reproduce.TINY)
    monkeypatch.setenv("DIFFBRAIN_DATA", str(tmp_path / "nonexistent"))
    with pytest.raises(FileNotFoundError, match=re.escape(reproduce.CONNECTOME)):
        reproduce.connectome_folder()  # the data are missing indeed
    report = reproduce.run(tmp_path, reproduce.TINY)
    assert report.path.read_text().startswith(f"{reproduce.REPORT_HEADING}\nnew:")
