"""diffbrain: differentiable brain models across scales (JAX + Equinox), with a benchmark leaderboard.

Subpackages load on first use (``diffbrain.zoo`` or ``from diffbrain import zoo``), so the command line
starts without importing JAX.
"""

import importlib

from ._version import __version__ as __version__

_SUBPACKAGES = ("zoo", "ops", "fit", "tasks", "learn", "bench")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBPACKAGES})
