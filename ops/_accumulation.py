"""Running weight gradients of `event_scan`'s reverse steps, found by the operators through the weights.

`event_scan` differentiates one step at a time and registers the ``[nnz]`` weights of its CSR matrices
here (`Accumulation`); while it is active, `event_matvec` and its relatives look their ``W.data`` up by
identity (`token`) and tag their primitive with the token, whose transpose then adds the weight gradient
into the running total in place (`add`) instead of returning a fresh ``[nnz]`` cotangent. Anything not
registered, or used inside another trace (e.g. a `lax.cond` branch), takes the ordinary path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jax._src import core as jax_core
from jaxtyping import Array

_ACTIVE: list[Accumulation] = []


def _current_trace():
    """JAX's current trace (an internal API): a tagged call must stay in the trace that registered its
    weights. Without it (another JAX version) nothing is tagged: the ordinary, slower path, same values."""
    context = getattr(jax_core, "trace_ctx", None)
    return getattr(context, "trace", None)


class Accumulation:
    """A context in which the gradients of registered weight arrays accumulate into running totals."""

    def __init__(self, totals: Sequence[Array]):
        self.totals = list(totals)
        self._weights: list[Array] = []
        self._trace = None

    def register(self, weights: Sequence[Array]) -> None:
        """The ``[nnz]`` weight arrays (tracers of the step's vjp), in the order of ``totals``."""
        self._weights, self._trace = list(weights), _current_trace()

    def __enter__(self) -> Accumulation:
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.remove(self)


def token(data: Array) -> tuple[int, int] | None:
    """``(context depth, slot)`` of ``data`` if an active context registered it in the current trace."""
    if not _ACTIVE:
        return None
    trace = _current_trace()
    for depth, context in enumerate(_ACTIVE):
        for slot, weights in enumerate(context._weights):
            if weights is data and trace is not None and trace is context._trace:
                return depth, slot
    return None


def add(accumulate: tuple[int, int], update: Callable[[Array], Array]) -> None:
    """Replace the running total of ``accumulate`` (a `token`) by ``update(total)``."""
    depth, slot = accumulate
    if depth >= len(_ACTIVE):
        raise RuntimeError(
            "diffbrain.ops: a weight gradient tagged for event_scan was transposed outside its reverse step; "
            "transpose event_scan's operators only through event_scan's own gradient."
        )
    context = _ACTIVE[depth]
    context.totals[slot] = update(context.totals[slot])
