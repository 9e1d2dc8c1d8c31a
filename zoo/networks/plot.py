"""Plots of a network simulation: spike raster and population rates over time.

Every function takes any result with the population-result interface (`EIResult`, `NetworkResult`:
``dt``, ``names``, ``sizes``, ``record``, ``spike_trains()``, ``rate_trace(bin_ms)``). Matplotlib is imported
only when a function is called, so ``diffbrain.zoo.networks`` does not need it.
Times count from the run's start, also for a run continued from a ``final_state`` (`NetworkResult.start_ms`
says when such a run began).

Examples:
    >>> import jax
    >>> from diffbrain.zoo import networks
    >>> from diffbrain.zoo.networks import plot
    >>> net = networks.EINetwork.coba(jax.random.key(0), n=400, in_degree=40)
    >>> result = networks.simulate(net, 100.0, jax.random.key(1), record=400)
    >>> figure = plot.overview(result, bin_ms=5.0)
    >>> [axis.get_ylabel() for axis in figure.axes]
    ['neuron', 'rate (Hz)']
"""

from __future__ import annotations

import numpy as np

_MAX_LABELLED = 12
"""Above this many populations, the raster's axis and the rates' legend are not labelled per population."""


def _offsets(result) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.asarray(result.sizes))])


def _colors(count: int) -> list:
    import matplotlib

    cycle = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    return [cycle(i % cycle.N) for i in range(count)]


def _new_axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(8, 4))[1]


def raster(result, ax=None, *, markersize: float = 2.0, title: str | None = None):
    """Spike raster of the recorded neurons (``result.record``): time (ms) against global neuron index,
    coloured by population, with the populations' names on the neuron axis.

    Args:
        result: a population result (`EIResult`, `NetworkResult`).
        ax: the Matplotlib axes to draw on; default a new figure's.
        markersize: marker size, points.
        title: the axes title (default: none).

    Returns:
        The axes.
    """
    ax = _new_axes(ax)
    times, neurons = result.spike_trains()
    offsets = _offsets(result)
    names = tuple(result.names)
    population = np.searchsorted(offsets, neurons, side="right") - 1
    colors = _colors(len(names))
    for index in np.unique(population):
        chosen = population == index
        ax.plot(times[chosen], neurons[chosen], "|", ms=markersize, color=colors[index], label=names[index])
    recorded = np.asarray(result.record)
    shown = np.unique(np.searchsorted(offsets, recorded, side="right") - 1) if recorded.size else []
    if 0 < len(shown) <= _MAX_LABELLED:
        ticks = []
        for index in shown:
            members = recorded[(recorded >= offsets[index]) & (recorded < offsets[index + 1])]
            ticks.append(0.5 * (members.min() + members.max()))
            if index > shown[0]:
                ax.axhline(offsets[index] - 0.5, color="0.8", lw=0.5)
        ax.set_yticks(ticks, [names[index] for index in shown])
    ax.set_xlim(0.0, result.duration)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("neuron")
    if title:
        ax.set_title(title)
    return ax


def rates(result, bin_ms: float = 5.0, ax=None, *, populations=None, title: str | None = None):
    """Population rates over time (`rate_trace` in bins of ``bin_ms`` ms, Hz), one line per population.

    Args:
        result: a population result (`EIResult`, `NetworkResult`).
        bin_ms: bin width, ms, a multiple of the result's ``dt``.
        ax: the Matplotlib axes to draw on; default a new figure's.
        populations: names of the populations to draw, or one name (default: all).
        title: the axes title (default: none).

    Returns:
        The axes.

    Raises:
        ValueError: ``bin_ms`` is not a positive multiple of ``dt``, ``populations`` names one that
            ``result`` lacks, or ``result`` is a batch of runs.
    """
    if not bin_ms > 0:
        raise ValueError(f"`bin_ms` must be > 0 ms, got {bin_ms!r}.")
    names = tuple(result.names)
    if isinstance(populations, str):  # one name, not its characters
        populations = (populations,)
    chosen = names if populations is None else tuple(populations)
    unknown = [name for name in chosen if name not in names]
    if unknown:
        raise ValueError(f"`populations` {unknown} are not in the result's populations {list(names)}.")
    trace = np.asarray(result.rate_trace(bin_ms))
    if trace.ndim != 2:
        raise ValueError(
            f"`result` is a batch of runs (rates of shape {trace.shape}, from `vmap`): plot one, "
            "`jax.tree.map(lambda x: x[i], result)`."
        )
    ax = _new_axes(ax)
    width = max(1, round(bin_ms / result.dt)) * result.dt
    centres = (np.arange(trace.shape[0]) + 0.5) * width
    colors = _colors(len(names))
    for name in chosen:
        index = names.index(name)
        ax.plot(centres, trace[:, index], lw=1.0, color=colors[index], label=name)
    ax.set_xlim(0.0, result.duration)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("rate (Hz)")
    if len(chosen) <= _MAX_LABELLED:
        ax.legend(loc="upper right", fontsize=8, ncols=min(len(chosen), 4))
    if title:
        ax.set_title(title)
    return ax


def overview(result, bin_ms: float = 5.0, *, title: str | None = None):
    """A new figure (not registered with pyplot) with the `raster` above the `rates` on a shared time axis.

    Save it with ``figure.savefig(path)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 6), layout="constrained")
    FigureCanvasAgg(figure)
    raster_axis, rate_axis = figure.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    raster(result, ax=raster_axis)
    raster_axis.set_xlabel("")
    rates(result, bin_ms, ax=rate_axis)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure
