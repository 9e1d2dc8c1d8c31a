"""Model parameters as Equinox fields that carry their unit and meaning.

`param(default, unit, doc)` makes a field that converts its value to a (weakly typed) JAX array, so a
parameter is a differentiable leaf, keeps the dtype of the inputs it meets, and may be a scalar or an array
for a heterogeneous population. Its unit and description live in the field metadata, where
`describe` reads them for the `diffbrain models` listing.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp


def as_param(value, name: str = "a model parameter") -> jax.Array:
    """Convert a real Python number or array to a floating JAX array, keeping Python floats weakly typed.

    Raises:
        TypeError: ``value`` (the parameter ``name``) is a bool, complex, or not a number (a string, None).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    message = f"{name} must be a real number or array, got {value!r}; pass a real value."
    try:
        array = jnp.asarray(value)
    except (TypeError, ValueError):  # a string, None, a ragged list, ...
        raise TypeError(message) from None
    if array.dtype == jnp.bool_ or jnp.issubdtype(array.dtype, jnp.complexfloating):
        raise TypeError(message)
    if not jnp.issubdtype(array.dtype, jnp.inexact):
        array = array.astype(jnp.result_type(float))
    return array


def param(default: float, unit: str, doc: str):
    """A float parameter field with a unit (``"ms"``, ``"mV"``, ``"nS"``, ``"1"`` …) and a docstring."""
    # The dataclass names the field once the class is built; the converter reads that name for its errors.
    field = eqx.field(
        default=default,
        converter=lambda value: as_param(value, f"`{field.name}`"),
        metadata={"unit": unit, "doc": doc},
    )
    return field


@dataclasses.dataclass(frozen=True)
class ParamInfo:
    """One row of a model's parameter listing."""

    name: str
    value: object
    unit: str
    doc: str


def parameters(model: eqx.Module) -> dict[str, jax.Array]:
    """The documented (unit-carrying) parameters of ``model`` by name, as stored (arrays or tracers)."""
    return {f.name: getattr(model, f.name) for f in dataclasses.fields(model) if "unit" in f.metadata}


def describe(model: eqx.Module) -> list[ParamInfo]:
    """List the documented parameters of ``model`` with their current values, units and meanings."""
    units = {f.name: f.metadata for f in dataclasses.fields(model) if "unit" in f.metadata}
    rows = []
    for name, value in parameters(model).items():
        shown = value.item() if getattr(value, "ndim", 1) == 0 else value
        rows.append(ParamInfo(name, shown, units[name]["unit"], units[name]["doc"]))
    return rows


def astype(model, dtype) -> eqx.Module:
    """Cast every floating leaf of a model (or any PyTree) to ``dtype``, e.g. ``jnp.float64``."""
    return jax.tree.map(
        lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x,
        model,
    )
