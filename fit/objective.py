"""The objective every fitting method shares: a loss of the unconstrained vector, and its cost account.

`Objective` turns (model, free parameters, recorded sweeps, loss) into jitted functions of ``u ∈ ℝᵈ``: one
value, a batch of values (`vmap`), and value-and-gradient, single or batched. `Account` counts what a method
spent, so gradient-based and gradient-free methods are compared like with like.

Budget rule (documented once, used everywhere):

* one *simulation* is one forward run of the model over all sweeps of the recording for one parameter
  vector; a batch of n vectors evaluated with `vmap` costs n simulations;
* one value-and-gradient costs ``grad_cost`` simulations. The default ``grad_cost = 1`` is the paper's
  accounting (an optimiser step is one evaluation); ``grad_cost = "measured"`` charges the measured ratio of a
  value-and-gradient's wall time to a forward's (`Objective.gradient_cost`), so the budget is compute.
  Wall time is always recorded next to the count.
"""

from __future__ import annotations

import functools
import time
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Scalar

from diffbrain import zoo

from .losses import AbstractLoss, Target
from .params import FreeParams

GradientMode = Literal["auto", "measure", "forward", "reverse", "central"]
FORWARD_MAX_PARAMS = 2
"""``gradient="auto"`` uses forward mode up to this many free parameters, reverse mode above: measured on
HH (10⁴ steps, float64), a value-and-gradient cost 4.5× a forward in checkpointed reverse mode and 8.7× with
``jacfwd`` for 4 parameters."""


MEASURE_MAX_PARAMS = 8
"""``gradient="measure"`` times forward mode and central differences only up to this many parameters."""
CENTRAL_STEP = 1e-5
"""Step of ``gradient="central"`` in the unconstrained ``u`` (≈ ε^{1/3} of float64)."""


class Objective:
    """The loss of a model on recorded sweeps as a function of the unconstrained free-parameter vector.

    Args:
        model: a zoo neuron (float64 recommended; see `zoo.astype`).
        free: the free parameters (`free_params`).
        inputs: injected current in ``model.input_unit``, ``[T, S]`` (one column per sweep).
        target: the recorded sweeps (`Target`, same T and S).
        loss: an `AbstractLoss`.
        gradient: ``"forward"`` (``jacfwd``: d tangents carried through one scan; cheap for few
            parameters), ``"reverse"`` (reverse mode through a scan whose step is checkpointed, so only the
            state is stored per step), ``"central"`` (central differences, step `CENTRAL_STEP` in ``u``: the
            2d + 1 simulations run as one `vmap` batch, so on CPU they cost a few forwards; accurate to
            ~1e-9 relative in float64 for smooth losses, not exact), ``"auto"`` (forward up to
            `FORWARD_MAX_PARAMS` parameters, else reverse) or ``"measure"`` (time each mode once —
            forward and central only up to `MEASURE_MAX_PARAMS` parameters — and keep the fastest; the
            times are in ``gradient_timings``).
        unroll: scan steps unrolled per iteration (fewer dispatches on CPU).

    The simulated voltage is aligned with the recording: sample k of the target (time k·dt) is compared
    with the model's state at time k·dt, i.e. the initial state at k = 0 and the state after step k − 1.
    """

    def __init__(
        self,
        model: zoo.AbstractNeuron,
        free: FreeParams,
        inputs: Float[Array, " T S"],
        target: Target,
        loss: AbstractLoss,
        *,
        gradient: GradientMode = "auto",
        unroll: int = 1,
    ):
        if gradient not in ("auto", "measure", "forward", "reverse", "central"):
            raise ValueError(
                f"`gradient` must be 'auto', 'measure', 'forward', 'reverse' or 'central', got {gradient!r}."
            )
        if inputs.shape != target.voltage.shape:
            raise ValueError(
                f"inputs {inputs.shape} and recorded voltage {target.voltage.shape} must both be [T, S]."
            )
        self.model, self.free, self.inputs, self.target, self.loss = model, free, inputs, target, loss
        self.unroll = unroll
        if gradient == "auto":
            gradient = "forward" if free is not None and free.size <= FORWARD_MAX_PARAMS else "reverse"
        self.gradient_timings: dict[str, float] = {}
        if gradient == "measure":
            gradient = self._fastest_gradient()
        self.gradient = gradient
        self.n_steps = inputs.shape[0]
        self._cost: float | None = None

        self.value = jax.jit(self._loss)
        self.values = jax.jit(jax.vmap(self._loss))
        self.value_and_grad = jax.jit(self._value_and_grad)
        self.values_and_grads = jax.jit(jax.vmap(self._value_and_grad))

    def simulate(self, u: Float[Array, " d"], *, checkpoint: bool = False) -> tuple[Array, Array]:
        """The model's voltage (mV) and spikes on the recording's grid, ``[T, S]`` each.

        With ``checkpoint`` every step is rematerialised in the backward pass (only the state is stored per
        step). This is a bare scan rather than `zoo.simulate(checkpoint_every=1)`, whose nested
        per-segment scan measured 2× slower in reverse mode (HH, 10⁴ steps: 4.5× vs 9.3× a forward).
        """
        return self.simulate_model(self.free.to_model(self.model, u), checkpoint=checkpoint)

    def simulate_model(self, model: zoo.AbstractNeuron, *, checkpoint: bool = False) -> tuple[Array, Array]:
        """`simulate` for a given model (all parameters set)."""
        dt = self.target.dt

        def step(state, current):
            state, spike = model.step(state, current, dt)
            return state, (state.V, spike)

        if checkpoint:
            step = jax.checkpoint(step)
        state = model.init_state(self.inputs.shape[1:])
        _, (V, spikes) = jax.lax.scan(step, state, self.inputs, unroll=self.unroll)
        V = jnp.concatenate([jnp.broadcast_to(state.V, V.shape[1:])[None], V[:-1]])
        spikes = jnp.concatenate([jnp.zeros_like(spikes[:1]), spikes[:-1]])
        return V, spikes

    def _loss(self, u: Float[Array, " d"], checkpoint: bool = False) -> Scalar:
        V, spikes = self.simulate(u, checkpoint=checkpoint)
        return self.loss(V, spikes, self.target)

    def _fastest_gradient(self, repeats: int = 3) -> str:
        u = jnp.zeros(self.free.size, self.free.lower.dtype)
        modes = ["reverse"] + (["forward", "central"] if self.free.size <= MEASURE_MAX_PARAMS else [])
        for mode in modes:
            value_and_grad = jax.jit(functools.partial(self._value_and_grad, mode=mode))
            jax.block_until_ready(value_and_grad(u))
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                jax.block_until_ready(value_and_grad(u))
                seconds.append(time.perf_counter() - start)
            self.gradient_timings[mode] = min(seconds)
        return min(self.gradient_timings, key=self.gradient_timings.get)

    def _value_and_grad(
        self, u: Float[Array, " d"], mode: str | None = None
    ) -> tuple[Scalar, Float[Array, " d"]]:
        mode = self.gradient if mode is None else mode
        if mode == "central":
            steps = CENTRAL_STEP * jnp.eye(u.shape[0], dtype=u.dtype)
            values = jax.vmap(self._loss)(jnp.concatenate([u[None], u + steps, u - steps]))
            d = u.shape[0]
            return values[0], (values[1 : d + 1] - values[d + 1 :]) / (2 * CENTRAL_STEP)
        if mode == "reverse":
            return jax.value_and_grad(lambda v: self._loss(v, checkpoint=True))(u)

        def with_value(v):
            value = self._loss(v)
            return value, value

        grad, value = jax.jacfwd(with_value, has_aux=True)(u)
        return value, grad

    def gradient_cost(self, u: Float[Array, " d"] | None = None, repeats: int = 3) -> float:
        """Measured wall time of one value-and-gradient over one forward (median of ``repeats``), ×."""
        if self._cost is None:
            u = jnp.zeros(self.free.size, self.free.lower.dtype) if u is None else u
            jax.block_until_ready(self.value(u))
            jax.block_until_ready(self.value_and_grad(u))
            ratios = []
            for _ in range(repeats):
                start = time.perf_counter()
                jax.block_until_ready(self.value(u))
                forward = time.perf_counter() - start
                start = time.perf_counter()
                jax.block_until_ready(self.value_and_grad(u))
                ratios.append((time.perf_counter() - start) / forward)
            self._cost = float(np.median(ratios))
        return self._cost


