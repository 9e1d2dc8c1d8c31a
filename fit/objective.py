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
from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Scalar

from diffbrain import zoo
from diffbrain.zoo._param import parameters

from .losses import AbstractLoss, Target
from .params import FreeParams

GradientMode = Literal["auto", "measure", "adjoint", "forward", "reverse", "central"]
MODES = ("adjoint", "forward", "reverse", "central")
"""The gradient modes `Objective` computes (``"auto"`` and ``"measure"`` choose one of them)."""
ADJOINT_MAX_WIDTH = 4
"""``gradient="auto"`` uses the linearised adjoint while at most this many simulations run side by side
(sweeps × starts evaluated together), checkpointed reverse mode above; see `auto_gradient_mode`."""
MEASURE_MAX_PARAMS = 8
"""``gradient="measure"`` times forward mode only up to this many parameters."""
MEASURE_REPEATS = 5
"""``gradient="measure"`` keeps the median of this many timed calls per mode, the modes timed in turn (after
one untimed call each). The fastest call misled: reverse mode's time through a long scan is bimodal (GIF,
50,000 steps, one start: 26 ms at best, 47 ms in a fit), so its minimum beat forward mode's 21 ms."""
CENTRAL_STEP = 1e-5
"""Step of ``gradient="central"`` in the unconstrained ``u`` (≈ ε^{1/3} of float64)."""


def auto_gradient_mode(width: int, adjoint: bool = True) -> str:
    """The gradient mode ``gradient="auto"`` uses when ``width`` simulations (sweeps × starts) are evaluated
    side by side: ``"adjoint"`` up to `ADJOINT_MAX_WIDTH` (if the model allows it), else ``"reverse"``.

    Measured on HH (10⁴ steps at dt 0.02 ms, OU current, 4 free parameters, float64, loaded 2-core CPU;
    process CPU time of one batched value-and-gradient over one batched forward, median of 15;
    ``python -m diffbrain.bench fit`` records the width-1 case as ``hh-10k-gradient``):

    | width | forward | adjoint | reverse (checkpointed) | forward mode (jacfwd) | central |
    |---|---|---|---|---|---|
    | 1 | 1.8 ms | 3.4× | 11× | 27× | 11× |
    | 2 | 3.5 ms | 3.5× | 6.4× | 13× | 9.3× |
    | 4 | 11 ms | 2.8× | 2.9× | 4.5× | 5.2× |
    | 8 | 8.2 ms | 8.5× | 4.2× | 7.0× | 13× |
    | 16 | 12 ms | 11× | 4.4× | 6.3× | 18× |

    TraubHH (10⁴ steps at dt 0.01 ms, 4 free parameters): width 1 adjoint 3.5×, reverse 34×, forward mode
    29×; width 5 (the paper's five sweeps) adjoint 4.0×, reverse 4.6×, forward mode 2.9×.

    Why: XLA on CPU runs the forward scan of one neuron at ~0.2 µs/step, but every fused kernel of a
    differentiated step costs dispatch time, so reverse or forward mode through a scan over one or two
    neurons pays that overhead dozens of times per step. The adjoint keeps one sequential loop of a few
    elementwise kernels and does the rest vectorised over time; once many neurons run side by side, the
    per-step overhead is amortised and the adjoint's time-by-state Jacobians (memory-bound) cost more
    than recomputing each step in reverse mode.

    Above `ADJOINT_MAX_WIDTH` the faster of reverse and forward mode depends on the model, not on the
    width, so no width rule can pick it: ``gradient="measure"`` times them at the batch size used. 8
    starts of the ``fit`` suite's problems (``python -m diffbrain.bench.gradient_modes``: one `vmap`-ped
    value-and-gradient over one `vmap`-ped forward of the same 8 vectors, wall time, median of 7, loaded
    2-core CPU):

    | problem (sweeps) | reverse | forward mode | forward, directions folded into the batch | adjoint |
    |---|---|---|---|---|
    | hh-noise (2) | 3.5× | 5.2× | 4.0× | 9.3× |
    | traubhh-paper (5) | 3.6× | 1.7× | 2.2× | 4.9× |
    | gif-paper (5) | 2.4× | 3.0× | 3.8× | 17× |
    | gif-adapting (5) | 4.6× | 4.3× | 5.6× | 27× |

    (HH at 20 starts, width 40: reverse 3.8×, forward mode 4.8×; TraubHH at 2 starts, width 10: reverse
    5.1×, forward mode 2.8×.) Folding the d tangent directions into the batch (a `vmap` of `jax.jvp` over
    n·d lanes, each recomputing the primal) was never the fastest, so it is not a mode.
    """
    return "adjoint" if adjoint and width <= ADJOINT_MAX_WIDTH else "reverse"


