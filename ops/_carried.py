"""The weights `event_scan` carries through one step of its loop, found by the operators through their data.

`event_scan` carries each ``[nnz]`` weight array of its ``params`` through the loop (the step sees the carry
as ``W.data``) and opens a `Carried` context around the step. While it is active, `event_matvec` and its
relatives look their ``W.data`` up by identity (`find`) and call the carried form of their primitive: the
product with the loop-invariant weights, with the carry passed through (`diffbrain.ops.event`). Chained
calls on the same weights pass on the latest carry. Anything not registered, or used inside another trace
(e.g. a `lax.cond` branch), takes the ordinary path, with the same values and gradients. Contexts are per
thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from jaxtyping import Array

try:  # JAX's current trace, an internal API: without it nothing is found (the ordinary path, same values)
    from jax._src import core as _jax_core
except ImportError:  # pragma: no cover - another JAX layout
    _jax_core = None

_local = threading.local()


def _active() -> list[Carried]:
    if not hasattr(_local, "active"):
        _local.active = []
    return _local.active


def _current_trace():
    """The trace JAX is recording into now, or None where this JAX does not expose it."""
    return getattr(getattr(_jax_core, "trace_ctx", None), "trace", None)


class Carried:
    """A context in which the operators of registered weight carries pass them on (see the module doc).

    Attributes:
        latest: per registered weight, its carry as the last operator passed it on (what the step returns).
        values: per registered weight, the loop-invariant weights the products use.
    """

    def __init__(self, carries: Sequence[Array], values: Sequence[Array]):
        self.latest = list(carries)
        self.values = list(values)
        self._carries = list(carries)
        self._trace = _current_trace()

    def __enter__(self) -> Carried:
        _active().append(self)
        return self

    def __exit__(self, *exc) -> None:
        _active().remove(self)


def find(data: Array) -> tuple[Carried, int] | None:
    """``(context, slot)`` of ``data`` if an active context registered it in the current trace, else None."""
    trace = _current_trace()
    if trace is None:
        return None
    for context in _active():
        if trace is not context._trace:
            continue
        for slot, carry in enumerate(context._carries):
            if carry is data:
                return context, slot
    return None
