"""What a fit returns: the best model, every start, the history and the cost; saved and loaded as JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from diffbrain import zoo
from diffbrain.zoo._param import parameters


@dataclasses.dataclass
class StartResult:
    """One start of a fit.

    Attributes:
        u: the best unconstrained vector it reached, ``[d]``.
        loss: its loss (inf if it never evaluated to a finite number).
        status: ``"ok"`` or ``"failed"`` (a NaN/inf loss or gradient stopped it).
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


def model_to_json(model: zoo.AbstractNeuron) -> dict:
    """``{"class": name, "parameters": {name: number or nested list}}`` of a zoo neuron."""
    values = {name: np.asarray(value).tolist() for name, value in parameters(model).items()}
    return {"class": type(model).__name__, "parameters": values}


def model_from_json(data: dict) -> zoo.AbstractNeuron:
    """Rebuild a zoo neuron from `model_to_json`'s output (other fields take their defaults)."""
    cls = getattr(zoo, data["class"], None)
    if not (isinstance(cls, type) and issubclass(cls, zoo.AbstractNeuron)):
        raise ValueError(f"{data['class']!r} is not a zoo neuron class.")
    return cls(**{name: np.asarray(value, float) for name, value in data["parameters"].items()})


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
        history: ``(simulations, seconds, best loss so far)`` after every batch of evaluations.
        simulations: simulations charged (the budget's unit; see `diffbrain.fit.objective`).
        forward_evaluations, gradient_evaluations: loss evaluations without / with a gradient.
        wall_time: seconds from the start of the fit to its end, compilation included.
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
        """Write the result as JSON atomically (a temporary file in the same folder, then `os.replace`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w") as file:
                json.dump(self.to_json(), file, indent=1)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> FitResult:
        """Read a result written by `save`."""
        with open(path) as file:
            return cls.from_json(json.load(file))
