"""zoo.networks.plot: raster and rate traces drawn from any population result, rendered with Agg."""

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

from diffbrain.zoo import networks
from diffbrain.zoo.networks import plot

matplotlib.use("Agg")
import matplotlib.pyplot as plt


@pytest.fixture(scope="module")
def ei_result():
    net = networks.EINetwork.coba(jax.random.key(0), n=400, in_degree=40)
    return networks.simulate(net, 100.0, jax.random.key(1), record=np.arange(0, 400, 2))


def _spike_lines(axis):
    return [line for line in axis.lines if line.get_marker() == "|"]


def _three_populations(names=("a", "b", "c")) -> networks.NetworkResult:
    """A hand-made result: 3 populations (sizes 2, 3, 1), 4 steps of 0.5 ms, neurons 0, 3, 5 recorded."""
    raster = np.zeros((4, 3), bool)
    raster[0, 0] = raster[2, 1] = raster[3, 2] = raster[3, 0] = True
    counts = jnp.asarray([[1, 0, 0], [0, 0, 0], [0, 1, 0], [1, 0, 1]], jnp.float32)
    return networks.NetworkResult(
        dt=0.5,
        names=names,
        sizes=(2, 3, 1),
        counts=counts,
        raster=jnp.asarray(raster),
        record=jnp.asarray([0, 3, 5]),
        final_state=None,
    )


def test_raster_draws_every_recorded_spike_by_population(ei_result, tmp_path):
    figure, axis = plt.subplots()
    try:
        assert plot.raster(ei_result, ax=axis) is axis
        times, neurons = ei_result.spike_trains()
        assert times.size > 0
        xs = np.concatenate([line.get_xdata() for line in _spike_lines(axis)])
        ys = np.concatenate([line.get_ydata() for line in _spike_lines(axis)])
        assert sorted(zip(xs, ys, strict=True)) == sorted(zip(times, neurons, strict=True))
        assert [line.get_label() for line in _spike_lines(axis)] == ["E", "I"]
        assert [tick.get_text() for tick in axis.get_yticklabels()] == ["E", "I"]
        assert axis.get_xlim() == (0.0, ei_result.duration)
        figure.savefig(tmp_path / "raster.png")
    finally:
        plt.close(figure)
    assert (tmp_path / "raster.png").stat().st_size > 1000


def test_rates_plot_the_rate_trace_at_bin_centres(ei_result):
    figure, axis = plt.subplots()
    try:
        plot.rates(ei_result, bin_ms=10.0, ax=axis)
        trace = np.asarray(ei_result.rate_trace(10.0))
        assert [line.get_label() for line in axis.lines] == ["E", "I"]
        for column, line in enumerate(axis.lines):
            np.testing.assert_allclose(line.get_ydata(), trace[:, column])
            np.testing.assert_allclose(line.get_xdata(), 5.0 + 10.0 * np.arange(trace.shape[0]))
    finally:
        plt.close(figure)


def test_any_population_result_works():
    result = _three_populations()
    figure, (top, bottom) = plt.subplots(2, 1)
    try:
        plot.raster(result, ax=top)
        assert [tick.get_text() for tick in top.get_yticklabels()] == ["a", "b", "c"]
        np.testing.assert_allclose(
            np.sort(np.concatenate([line.get_xdata() for line in _spike_lines(top)])), [0.5, 1.5, 2.0, 2.0]
        )
        plot.rates(result, bin_ms=1.0, ax=bottom, populations=["c", "a"])
        assert [line.get_label() for line in bottom.lines] == ["c", "a"]
        # review s24: one name is that population, not its characters ("L23e" was read as L, 2, 3, e)
        named = _three_populations(names=("L23e", "b", "c"))
        plot.rates(named, bin_ms=1.0, ax=top, populations="L23e")
        assert [line.get_label() for line in top.lines[-1:]] == ["L23e"]
        # c: one spike of one neuron in the second 1 ms bin → 1000 Hz; a: 1 of 2 neurons per bin → 500 Hz.
        np.testing.assert_allclose(bottom.lines[0].get_ydata(), [0.0, 1000.0])
        np.testing.assert_allclose(bottom.lines[1].get_ydata(), [500.0, 500.0])
    finally:
        plt.close(figure)


def test_a_raster_without_recorded_neurons_is_empty_not_an_error():
    result = _three_populations()
    result = networks.NetworkResult(
        result.dt, result.names, result.sizes, result.counts, result.raster[:, :0], result.record[:0], None
    )
    figure, axis = plt.subplots()
    try:
        plot.raster(result, ax=axis)
        assert _spike_lines(axis) == []
    finally:
        plt.close(figure)


def test_bad_arguments_name_the_argument():
    result = _three_populations()
    with pytest.raises(ValueError, match=r"`populations`.*'z'"):
        plot.rates(result, populations=["a", "z"])
    with pytest.raises(ValueError, match="`bin_ms`"):
        plot.rates(result, bin_ms=0.0)


def test_overview_renders_a_png_without_pyplot(ei_result, tmp_path):
    open_before = plt.get_fignums()
    figure = plot.overview(ei_result, bin_ms=5.0, title="COBA")
    assert plt.get_fignums() == open_before
    assert [axis.get_ylabel() for axis in figure.axes] == ["neuron", "rate (Hz)"]
    figure.savefig(tmp_path / "overview.png")
    assert (tmp_path / "overview.png").stat().st_size > 5000


def test_a_batch_of_runs_is_refused_asking_for_one():
    """A vmap'd result binned into [runs, bins, P]: `rates` drew its rows against the run index."""
    one = _three_populations()
    batch = jax.tree.map(lambda leaf: jnp.stack([leaf, leaf]), one)
    with pytest.raises(ValueError, match=r"`result` is a batch of runs \(rates of shape \(2, 2, 3\)"):
        plot.rates(batch, bin_ms=1.0)
    with pytest.raises(ValueError, match="a batch of 2 runs"):
        plot.raster(batch)
    plt.close("all")
