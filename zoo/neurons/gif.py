"""Generalized integrate-and-fire neuron of Mihalas & Niebur (2009), with grid or interpolated resets."""

from __future__ import annotations

import abc
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_dt, check_less, check_nonnegative, check_positive
from .._integrate import exp_euler
from .._param import param
from ..surrogate import AbstractSurrogate, Sigmoid
from ._base import AbstractSpikingNeuron, jump


class GIFState(NamedTuple):
    V: Array  # membrane potential, mV
    V_th: Array  # adaptive threshold, mV
    I1: Array  # first spike-induced current, nA
    I2: Array  # second spike-induced current, nA


class AbstractGIF(AbstractSpikingNeuron):
    """The Mihalas–Niebur GIF's parameters, validation and step (the equations are in `GIF`'s docstring).

    Subclasses are final and say only where within a step a reset happens, through `_reset_targets`:
    `GIF` at the end of the step (the paper's and BrainPy's scheme), `InterpolatedGIF` at the crossing
    time interpolated inside the step.
    """

    State: ClassVar = GIFState
    input_unit: ClassVar[str] = "nA"

    V_rest: Float[Array, "*n"] = param(-70.0, "mV", "resting potential")
    V_reset: Float[Array, "*n"] = param(-70.0, "mV", "reset potential")
    V_th_inf: Float[Array, "*n"] = param(-50.0, "mV", "threshold at rest")
    V_th_reset: Float[Array, "*n"] = param(-60.0, "mV", "lower bound of the threshold after a spike")
    R: Float[Array, "*n"] = param(20.0, "MΩ", "membrane resistance")
    tau: Float[Array, "*n"] = param(20.0, "ms", "membrane time constant")
    a: Float[Array, "*n"] = param(0.0, "1/ms", "threshold's coupling to V")
    b: Float[Array, "*n"] = param(0.01, "1/ms", "threshold's relaxation rate")
    k1: Float[Array, "*n"] = param(0.2, "1/ms", "decay rate of I1")
    k2: Float[Array, "*n"] = param(0.02, "1/ms", "decay rate of I2")
    R1: Float[Array, "*n"] = param(0.0, "1", "fraction of I1 kept at a spike")
    R2: Float[Array, "*n"] = param(1.0, "1", "fraction of I2 kept at a spike")
    A1: Float[Array, "*n"] = param(0.0, "nA", "I1 added at a spike")
    A2: Float[Array, "*n"] = param(0.0, "nA", "I2 added at a spike")
    spike_fn: AbstractSurrogate = Sigmoid()
    detach_reset: bool = eqx.field(default=True, static=True)

    @abc.abstractmethod
    def _reset_targets(
        self, gap_start: Array, gap_end: Array, drive: Array, dt: float
    ) -> tuple[Array, Array, Array]:
        """What a spike in this step leaves at the step's end: V (mV) and the additions to I1 and I2 (nA),
        given the distance to threshold ``V − V_th`` (mV) at the step's start and end and the step's drive
        ``R·(I1 + I2 + I)`` (mV)."""

    def __check_init__(self):
        owner = type(self).__name__
        check_positive(owner, "R", self.R, "MΩ")
        check_positive(owner, "tau", self.tau, "ms")
        for name in ("k1", "k2", "b"):
            check_nonnegative(owner, name, getattr(self, name), "1/ms")
        check_less(owner, "V_reset", self.V_reset, "V_th_inf", self.V_th_inf)

    def init_state(self, shape: int | tuple[int, ...] = ()) -> GIFState:
        V = self._full(shape, self.V_rest)
        zeros = 0.0 * V
        return GIFState(V=V, V_th=self._full(shape, self.V_th_inf) + zeros, I1=zeros, I2=zeros)

    def step(self, state: GIFState, current: Float[ArrayLike, "*n"], dt: float) -> tuple[GIFState, Array]:
        dt = check_dt(dt)
        V, V_th, I1, I2 = state
        drive = self.R * (I1 + I2 + current)  # mV
        V_new = exp_euler(V, (self.V_rest - V + drive) / self.tau, 1 / self.tau, dt)
        dV_th = self.a * (V - self.V_rest) - self.b * (V_th - self.V_th_inf)
        V_th_new = exp_euler(V_th, dV_th, self.b, dt)
        I1_new = exp_euler(I1, -self.k1 * I1, self.k1, dt)
        I2_new = exp_euler(I2, -self.k2 * I2, self.k2, dt)
        spike = self.spike_fn(V_new - V_th_new)
        gate = self._reset_gate(spike)
        V_after, added1, added2 = self._reset_targets(V - V_th, V_new - V_th_new, drive, dt)
        V_new = jump(V_new, V_after, gate)
        I1_new = jump(I1_new, self.R1 * I1_new + added1, gate)
        I2_new = jump(I2_new, self.R2 * I2_new + added2, gate)
        V_th_new = jump(V_th_new, jnp.maximum(self.V_th_reset, V_th_new), gate)
        return GIFState(V=V_new, V_th=V_th_new, I1=I1_new, I2=I2_new), spike