class Objective:
    """The loss of a model on recorded sweeps as a function of the unconstrained free-parameter vector.

    Args:
        model: a zoo neuron (float64 recommended; see `zoo.astype`).
        free: the free parameters (`free_params`).
        inputs: injected current in ``model.input_unit``, ``[T, S]`` (one column per sweep).
        target: the recorded sweeps (`Target`, same T and S).
        loss: an `AbstractLoss`.
        gradient: how value-and-gradient is computed (all exact but ``"central"``):

            * ``"adjoint"``: linearised adjoint. One forward scan stores every state; the Jacobians of
              one step with respect to the state and the parameters are computed for all steps at once
              (forward mode, vectorised over time and sweeps); the adjoint recursion
              ``λ_k = A_kᵀ λ_{k+1} + ∂L/∂x_k`` runs as a scan of a few elementwise operations, and the
              parameter gradient is a contraction over steps. Needs a model whose parameters are all
              scalars (one neuron per sweep); otherwise ``"auto"`` does not pick it and asking for it
              raises.
            * ``"forward"``: ``jacfwd``, d tangents carried through one scan.
            * ``"reverse"``: reverse mode through a scan whose step is checkpointed (only the state is
              stored per step).
            * ``"central"``: central differences, step `CENTRAL_STEP` in ``u``, the 2d + 1 simulations as
              one `vmap` batch; ~1e-9 relative in float64 for smooth losses.
            * ``"auto"`` (default): `auto_gradient_mode` of how many simulations run side by side
              (sweeps for `value_and_grad`, sweeps × starts for `values_and_grads`).
            * ``"measure"``: time each exact mode (forward only up to `MEASURE_MAX_PARAMS` parameters,
              the adjoint only up to `ADJOINT_MAX_WIDTH` simulations side by side; never ``"central"``,
              which is approximate: ask for it by name) and use the fastest (the median of
              `MEASURE_REPEATS` calls, the modes timed in turn), for one
              start on `value_and_grad` when the objective is built and for n starts (a `vmap` over n
              vectors, what `values_and_grads` and batched L-BFGS evaluate) the first time
              ``gradient_mode(n)`` is asked; the times are in ``gradient_timings`` (one start) and
              ``gradient_timings_by_starts[n]``. The fastest mode depends on the model and the batch:
              ``python -m diffbrain.bench.gradient_modes`` measured 8 starts of the ``fit`` suite's problems
              (see `auto_gradient_mode`).
        unroll: scan steps unrolled per iteration (fewer dispatches on CPU).

    The simulated voltage is aligned with the recording: sample k of the target (time k·dt) is compared
    with the model's state at time k·dt, i.e. the initial state at k = 0 and the state after step k − 1.
    A spike the model emits in the step from (k − 1)·dt to k·dt sits at sample k, the first at or after it,
    which is where `prepare` puts a recorded spike (`diffbrain.fit.recording.spike_samples`).
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
        if gradient not in ("auto", "measure", *MODES):
            raise ValueError(f"`gradient` must be 'auto', 'measure' or one of {MODES}, got {gradient!r}.")
        if isinstance(unroll, bool) or not isinstance(unroll, int | np.integer) or unroll < 1:
            raise ValueError(
                f"`unroll` must be a positive integer (scan steps per iteration), got {unroll!r}; lax.scan "
                "reads 0 or True as unrolling every step, which takes minutes to compile. Pass e.g. unroll=1."
            )
        if inputs.shape != target.voltage.shape:
            raise ValueError(
                f"inputs {inputs.shape} and recorded voltage {target.voltage.shape} must both be [T, S]."
            )
        self.model, self.free, self.inputs, self.target, self.loss = model, free, inputs, target, loss
        self.unroll = int(unroll)
        self._check_population()
        self.adjoint_supported = all(
            jnp.ndim(leaf) == 0 for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_array))
        )
        if gradient == "adjoint" and not self.adjoint_supported:
            raise ValueError(
                f"gradient='adjoint' needs every parameter of {type(model).__name__} to be a scalar (one "
                "neuron per sweep); use gradient='reverse' or 'forward' for this model."
            )
        self.gradient_timings_by_starts: dict[int, dict[str, float]] = {}
        self._measure = gradient == "measure"
        self._mode = self._fastest_gradient() if self._measure else gradient
        self.n_steps = inputs.shape[0]
        # `gradient_cost` by number of starts (None: one start, unbatched)
        self._costs: dict[int | None, float] = {}

        self.value = jax.jit(self._loss)
        self.values = jax.jit(jax.vmap(self._loss))
        self.value_and_grad = jax.jit(self._value_and_grad)
        self._batched_value_and_grad = jax.jit(
            lambda us, mode: jax.vmap(functools.partial(self._value_and_grad, mode=mode))(us),
            static_argnames="mode",
        )

    def _check_population(self) -> None:
        """Raise ``ValueError`` unless the model simulates one neuron per sweep: each array parameter a
        scalar, one value per sweep (shape ``[S]``) or one value for all (shape ``[1]``). A population of
        another size would broadcast against the recorded ``[T, S]`` in the loss and fit the wrong thing."""
        sweeps = self.inputs.shape[1:]
        owner = type(self.model).__name__
        for name, value in parameters(self.model).items():
            shape = np.shape(value)
            try:
                fits = np.broadcast_shapes(shape, sweeps) == sweeps
            except ValueError:
                fits = False
            if not fits:
                n, neurons = sweeps[0], int(np.prod(shape))
                raise ValueError(
                    f"{owner}: `{name}` has shape {shape}, a population of {neurons} neurons, but "
                    f"the recording holds {n} sweep(s) (current [T, S] = {self.inputs.shape}), one neuron "
                    f"each; an array parameter needs one value per sweep, shape ({n},): pass `{name}` as a "
                    f"scalar or with {n} value(s), or fit each neuron to its own sweeps."
                )
        simulated = jax.eval_shape(lambda: self.simulate_model(self.model))[0].shape
        if simulated != self.target.voltage.shape:
            raise ValueError(
                f"{owner} simulates a voltage of shape {simulated} on this current, but the recording holds "
                f"{self.target.voltage.shape} ([T, S]): the model must be one neuron per sweep (its array "
                "fields one value per sweep, or scalars)."
            )

    @property
    def gradient(self) -> str:
        """The mode `value_and_grad` uses (see `gradient_mode` for batches)."""
        return self.gradient_mode(1)

    @property
    def gradient_timings(self) -> dict[str, float]:
        """``gradient="measure"``: seconds of one value-and-gradient (one start) per mode; else empty."""
        return self.gradient_timings_by_starts.get(1, {})

    def gradient_mode(self, n_starts: int) -> str:
        """The mode used for ``n_starts`` parameter vectors evaluated together (``gradient="measure"``:
        measured at that batch size the first time it is asked, outside any trace)."""
        if self._measure and n_starts > 1:
            timings = self.gradient_timings_by_starts.get(n_starts) or self._time_modes(n_starts)
            return min(timings, key=timings.get)
        if self._mode != "auto":
            return self._mode
        return auto_gradient_mode(n_starts * self.inputs.shape[1], self.adjoint_supported)

    def values_and_grads(self, us: Float[Array, " n d"]) -> tuple[Float[Array, " n"], Float[Array, " n d"]]:
        """Values and gradients of n parameter vectors evaluated together (`vmap`), in the mode
        ``gradient_mode(n)``; jitted once per mode."""
        return self._batched_value_and_grad(us, self.gradient_mode(us.shape[0]))

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

    def _fastest_gradient(self) -> str:
        """The exact mode fastest for one start (timed when a ``gradient="measure"`` objective is built)."""
        timings = self._time_modes(1)
        return min(timings, key=timings.get)

    def _time_modes(self, n_starts: int) -> dict[str, float]:
        """Seconds of one value-and-gradient of ``n_starts`` vectors (one: `value_and_grad`, more: a `vmap`)
        per exact mode, the median of `MEASURE_REPEATS` calls after one untimed call (compilation);
        stored in ``gradient_timings_by_starts``. The adjoint is timed only up to `ADJOINT_MAX_WIDTH`
        simulations side by side: above, it measured 5–27× a batched forward on every problem of the ``fit``
        suite (its time-by-state Jacobians are memory-bound), never the fastest."""
        u = jnp.zeros(self.free.size, self.free.lower.dtype)
        us = jnp.broadcast_to(u, (n_starts, u.size))
        modes = ["reverse"] + (["forward"] if self.free.size <= MEASURE_MAX_PARAMS else [])
        width = n_starts * self.inputs.shape[1]
        modes += ["adjoint"] if self.adjoint_supported and width <= ADJOINT_MAX_WIDTH else []
        calls = {}
        for mode in modes:
            if n_starts == 1:
                one_start = jax.jit(functools.partial(self._value_and_grad, mode=mode))
                calls[mode] = functools.partial(one_start, u)
            else:
                calls[mode] = functools.partial(self._batched_value_and_grad, us, mode)
            jax.block_until_ready(calls[mode]())
        seconds = {mode: [] for mode in modes}
        for _ in range(MEASURE_REPEATS):  # the modes in turn, so a busy spell slows every mode alike
            for mode, call in calls.items():
                start = time.perf_counter()
                jax.block_until_ready(call())
                seconds[mode].append(time.perf_counter() - start)
        timings = {mode: float(np.median(times)) for mode, times in seconds.items()}
        self.gradient_timings_by_starts[n_starts] = timings
        return timings

    def _value_and_grad(
        self, u: Float[Array, " d"], mode: str | None = None
    ) -> tuple[Scalar, Float[Array, " d"]]:
        mode = self.gradient if mode is None else mode
        if mode == "adjoint":
            return self._adjoint(u)
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

    def _adjoint(self, u: Float[Array, " d"]) -> tuple[Scalar, Float[Array, " d"]]:
        """Value and gradient by the linearised adjoint (see the class docstring)."""
        free, dt, shape = self.free, self.target.dt, self.inputs.shape[1:]
        theta = free.to_values(u)
        model = free.with_values(self.model, theta)
        state0 = model.init_state(shape)
        voltage = state0._fields.index("V")

        def record(state, current):
            new, spike = model.step(state, current, dt)
            return new, (state, spike)

        # states[k] is the state at time k·dt; spikes[k] is emitted by the step from k·dt to (k + 1)·dt
        _, (states, spikes) = jax.lax.scan(record, state0, self.inputs, unroll=self.unroll)
        spikes = jnp.concatenate([jnp.zeros_like(spikes[:1]), spikes[:-1]])
        value, pullback = jax.vjp(lambda V, s: self.loss(V, s, self.target), states.V, spikes)
        dV, dspikes = pullback(jnp.ones_like(value))

        def one_step(x, th, current):
            """One neuron, one step: state vector ``[n]`` → next state and spike ``[n + 1]``."""
            new, spike = free.with_values(self.model, th).step(type(state0)(*x), current, dt)
            return jnp.stack([*new, spike])

        def over_time_and_sweeps(fn):
            return jax.vmap(jax.vmap(fn))

        x = jnp.stack(states, axis=-1)[:-1]  # [T − 1, S, n]: the states whose next step the loss sees
        currents = self.inputs[:-1]
        n = x.shape[-1]
        jacobians = jax.jacfwd(one_step, argnums=(0, 1))
        jacobian, by_theta = over_time_and_sweeps(lambda x, c: jacobians(x, theta, c))(x, currents)
        A, C = jacobian[..., :n, :], jacobian[..., n, :]  # ∂x_{k+1}/∂x_k, ∂spike_{k+1}/∂x_k
        # λ_k = ∂L/∂x_k: λ_{T−1} = ∂L/∂V_{T−1} e_V, λ_k = A_kᵀ λ_{k+1} + C_k ∂L/∂s_{k+1} + ∂L/∂V_k e_V
        direct = (C * dspikes[1:, :, None]).at[..., voltage].add(dV[:-1])
        last = jnp.zeros_like(x[0]).at[..., voltage].set(dV[-1])

        def back(adjoint, a_and_b):
            a, b = a_and_b
            return jnp.sum(a * adjoint[..., :, None], axis=-2) + b, adjoint

        first, after = jax.lax.scan(back, last, (A, direct), reverse=True)  # after[k] = λ_{k+1}
        cotangent = jnp.concatenate([after, dspikes[1:, :, None]], axis=-1)
        _, pull_init = jax.vjp(
            lambda th: jnp.stack(free.with_values(self.model, th).init_state(shape), -1), theta
        )
        _, pull_u = jax.vjp(free.to_values, u)
        by_steps = jnp.einsum("tsi,tsid->d", cotangent, by_theta)
        return value, pull_u(by_steps + pull_init(first)[0])[0]

    def gradient_cost(
        self, u: Float[Array, " d"] | Float[Array, " n d"] | None = None, repeats: int = 3
    ) -> float:
        """Measured wall time of one value-and-gradient over one forward (median of ``repeats``), ×: of one
        start (`value_and_grad` over `value`, in ``gradient_mode(1)``) for ``u`` of shape ``[d]`` (default
        zeros), of n starts evaluated together (`values_and_grads` over `values`, in ``gradient_mode(n)``,
        what the batched methods run) for ``[n, d]``; measured once per number of starts."""
        u = jnp.zeros(self.free.size, self.free.lower.dtype) if u is None else jnp.asarray(u)
        starts = None if u.ndim == 1 else u.shape[0]
        if starts not in self._costs:
            value, value_and_grad = (
                (self.value, self.value_and_grad) if starts is None else (self.values, self.values_and_grads)
            )
            self._costs[starts] = gradient_cost(value, value_and_grad, u, repeats)
        return self._costs[starts]


def gradient_cost(value: Callable, value_and_grad: Callable, u: Array, repeats: int) -> float:
    """Wall time of ``value_and_grad(u)`` over that of ``value(u)``: the median of ``repeats`` pairs after
    one untimed call of each (compilation), ×."""
    jax.block_until_ready(value(u))
    jax.block_until_ready(value_and_grad(u))
    ratios = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(value(u))
        forward = time.perf_counter() - start
        start = time.perf_counter()
        jax.block_until_ready(value_and_grad(u))
        ratios.append((time.perf_counter() - start) / forward)
    return float(np.median(ratios))


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
