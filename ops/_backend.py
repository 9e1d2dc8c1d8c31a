"""Which kernel backend computes the event-driven operators: chosen automatically, overridable per call.

Each backend is a module ``diffbrain.ops.kernels.<name>`` with the contract of
`diffbrain.ops.kernels.reference` and an ``available() -> bool``. The automatic choice is ``cpu`` (the
compiled event-driven kernel) when JAX runs on CPU, ``pallas`` on a GPU (the one platform where its kernels
compile); when that backend cannot be imported or reports itself unavailable, ``reference`` is used and one
`RuntimeWarning` says why. On any other accelerator (a TPU, say) the choice is ``reference``, without a
warning: Pallas would only be interpreted there (~150x slower than ``reference``), as `available` says.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings
from types import ModuleType

import jax

NAMES = ("reference", "cpu", "pallas")
"""Every backend name ``backend=`` accepts."""


@functools.cache
def probe(name: str) -> tuple[ModuleType | None, str]:
    """Import backend ``name``: ``(module, "")`` if it is usable, else ``(None, why not)``.

    A backend that fails to import or to build is reported, never raised: the package must import
    everywhere.
    """
    try:
        module = importlib.import_module(f"diffbrain.ops.kernels.{name}")
    except ImportError as error:
        return None, f"it is not installed ({error})"
    except Exception as error:  # a compiled backend may fail to build in many ways
        return None, f"importing it failed: {type(error).__name__}: {error}"
    # A backend may warn about itself; its messages go into the one warning of `default`.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            usable = module.available()
        except Exception as error:
            return None, f"its availability check failed: {type(error).__name__}: {error}"
    if usable:
        return module, ""
    return None, "; ".join(["it reports itself unavailable", *(str(w.message) for w in caught)])


_PREFERRED = {"cpu": "cpu", "gpu": "pallas"}
"""The automatic backend per JAX platform, where one is faster than ``reference``."""


@functools.cache
def default() -> str:
    """The automatic backend for JAX's default platform; warns once when it falls back to ``reference``."""
    preferred = _PREFERRED.get(jax.default_backend())
    if preferred is None:  # an accelerator where pallas is only interpreted
        return "reference"
    module, reason = probe(preferred)
    if module is not None:
        return preferred
    warnings.warn(
        f"diffbrain.ops: the {preferred!r} backend is unavailable ({reason}); using the portable but slower "
        "'reference' backend (O(nnz) per call). Pass backend='reference' to silence this warning.",
        RuntimeWarning,
        stacklevel=_outside_ops(),
    )
    return "reference"


def _outside_ops() -> int:
    """The ``stacklevel`` of the first caller outside this package's ``ops`` (the user's line), for a
    warning issued by the function that calls this one."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(_OPS):
        frame, level = frame.f_back, level + 1
    return level


_OPS = os.path.dirname(os.path.abspath(__file__)) + os.sep


CPU_WEIGHT_DTYPES = ("float32", "float64")
"""The weight dtypes of the ``cpu`` kernel (the others run on ``reference`` when the choice is automatic)."""


def resolve(backend: str | None, dtype=None) -> str:
    """The backend name to use for weights of ``dtype``: ``backend`` if given and usable, else the automatic
    choice — ``reference`` for weights the automatic ``cpu`` kernel does not take (float16, bfloat16).

    Raises:
        ValueError: ``backend`` is not one of `NAMES`, that backend is unavailable here, or it is ``cpu``
            and ``dtype`` is not one of `CPU_WEIGHT_DTYPES`.
    """
    not_for_cpu = dtype is not None and str(dtype) not in CPU_WEIGHT_DTYPES
    if backend is None:
        chosen = default()
        return "reference" if chosen == "cpu" and not_for_cpu else chosen
    if backend not in NAMES:
        raise ValueError(f"`backend` must be one of {NAMES} or None (automatic), got {backend!r}.")
    module, reason = probe(backend)
    if module is None:
        raise ValueError(f"`backend`={backend!r} is unavailable: {reason}. Use backend=None or 'reference'.")
    if backend == "cpu" and not_for_cpu:
        raise ValueError(
            f"`backend`='cpu' takes float32 or float64 weights, got W.data of dtype {dtype}; cast W.data, "
            "or use backend=None (which runs other dtypes on 'reference') or 'reference'."
        )
    return backend


def kernels(name: str) -> ModuleType:
    """The module of backend ``name`` (already resolved by `resolve`)."""
    module, reason = probe(name)
    if module is None:
        raise ValueError(f"`backend`={name!r} is unavailable: {reason}.")
    return module


def available() -> tuple[str, ...]:
    """The names of the backends usable on JAX's default device: one only interpreted here (``pallas`` on CPU)
    is left out, though ``backend=`` still accepts it, and so is ``cpu`` when the default device is an
    accelerator (its kernel reads host memory; it serves arrays placed on a CPU device). The platform is
    tested first: on an accelerator the ``cpu`` kernel is never probed, so never built (~1 min of g++)."""
    on_cpu = jax.default_backend() == "cpu"
    return tuple(
        n
        for n in NAMES
        if (on_cpu or n != "cpu") and (m := probe(n)[0]) is not None and not getattr(m, "INTERPRETED", False)
    )