class GIF(AbstractGIF):
    r"""Mihalas–Niebur generalized integrate-and-fire neuron with the paper's differentiable reset.

    ``dI_j/dt = −k_j·I_j``, ``τ dV/dt = −(V − V_rest) + R·(I1 + I2 + I)``,
    ``dV_th/dt = a·(V − V_rest) − b·(V_th − V_th_inf)``. A spike ``s`` (``V ≥ V_th``) applies
    ``V ← V − (V − V_reset)·s``, ``I_j ← I_j + s·(R_j·I_j + A_j − I_j)`` and
    ``V_th ← V_th + s·(max(V_th_reset, V_th) − V_th)``. Defaults are BrainPy's (and the paper's).

    Units: V mV, I nA, R MΩ (MΩ·nA = mV), τ ms, k_j 1/ms, a 1/ms, b 1/ms, A_j nA, R_j dimensionless.

    Precision: as in `LIF`, float32 loses any step's change of ``V`` below half a float spacing at ``|V|``
    (3.8e-6 mV near −70 mV): a drift slower than ~0.38 mV/s at ``dt`` 0.01 ms never moves ``V`` (τ = 100 s
    towards 8 mV above rest: float64 rises 0.0796 mV in 1 s, float32 0). Use float64 or a larger ``dt``.

    Note: with ``A1 = A2 = 0`` (the default) and zero initial currents, I1 and I2 stay zero, so ``k1``,
    ``k2``, ``R1``, ``R2`` have no effect on the voltage.

    Spike timing: V does not depend on the threshold, so ``a`` and ``b`` act on the voltage only through
    *when* the resets happen. Here (BrainPy's and the paper's scheme) a reset happens at the end of the
    step in which ``V ≥ V_th``: spike times snap to the grid, the voltage is piecewise constant in ``a``
    and ``b``, and its exact derivative with respect to them is zero (the reset is detached by default,
    so no surrogate term reaches V either): a voltage loss gives a gradient-based fit nothing to follow.
    `InterpolatedGIF`, the same model with resets at the crossing time interpolated inside the step,
    makes the voltage piecewise smooth in ``a`` and ``b``; its docstring says what stays discontinuous.

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain import zoo
        >>> trace = zoo.simulate(zoo.GIF(), jnp.full(10_000, 1.5), dt=0.1)  # 1 s at 1.5 nA
        >>> int(trace.spike_count)
        45

    ??? cite "Reference"
        Mihalas, Ş. & Niebur, E. (2009). A generalized linear integrate-and-fire neural model produces
        diverse spiking behaviors. Neural Computation 21, 704–718.
    """

    def _reset_targets(
        self, gap_start: Array, gap_end: Array, drive: Array, dt: float
    ) -> tuple[Array, Array, Array]:
        return self.V_reset, self.A1, self.A2


