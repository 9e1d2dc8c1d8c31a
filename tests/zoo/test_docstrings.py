"""The examples in the public docstrings run and print what they claim."""

import doctest
import importlib

import pytest

MODULES = [
    "diffbrain.zoo.surrogate",
    "diffbrain.zoo.simulate",
    "diffbrain.zoo.solve",
    "diffbrain.zoo.stimulus",
    "diffbrain.zoo.neurons.lif",
    "diffbrain.zoo.neurons.alif",
    "diffbrain.zoo.neurons.gif",
    "diffbrain.zoo.neurons.adex",
    "diffbrain.zoo.neurons.izhikevich",
    "diffbrain.zoo.neurons.hh",
    "diffbrain.zoo.neurons.traub_hh",
    *(
        f"diffbrain.zoo.synapses.{name}"
        for name in ("expon", "dual_expon", "alpha", "ampa", "gabaa", "nmda", "stp")
    ),
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    import jax

    with jax.enable_x64(False):
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