class BudgetExhausted(Exception):
    """Raised inside a method's loop when the `Account` has no simulations left."""


class Account:
    """Simulations spent (see the module docstring's rule), wall time, and the best loss so far.

    Args:
        budget: simulations allowed (``None``: unlimited).
        grad_cost: simulations charged per value-and-gradient.
    """

    def __init__(self, budget: float | None, grad_cost: float = 1.0):
        self.budget = budget
        self.grad_cost = float(grad_cost)
        self.simulations = 0.0
        self.forward_evaluations = 0
        self.gradient_evaluations = 0
        self.best = np.inf
        self.history: list[tuple[float, float, float]] = []
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Wall time since the account was opened, s."""
        return time.perf_counter() - self.start

    @property
    def remaining(self) -> float:
        """Simulations left (inf without a budget)."""
        return np.inf if self.budget is None else self.budget - self.simulations

    def affordable(self, n: int, gradient: bool = False) -> int:
        """How many of ``n`` evaluations (with gradient if ``gradient``) the remaining budget pays for."""
        cost = self.grad_cost if gradient else 1.0
        return int(min(n, np.floor(self.remaining / cost + 1e-9)))

    def charge(self, losses, gradient: bool = False) -> None:
        """Book the evaluations behind ``losses`` (one per element) and record the best finite loss."""
        losses = np.atleast_1d(np.asarray(losses, float))
        if gradient:
            self.gradient_evaluations += losses.size
            self.simulations += self.grad_cost * losses.size
        else:
            self.forward_evaluations += losses.size
            self.simulations += losses.size
        finite = losses[np.isfinite(losses)]
        if finite.size:
            self.best = min(self.best, float(finite.min()))
        self.history.append((self.simulations, self.seconds, self.best))


def nan_to_worst(values: Array) -> Array:
    """Replace NaN/inf losses by +1e300 so rankings and selections treat failed evaluations as worst."""
    return jnp.where(jnp.isfinite(values), values, 1e300)
