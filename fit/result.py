"""What a fit returns: the best model, every start, the history and the cost; saved and loaded as JSON."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import sys
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffbrain import zoo
from diffbrain._atomic import write_atomically
from diffbrain.zoo._param import parameters


@dataclasses.dataclass
class StartResult:
    """One start of a fit.

    Attributes:
        u: the best unconstrained vector it reached, ``[d]``.
        loss: its loss (inf if it never evaluated to a finite number).
        status: ``"ok"``, ``"failed"`` (a NaN/inf loss or gradient at its start stopped it, so it never
            moved: its ``loss`` is that start's if finite, else inf; or it never reached a finite loss) or
            ``"not run"`` (its share of the budget did not pay for one evaluation). A run that moved and
            then stopped at a non-finite loss or gradient (L-BFGS-B, Adam), or whose line search ended next
            to non-finite trial points (`diffbrain.fit.gradient.lbfgs`), is ``"ok"`` with its best finite
            point; its message says so.
        message: why it stopped.
        simulations: simulations it spent (see `diffbrain.fit.objective`).
        params: ``{name: value}`` of ``u`` in the parameters' units (filled in by `fit`).
        cell: which cell it fitted, in a fit of several cells at once (`fit_cells`), else None.
    """

    u: np.ndarray
    loss: float
    status: str
    message: str
    simulations: float
    params: dict[str, float] = dataclasses.field(default_factory=dict)
    cell: int | None = None


def start_status(loss: float, simulations: float, non_finite: bool = False) -> str:
    """A start's `StartResult.status` from its best loss, the simulations it spent and whether a non-finite
    loss or gradient at its start stopped it (``non_finite``): ``"failed"`` then, a finite loss kept."""
    if simulations > 0 and (non_finite or not np.isfinite(loss)):
        return "failed"
    return "ok" if np.isfinite(loss) else "not run"


def _field_to_json(value, where: str):
    """A non-parameter field as JSON: a bool, number, string or None as itself; a `diffbrain` module (a
    surrogate) as its class and fields; an array as ``{"array": nested list}``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, eqx.Module):
        cls = type(value)
        if (
            not cls.__module__.startswith("diffbrain.")
            or getattr(sys.modules[cls.__module__], cls.__name__, None) is not cls
        ):
            raise ValueError(
                f"{where} is a {cls.__module__}.{cls.__name__}, which a saved result cannot rebuild (only "
                "modules defined in diffbrain can be saved); set it to a diffbrain module before fitting."
            )
        fields = {
            f.name: _field_to_json(getattr(value, f.name), f"{where}.{f.name}")
            for f in dataclasses.fields(value)
        }
        return {"module": cls.__module__, "class": cls.__name__, "fields": fields}
    if isinstance(value, (np.ndarray, jax.Array, np.generic)):
        return {"array": np.asarray(value).tolist()}
    raise ValueError(
        f"{where} = {value!r} ({type(value).__name__}) cannot be saved as JSON; a saved result holds bools, "
        "numbers, strings, arrays and diffbrain modules (such as surrogates)."
    )


def _field_from_json(data, where: str):
    """Inverse of `_field_to_json`."""
    if not isinstance(data, dict):
        return data
    if "array" in data:
        return np.asarray(data["array"], float)
    module = data["module"]
    cls = (
        getattr(sys.modules.get(module) or importlib.import_module(module), data["class"], None)
        if module.startswith("diffbrain.")
        else None
    )
    if not (isinstance(cls, type) and issubclass(cls, eqx.Module)):
        raise ValueError(
            f"{where}: {module}.{data['class']} is not a diffbrain module; the file cannot be read."
        )
    return cls(**{name: _field_from_json(value, f"{where}.{name}") for name, value in data["fields"].items()})


def model_to_json(model: zoo.AbstractNeuron) -> dict:
    """``{"class": name, "parameters": {name: number or nested list}, "fields": {name: value}}`` of a zoo
    neuron: its parameters and every other field (the surrogate ``spike_fn``, ``detach_reset``, …).

    Raises:
        ValueError: a field holds something JSON cannot rebuild (a module not defined in diffbrain, a
            function); the message names the field.
    """
    values = {name: np.asarray(value).tolist() for name, value in parameters(model).items()}
    fields = {
        f.name: _field_to_json(getattr(model, f.name), f"{type(model).__name__}.{f.name}")
        for f in dataclasses.fields(model)
        if f.name not in values
    }
    return {"class": type(model).__name__, "parameters": values, "fields": fields}


