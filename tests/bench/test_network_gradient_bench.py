"""Suite "network_gradient": a network's gradient through lax.scan and event_scan, side by side."""

import math

import jax.numpy as jnp
import pytest

from diffbrain.bench import network_gradient, records
from diffbrain.bench.__main__ import main as bench_main


@pytest.fixture(scope="module")
def measured(shared_data):
    folder = shared_data / "conn-potjans-diesmann2014"
    return network_gradient.run(cases=((0.01, 1.0, 3.0),), checkpoint=7, repeats=1, data=folder)


def test_records_each_methods_time_memory_and_that_the_gradients_agree(measured):
    frame = records.to_frame(measured).set_index(["method", "metric"])["value"]
    methods = ("lax.scan", "diffbrain", "diffbrain.checkpoint")
    for method in methods:
        assert frame[method, "gradient_time"] > 0 and frame[method, "compile_time"] > 0
        assert frame[method, "temporary_memory"] > 0
        ratio = frame[method, "gradient_time"] / frame["diffbrain", "forward_time"]
        assert math.isclose(frame[method, "gradient_over_forward"], ratio)
    for method in methods[1:]:
        assert frame[method, "gradient_deviation"] < 1e-4  # the same gradient (float32)
    assert {r.case for r in measured} == {"microcircuit/scale=0.01/T=0.003s/checkpoint=7"}


def test_a_missing_data_folder_gives_skipped_records(tmp_path):
    found = network_gradient.run(cases=((0.01, 1.0, 3.0),), repeats=1, data=tmp_path / "nowhere")
    assert {r.status for r in found} == {"skipped"} and all("data folder is missing" in r.note for r in found)
    assert {r.method for r in found} == {"lax.scan", "diffbrain", "diffbrain.checkpoint"}


def test_the_command_line_runs_the_suite(monkeypatch, tmp_path, measured, capsys):
    monkeypatch.setattr(network_gradient, "run_case", lambda *args, **kwargs: measured)
    bench_main(["network_gradient", "--quick", "--out", str(tmp_path)])
    assert len(records.read_results(tmp_path)) == len(measured)
    assert "gradient_over_forward" in capsys.readouterr().out


def test_the_deviation_is_relative_to_each_leaf():
    """A wrong small leaf (per-synapse weight gradients beside a large neuron gradient) counts in full."""
    reference = {"V_th": jnp.asarray([4.5e4]), "data": jnp.asarray([0.1, -0.2]), "zero": jnp.zeros(2)}
    assert network_gradient.largest_difference(reference, reference) == 0
    wrong = reference | {"data": jnp.zeros(2)}
    assert network_gradient.largest_difference(wrong, reference) == pytest.approx(1.0)
    assert network_gradient.largest_difference(reference | {"zero": jnp.ones(2)}, reference) == math.inf
