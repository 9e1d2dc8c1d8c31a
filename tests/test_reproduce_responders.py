"""Section 2 of `diffbrain reproduce`: which populations respond to the pulse when spike counts are sparse.

Review: at the --quick size (80 E neurons at ~2 Hz, < 1 spike per 5 ms bin) the 3 SD rule called 1-6 of 29
populations responding with no pulse at all; a Poisson count threshold from the population sizes is
added."""

import numpy as np

from diffbrain import reproduce

CONFIG = reproduce.NetworkConfig(duration_ms=500.0, pulse_start_ms=150.0, pulse_ms=100.0, margin_ms=100.0)
TIMES = (np.arange(100) + 0.5) * CONFIG.bin_ms
SIZES = np.full(29, 80)


def _poisson_trace(seed: int, rate_hz: float = 2.0) -> np.ndarray:
    """Rates (Hz) of independent Poisson spike counts of 80 neurons at ``rate_hz`` in 5 ms bins."""
    counts = np.random.default_rng(seed).poisson(rate_hz * SIZES * CONFIG.bin_ms / 1000.0, (TIMES.size, 29))
    return counts / SIZES / (CONFIG.bin_ms / 1000.0)


def _responders(config_sizes=SIZES) -> int:
    """Populations called responding in 60 noise-only traces of 29 populations (no pulse)."""
    return sum(
        reproduce.propagation(_poisson_trace(seed), TIMES, CONFIG, config_sizes).responding.sum()
        for seed in range(60)
    )


def test_sparse_poisson_noise_without_a_pulse_does_not_respond():
    assert _responders() == 0
    assert _responders(None) > 10  # the 3 SD rule alone, on rates without the population sizes


def test_a_clear_sparse_response_is_detected():
    trace = _poisson_trace(0)
    pulse = (TIMES > 170) & (TIMES < 190)  # four bins at 40 Hz more: 16 more spikes per bin
    trace[pulse, 3] += 40.0
    result = reproduce.propagation(trace, TIMES, CONFIG, SIZES)
    assert np.nonzero(result.responding)[0].tolist() == [3]
    assert 20 < result.time_to_peak[3] < 40 and np.isnan(np.delete(result.time_to_peak, 3)).all()