def model_from_json(data: dict) -> zoo.AbstractNeuron:
    """Rebuild a zoo neuron from `model_to_json`'s output, its parameters float64 (as fits compute them: the
    JSON holds them to full precision), whether or not ``jax_enable_x64`` is on. Files written before the
    non-parameter fields were saved (no ``"fields"`` key) give those fields their defaults.

    Values the class's checks refuse together (a fit's best ``V_reset`` above its ``V_th``, both free: see
    `diffbrain.fit.fit`) are loaded as saved, past the checks, with a RuntimeWarning quoting the rule."""
    cls = getattr(zoo, data["class"], None)
    if not (isinstance(cls, type) and issubclass(cls, zoo.AbstractNeuron)):
        raise ValueError(f"{data['class']!r} is not a zoo neuron class.")
    fields = {
        name: _field_from_json(value, f"{data['class']}.{name}")
        for name, value in data.get("fields", {}).items()
    }
    with jax.enable_x64(True):
        values = {name: jnp.asarray(value, jnp.float64) for name, value in data["parameters"].items()}
        try:
            return cls(**values, **fields)
        except ValueError as error:
            model = cls(**fields)  # the defaults pass the checks; the saved values replace them unchecked
            model = eqx.tree_at(lambda m: [getattr(m, name) for name in values], model, list(values.values()))
            warnings.warn(
                f"the saved {data['class']} breaks a rule of its class ({error}); loaded as saved, unchecked "
                "(a fit's best point can break a rule between two free parameters). Building it again with "
                f"zoo.{data['class']}(...) raises.",
                RuntimeWarning,
                stacklevel=2,
            )
            return model


def _finite_or_none(value: float):
    return float(value) if math.isfinite(value) else None


@dataclasses.dataclass
class FitResult:
    """The outcome of `fit`.

    Attributes:
        model: the best model found (the free parameters set, every other field as given).
        loss: its loss.
        params: its free parameters ``{name: value}``, in their units.
        starts: every start (`StartResult`), including failed ones.
        history: ``(simulations, seconds, best loss so far)`` after every batch of evaluations, the
            seconds on the clock of ``wall_time``.
        simulations: simulations charged (the budget's unit; see `diffbrain.fit.objective`).
        forward_evaluations, gradient_evaluations: loss evaluations without / with a gradient.
        wall_time: seconds from the start of the fit to its end, compilation and the setup before the
            first evaluation (measuring the gradient mode or cost) included; a resumed fit adds its
            calls' times.
        method: the method's name.
        bounds: ``{name: (lower, upper)}`` of the free parameters.
        info: other settings (gradient mode, grad_cost, loss, n_starts, …).
    """

    model: zoo.AbstractNeuron
    loss: float
    params: dict[str, float]
    starts: list[StartResult]
    history: list[tuple[float, float, float]]
    simulations: float
    forward_evaluations: int
    gradient_evaluations: int
    wall_time: float
    method: str
    bounds: dict[str, tuple[float, float]]
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def n_failed(self) -> int:
        """Number of starts that failed (non-finite loss or gradient)."""
        return sum(start.status == "failed" for start in self.starts)

    def to_json(self) -> dict:
        """A JSON-serialisable dict (infinite losses become ``null``)."""
        starts = [
            {
                "u": np.asarray(s.u, float).tolist(),
                "loss": _finite_or_none(s.loss),
                "status": s.status,
                "message": s.message,
                "simulations": s.simulations,
                "params": s.params,
                "cell": s.cell,
            }
            for s in self.starts
        ]
        return {
            "model": model_to_json(self.model),
            "loss": _finite_or_none(self.loss),
            "params": self.params,
            "starts": starts,
            "history": [[a, b, _finite_or_none(c)] for a, b, c in self.history],
            "simulations": self.simulations,
            "forward_evaluations": self.forward_evaluations,
            "gradient_evaluations": self.gradient_evaluations,
            "wall_time": self.wall_time,
            "method": self.method,
            "bounds": {name: list(b) for name, b in self.bounds.items()},
            "info": self.info,
        }

    @classmethod
    def from_json(cls, data: dict) -> FitResult:
        """Inverse of `to_json`."""

        def number(value):
            return math.inf if value is None else value

        starts = [
            StartResult(
                u=np.asarray(s["u"], float),
                loss=number(s["loss"]),
                status=s["status"],
                message=s["message"],
                simulations=s["simulations"],
                params=s["params"],
                cell=s.get("cell"),
            )
            for s in data["starts"]
        ]
        return cls(
            model=model_from_json(data["model"]),
            loss=number(data["loss"]),
            params=data["params"],
            starts=starts,
            history=[(a, b, number(c)) for a, b, c in data["history"]],
            simulations=data["simulations"],
            forward_evaluations=data["forward_evaluations"],
            gradient_evaluations=data["gradient_evaluations"],
            wall_time=data["wall_time"],
            method=data["method"],
            bounds={name: tuple(b) for name, b in data["bounds"].items()},
            info=data["info"],
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result as JSON atomically and durably (a temporary file in the same folder, synced to
        disk, then `os.replace`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda file: json.dump(self.to_json(), file, indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> FitResult:
        """Read a result written by `save`; its model gets back every field (surrogate, ``detach_reset``,
        …), except from files written before these were saved, where they take their defaults."""
        with open(path) as file:
            return cls.from_json(json.load(file))
