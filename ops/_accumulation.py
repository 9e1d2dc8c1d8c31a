"""Running weight gradients of `event_scan`'s reverse steps, found by the operators through the weights.

`event_scan` differentiates one step at a time and registers the ``[nnz]`` weights of its CSR matrices
here (`Accumulation`); while it is active, `event_matvec` and its relatives look their ``W.data`` up by
identity (`token`) and tag the weights' tangent with the token, whose transpose then adds the weight
gradient into the running total in place (`add`) instead of returning a fresh ``[nnz]`` cotangent.
Anything not registered, or used inside another trace (e.g. a `lax.cond` branch), takes the ordinary path.
Contexts are per thread; a token names its context, not a position.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence

from jaxtyping import Array

try:  # JAX's current trace, an internal API: without it nothing is tagged (the ordinary path, same values)
    from jax._src import core as _jax_core
except ImportError:  # pragma: no cover - another JAX layout
    _jax_core = None

_local = threading.local()
_serials = itertools.count()


def _active() -> list[Accumulation]:
    if not hasattr(_local, "active"):
        _local.active = []
    return _local.active


def _current_trace():
    """The trace JAX is recording into now, or None where this JAX does not expose it."""
    return getattr(getattr(_jax_core, "trace_ctx", None), "trace", None)


class Accumulation:
    """A context in which the gradients of registered weight arrays accumulate into running totals."""

    def __init__(self, totals: Sequence[Array]):
        self.totals = list(totals)
        self.serial = next(_serials)
        self._weights: list[Array] = []
        self._trace = None

    def register(self, weights: Sequence[Array]) -> None:
        """The ``[nnz]`` weight arrays (tracers of the step's vjp), in the order of ``totals``."""
        self._weights, self._trace = list(weights), _current_trace()

    def __enter__(self) -> Accumulation:
        _active().append(self)
        return self

    def __exit__(self, *exc) -> None:
        _active().remove(self)


def token(data: Array) -> tuple[int, int] | None:
    """``(context serial, slot)`` of ``data`` if an active context registered it in the current trace."""
    active = _active()
    if not active:
        return None
    trace = _current_trace()
    for context in active:
        if trace is None or trace is not context._trace:
            continue
        for slot, weights in enumerate(context._weights):
            if weights is data:
                return context.serial, slot
    return None


def add(accumulate: tuple[int, int], update: Callable[[Array], Array]) -> None:
    """Replace the running total of ``accumulate`` (a `token`) by ``update(total)``."""
    serial, slot = accumulate
    for context in _active():
        if context.serial == serial:
            context.totals[slot] = update(context.totals[slot])
            return
    raise RuntimeError(
        "diffbrain.ops internal error: a weight gradient tagged by event_scan was transposed outside the "
        "reverse step that tagged it. Please report it; meanwhile use lax.scan instead of event_scan."
    )
