"""The examples in the learn docstrings run and print what they claim."""

import doctest
import importlib

import jax
import pytest


@pytest.mark.parametrize("name", ["diffbrain.learn.network"])
def test_docstring_examples(name):
    with jax.enable_x64(False):
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
