"""Section 2 of `diffbrain reproduce`: each population's time to peak after the pulse, and the report's
reading of it (review: a population that did not respond was given a latency, 2.5 ms for a flat trace)."""

import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import reproduce

CONFIG = reproduce.NetworkConfig(duration_ms=500.0, pulse_start_ms=100.0, pulse_ms=100.0, margin_ms=100.0)
TIMES = (np.arange(100) + 0.5) * CONFIG.bin_ms


def _ramp_noise_and_flat():
    """Population 0 ramps up over the pulse (100–200 ms; half its peak at 150 ms), 1 is noise, 2 is flat."""
    rise = np.clip((TIMES - 100.0) / 100.0, 0, 1) * (TIMES < 200.0) * 50.0
    noise = np.random.default_rng(0).normal(0, 0.3, (TIMES.size, 2))
    return np.stack([2 + rise + noise[:, 0], 2 + noise[:, 1], np.full(TIMES.size, 2.0)], axis=1)


def test_a_population_that_does_not_respond_has_no_time_to_peak():
    result = reproduce.propagation(_ramp_noise_and_flat(), TIMES, CONFIG)
    assert result.responding.tolist() == [True, False, False]
    # the ramp's peak (the last bin of the pulse), not its half-peak latency (52.5 ms in pulse_response)
    assert result.time_to_peak[0] == pytest.approx(97.5)
    assert np.isnan(result.time_to_peak[1:]).all()  # were 82.5 ms (noise) and 2.5 ms (flat, peak 0)


def test_no_time_to_peak_without_a_baseline_to_respond_against():
    """With fewer than two pre-pulse bins the threshold is NaN and nothing responds: no time to peak."""
    config = reproduce.NetworkConfig(duration_ms=500.0, pulse_start_ms=5.0, pulse_ms=100.0)
    result = reproduce.propagation(_ramp_noise_and_flat(), TIMES, config)
    assert not result.responding.any() and np.isnan(result.time_to_peak).all()


class _TraceResult:
    """A simulation result (the interface `NetworkSetup.simulate` returns) holding a given binned trace."""

    def __init__(self, trace):
        self.trace = trace
        self.sizes = (1000,) * trace.shape[1]  # 40 Hz peaks: 200 spikes a 5 ms bin, not noise
        self.counts = jnp.zeros((2, trace.shape[1]))

    def rate_trace(self, bin_ms):
        return self.trace

    def rates(self):
        return self.trace.mean(axis=0)

    def spike_trains(self):
        return np.array([150.0, 160.0]), np.array([0, 10])


def _responses_up_a_hierarchy():
    """Four populations whose peaks come later up the hierarchy, between them two that never respond."""
    rng = np.random.default_rng(1)
    trace = 5.0 + rng.normal(0, 0.5, (TIMES.size, 6))
    peaks_ms = {0: 122.5, 2: 142.5, 3: 162.5, 5: 182.5}  # bin centres
    for population, peak_ms in peaks_ms.items():
        trace[:, population] += 40.0 * np.exp(-(((TIMES - peak_ms) / 8.0) ** 2))
    return trace


def test_the_report_leaves_out_the_time_to_peak_of_populations_that_do_not_respond(tmp_path):
    trace = _responses_up_a_hierarchy()
    names = ("V1", "quiet1", "V2", "V4", "quiet2", "TEO")
    setup = reproduce.NetworkSetup(
        lambda duration_ms, key: _TraceResult(trace),
        names,
        np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5]),
        ("V1",),
        "Six populations (test).",
    )
    results = reproduce.network_section(
        CONFIG, tmp_path, tmp_path, log=lambda line: None, builder=lambda c, k: setup
    )
    assert results["responding"] == [True, False, True, True, False, True]
    time_to_peak = np.asarray(results["latency_ms"])
    np.testing.assert_allclose(time_to_peak[[0, 2, 3, 5]], [22.5, 42.5, 62.5, 82.5])
    assert np.isnan(time_to_peak[[1, 4]]).all()
    assert results["latency_hierarchy_spearman"] == pytest.approx(1.0)  # over the four that respond

    markdown = "\n".join(reproduce._network_markdown(results))
    assert "| time to peak (ms) |" in markdown and "latency (ms)" not in markdown
    assert "Spearman correlation between hierarchy value and time to peak" in markdown
    rows = {
        line.split(" | ")[0].lstrip("| "): line for line in markdown.splitlines() if line.startswith("| ")
    }
    assert rows["quiet1"].endswith("| no | — |") and rows["quiet2"].endswith("| no | — |")
    assert rows["V2"].endswith("| yes | 42.5 |")
    summary = dict((name, value) for name, value, unit in reproduce._network_rows(results))
    assert summary["Spearman(hierarchy, time to peak)"] == "1.00"


def test_a_stored_section_shows_no_time_to_peak_for_a_population_that_does_not_respond():
    """A result.json written before non-responding populations got NaN (the committed full run's) holds
    a time for them: the report leaves it out all the same."""
    results = {
        "description": "Two populations (test).",
        "n_neurons": 20,
        "realtime_factor": 1.0,
        "build_time_s": 1.0,
        "compile_and_run_s": 2.0,
        "stimulated": ["A"],
        "latency_hierarchy_spearman": None,
        "hierarchy": None,
        "names": ["A", "B"],
        "readout": [0, 1],
        "rates_hz": [5.0, 2.0],
        "peak_response_hz": [40.0, 3.0],
        "response_threshold_hz": [2.0, 3.5],
        "responding": [True, False],
        "latency_ms": [87.5, 77.5],
        "margin_ms": 100.0,
    }
    markdown = reproduce._network_markdown(results)
    rows = [line for line in markdown if line.startswith("| A |") or "| B |" in line]
    assert rows[0].endswith("| yes | 87.5 |") and rows[1].endswith("| no | — |")
    assert "It is not `MultiArea.pulse_response`'s latency, the time to half the peak." in "\n".join(markdown)