class InterpolatedGIF(AbstractGIF):
    r"""`GIF` whose resets happen at the threshold crossing interpolated inside the step, so spike times,
    and through them the voltage, depend smoothly on ``a`` and ``b`` and a gradient fit of a voltage loss
    can move them.

    The crossing time is found by linear interpolation of ``V − V_th`` over the step, and the jump is
    applied at that time: V restarts from ``V_reset`` and relaxes (with the step's drive) for the rest of
    the step, and the added currents ``A_j`` decay for the rest of the step (Hansel et al. 1998). Spike
    detection, the model and its parameters are `GIF`'s; spikes are still reported at the step's end. It is
    not a second-order scheme: after the crossing, the threshold's drive ``a·(V − V_rest)`` and V's drive
    still use the step-start V and currents (the ``A_j`` kick drives V from the next step on), and
    ``V_th ← max(V_th_reset, V_th)`` applies at the step's end, each an O(dt) error per spike.

    The trajectory is a piecewise-smooth function of every parameter whose only jumps are the voltage at
    the end of the step in which a spike falls (from ≈ V_th to ≈ V_reset when a crossing moves past a
    grid point) and spikes that appear or vanish; its exact gradient (any mode of `diffbrain.fit`)
    carries the spike times' sensitivity to ``a`` and ``b``. Those one-sample jumps remain, so a voltage
    MSE is still discontinuous at that scale (on `diffbrain.bench.fit`'s GIF problem, 5 × 1 s at
    dt 0.1 ms: steps of 7e-4 to 3e-2 mV² each time a spike moves past a grid point, which outweigh the
    smooth part within ~1 % of the truth, so gradient fits still stall there). A loss that leaves out the
    samples around the recorded spikes (`diffbrain.fit.SubthresholdMSE`) removes them: L-BFGS-B then
    recovers ``a`` and ``b`` to ~1e-10 from three of the four starts 10 % off in each
    (``tests/fit/test_gif_gradient.py``'s problem). Spikes that appear or vanish (a marginal rebound spike,
    say) stay discontinuities under any timing scheme: from the fourth start, (0.9·a, 1.1·b), an extra
    spike appears and L-BFGS-B stops where it started.

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain import zoo
        >>> trace = zoo.simulate(zoo.InterpolatedGIF(), jnp.full(10_000, 1.5), dt=0.1)  # 1 s at 1.5 nA
        >>> int(trace.spike_count)
        45

    ??? cite "Reference"
        Hansel, D., Mato, G., Meunier, C. & Neltner, L. (1998). On numerical simulations of
        integrate-and-fire neural networks. Neural Computation 10, 467–483.
    """

    def _reset_targets(
        self, gap_start: Array, gap_end: Array, drive: Array, dt: float
    ) -> tuple[Array, Array, Array]:
        after = _time_after_crossing(gap_start, gap_end, dt)
        relax = (self.V_rest - self.V_reset + drive) / self.tau
        V_after = exp_euler(self.V_reset, relax, 1 / self.tau, after)
        return V_after, self.A1 * jnp.exp(-self.k1 * after), self.A2 * jnp.exp(-self.k2 * after)


def _time_after_crossing(x_start: Array, x_end: Array, dt: float) -> Array:
    """Time (ms) from the threshold crossing to the end of the step, by linear interpolation of the
    distance to threshold ``x = V − V_th`` (mV) between the step's start and end; ``dt`` if the step
    started at or above threshold, and meaningful only where ``x_end ≥ 0`` (a spike)."""
    crossed = (x_start < 0) & (x_end >= 0)
    rise = jnp.where(crossed, x_end - x_start, 1.0)  # > 0 where crossed; the where keeps gradients finite
    return dt * jnp.where(crossed, x_end / rise, 1.0)
