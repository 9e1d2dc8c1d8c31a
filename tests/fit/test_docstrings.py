"""The examples in the public docstrings of `fit` run and print what they claim (float64, as fits run)."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "name", ["diffbrain.fit.params", "diffbrain.fit.losses", "diffbrain.fit.fitter", "diffbrain.fit.datasets"]
)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
