"""One registry of every zoo model with defaults that make it do its job.

The conformance test suite, the `diffbrain models` / `diffbrain simulate` commands and the benchmarks all
iterate over these entries, so a model added here is tested, listed and benchmarked with no other change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .neurons import ALIF, GIF, HH, LIF, AbstractNeuron, AdEx, InterpolatedGIF, Izhikevich, TraubHH
from .synapses import SYNAPSES as SYNAPSES


@dataclasses.dataclass(frozen=True)
class NeuronEntry:
    """A registered neuron model.

    Attributes:
        name: the command-line name (``"lif"``, ``"hh"``, …).
        make: builds the model with its default parameters.
        current: a step current, in the model's ``input_unit``, that makes the default model spike.
        duration: a default simulation length, ms.
        dt: a default time step, ms.
        summary: one line for listings.
    """

    name: str
    make: Callable[[], AbstractNeuron]
    current: float
    duration: float
    dt: float
    summary: str


NEURONS: dict[str, NeuronEntry] = {
    entry.name: entry
    for entry in [
        NeuronEntry("lif", LIF, 500.0, 200.0, 0.1, "leaky integrate-and-fire with refractory period"),
        NeuronEntry("alif", ALIF, 30.0, 500.0, 0.1, "adaptive LIF with soft reset (the paper's task neuron)"),
        NeuronEntry("gif", GIF, 1.5, 1000.0, 0.1, "Mihalas-Niebur generalized integrate-and-fire"),
        NeuronEntry(
            "gif-interpolated",
            InterpolatedGIF,
            1.5,
            1000.0,
            0.1,
            "GIF with threshold crossings interpolated within the step (a, b get nonzero gradients)",
        ),
        NeuronEntry("adex", AdEx, 1000.0, 500.0, 0.1, "adaptive exponential integrate-and-fire"),
        NeuronEntry("izhikevich", Izhikevich, 10.0, 500.0, 0.1, "Izhikevich simple model (regular spiking)"),
        NeuronEntry("hh", HH, 10.0, 100.0, 0.01, "Hodgkin-Huxley squid axon"),
        NeuronEntry("traubhh", TraubHH, 1.0, 50.0, 0.005, "Traub-Miles HH of the paper's fitting problem"),
    ]
}
"""Every neuron model by command-line name."""


def get_neuron(name: str) -> NeuronEntry:
    """The registry entry for ``name`` (case-insensitive), or a ``ValueError`` listing the known names."""
    key = name.lower()
    if key not in NEURONS:
        raise ValueError(f"unknown neuron model {name!r}; choose one of: {', '.join(NEURONS)}.")
    return NEURONS[key]
