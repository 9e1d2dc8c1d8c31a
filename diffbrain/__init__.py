"""diffbrain: differentiable brain models across scales (JAX + Equinox), with a benchmark leaderboard."""

from . import zoo as zoo
from ._version import __version__ as __version__
