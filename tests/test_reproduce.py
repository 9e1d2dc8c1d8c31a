"""`diffbrain reproduce`: a tiny budget runs every section end to end; sections are atomic and resume."""

import json
import math
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from diffbrain import reproduce
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
    assert sorted(path.name for path in out.iterdir()) == [*sorted(reproduce.SECTIONS), "report.md"]


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
    assert _finite(results["peak_response_hz"]) and _finite(results["latency_ms"])
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
    assert reproduce.expected_seconds(reproduce.TINY, out) == 0
    assert reproduce.expected_seconds(reproduce.FULL, out) == sum(reproduce.FULL.expected.values())


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
