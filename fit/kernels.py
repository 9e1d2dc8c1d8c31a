"""A Pozzorini-style GIF whose spike-triggered current and threshold kernels are sums of rectangular bins,
fitted with the recorded spikes imposed: a fitting problem with as many free parameters as one likes.

The model (Pozzorini et al. 2015; units pF, nS, mV, pA, ms):

* ``C dV/dt = −g_L (V − E_L) + I(t) − η(t)``, forward Euler at step ``dt``; after a spike at step k, V is
  held at ``V_reset`` for the ``n_ref`` steps k + 1 … k + n_ref (the refractory period ``t_ref``);
* escape-rate spiking: a spike at step t (not refractory) with probability ``1 − exp(−λ_t dt)``,
  ``λ_t = λ_0 exp((V_t − V_T(t))/ΔV)``, moving threshold ``V_T(t) = V_T* + γ(t)``;
* ``η(t) = Σ_k η_kernel(t − t_k)`` and ``γ(t) = Σ_k γ_kernel(t − t_k)`` over past spikes t_k, each kernel a
  sum of ``n`` rectangular bins (`log_bins`): ``η_kernel(lag) = η_j`` for lag in bin j. So ``η(t) =
  X(t)·η`` where ``X_j(t)`` counts the spikes whose lag falls in bin j (`spike_regressors`).

Fitted as Pozzorini et al. do, with the recorded spikes imposed (the resets and the kernels' spike trains
are the data's), the loss of the ``d = 2n`` amplitudes ``(η_1…η_n, γ_1…γ_n)`` is

    ``L = mean_t (V_t − V̂_t)² / σ² + NLL / N_spikes``

(σ: the voltage noise, mV; NLL: the negative Bernoulli log-likelihood of the recorded spike train over the
non-refractory steps). V is linear in η, the NLL convex in γ given V: the problem is convex in the amplitudes
(the box transforms of `FreeParams` bend it a little), and one simulation costs nearly the same for any n
(one scan over the steps; the kernels are one ``[T, n]`` product). `KernelGIFObjective` offers the interface
the fitting methods use (`diffbrain.fit.fitter.run_method`), so every method of `fit` runs on it.

With ``membrane`` free parameters too (e.g. ``C``, ``g_L``, ``E_L``, ``V_T``), ``d = 2n + m`` and the problem
is no longer convex: V depends on C and g_L through the recursion (powers of ``1 − dt·g_L/C``), and the
threshold baseline V_T* trades off against the slow γ bins.

??? cite "Reference"
    Pozzorini, C., Mensi, S., Hagens, O., Naud, R., Koch, C. & Gerstner, W. (2015). Automated
    high-throughput characterization of single neurons by means of simplified spiking models. PLoS Comput.
    Biol. 11, e1004275.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, Scalar

from ..zoo._param import param
from .objective import gradient_cost
from .params import FreeParams, free_params


def log_bins(n: int, length: int, min_width: int = 2) -> Int[np.ndarray, " n+1"]:
    """Edges (in steps, from 0) of ``n`` rectangular bins covering ``length`` steps, log-spaced.

    Each bin is about twice as wide as the one before (rounding to whole steps makes it up to 2.5×) and
    at least ``min_width`` steps wide (the first
    one ``max(min_width, length/(2ⁿ − 1))``), as Pozzorini's ``Filter_Rect_LogSpaced``.
    """
    if n < 1 or length < n * min_width:
        raise ValueError(f"`n`={n} bins of >= {min_width} steps do not fit in `length`={length} steps.")
    low, high = 1.0, 2.0
    if min_width * (2.0**n - 1) > length:  # ratio < 2: solve min_width·(rⁿ − 1)/(r − 1) = length
        for _ in range(100):
            ratio = (low + high) / 2
            total = min_width * n if ratio == 1 else min_width * (ratio**n - 1) / (ratio - 1)
            low, high = (ratio, high) if total < length else (low, ratio)
        widths = min_width * low ** np.arange(n)
    else:
        widths = length / (2.0**n - 1) * 2.0 ** np.arange(n)
    edges = np.round(np.concatenate([[0.0], np.cumsum(widths)]) * length / np.sum(widths)).astype(int)
    for j in range(1, n + 1):  # rounding must not leave a bin narrower than min_width
        edges[j] = max(edges[j], edges[j - 1] + min_width)
    edges[-1] = max(edges[-1], length)
    return edges


def spike_regressors(
    spikes: Float[ArrayLike, " T"], edges: Int[ArrayLike, " m"]
) -> Float[np.ndarray, "T m-1"]:
    """``X[t, j]``: spikes at steps ``t − lag``, ``edges[j] <= lag < edges[j + 1]`` (so ``η(t) = X·η``)."""
    spikes = np.asarray(spikes, float)
    edges = np.asarray(edges, int)
    T = spikes.shape[0]
    before = np.concatenate([[0.0], np.cumsum(spikes)])  # before[m] = spikes at steps < m

    def count_up_to(lag):  # spikes at steps <= t − lag, for every t
        index = np.clip(np.arange(T) - lag + 1, 0, T)
        return before[index]

    return np.stack([count_up_to(lo) - count_up_to(hi) for lo, hi in itertools.pairwise(edges)], 1)


class KernelGIF(eqx.Module):
    """The GIF of the module docstring with kernel amplitudes ``eta`` (pA) and ``gamma`` (mV) per bin.

    ``edges`` (steps) are the bins' lags counted from the first lag at which a spike's kernels act, the end
    of the refractory period (lag ``n_ref``), or lag 1 when ``t_ref < dt/2`` (``n_ref = 0``: nothing is
    held, and a spike never acts on the step it is emitted in, whose threshold decided it).
    The membrane and threshold parameters are documented fields (`diffbrain.fit.free_params` can free
    them); in `imposed_voltage` and `KernelGIFObjective.losses` each may be ``[P]``, one value per
    parameter set.
    """

    eta: Float[Array, " n"]
    gamma: Float[Array, " n"]
    edges: tuple[int, ...] = eqx.field(static=True, converter=lambda e: tuple(int(x) for x in e))
    dt: float = eqx.field(static=True, default=0.5)
    t_ref: float = eqx.field(static=True, default=4.0)  # ms: whole steps, so not a free parameter
    C: Float[Array, "*P"] = param(150.0, "pF", "membrane capacitance")
    g_L: Float[Array, "*P"] = param(10.0, "nS", "leak conductance")
    E_L: Float[Array, "*P"] = param(-70.0, "mV", "leak reversal (resting) potential")
    V_reset: Float[Array, "*P"] = param(-55.0, "mV", "voltage held during the refractory period")
    V_T: Float[Array, "*P"] = param(-53.0, "mV", "threshold baseline V_T*")
    Delta_V: Float[Array, "*P"] = param(1.5, "mV", "threshold sharpness")
    lambda_0: Float[Array, "*P"] = param(0.1, "1/ms", "escape rate at the threshold")

    @property
    def n_ref(self) -> int:
        """Refractory steps after a spike: ``t_ref/dt`` to the nearest whole step, halves up as in `zoo.LIF`
        (``t_ref/dt`` may fall short of a half by its float rounding: ``0.35/0.1`` is 3.4999…)."""
        ratio = self.t_ref / self.dt
        return int(np.floor(ratio * (1 + 8 * np.finfo(float).eps) + 0.5))

    def lag_edges(self) -> np.ndarray:
        """Bin edges as lags from the spike (steps): ``max(n_ref, 1) + edges`` (see the class docstring)."""
        return max(self.n_ref, 1) + np.asarray(self.edges)

    def kernels(self) -> tuple[np.ndarray, np.ndarray]:
        """``η`` (pA) and ``γ`` (mV) per lag 0 … ``lag_edges()[-1]`` − 1 steps (zero before the first bin:
        while refractory, and at lag 0)."""
        lags = self.lag_edges()
        widths = np.diff(lags)
        pad = np.zeros(lags[0])
        return (
            np.concatenate([pad, np.repeat(np.asarray(self.eta), widths)]),
            np.concatenate([pad, np.repeat(np.asarray(self.gamma), widths)]),
        )

    def generate(self, current: Float[ArrayLike, " T"], key: PRNGKeyArray) -> tuple[np.ndarray, np.ndarray]:
        """Simulate the stochastic model under ``current`` (pA): voltage (mV) and spikes (0/1), ``[T]`` each.

        A plain NumPy loop over the steps, written independently of `imposed` (which tests compare it to).
        """
        current = np.asarray(current, float)
        T = current.shape[0]
        C, g_L, E_L, V_reset, V_T, Delta_V, lambda_0 = (
            float(getattr(self, name))
            for name in ("C", "g_L", "E_L", "V_reset", "V_T", "Delta_V", "lambda_0")
        )
        eta, gamma = self.kernels()
        uniform = np.asarray(jax.random.uniform(key, (T,), jnp.float64))
        V, spikes = np.empty(T), np.zeros(T)
        V[0], last = E_L, -(10**9)
        for t in range(T):
            lags = min(t, eta.size - 1)
            past = spikes[t - lags : t][::-1]  # past[i]: the spike at step t − 1 − i (lag i + 1)
            if t - last > self.n_ref:  # not refractory: V_t is free and may cross
                rate = lambda_0 * np.exp((V[t] - V_T - past @ gamma[1 : lags + 1]) / Delta_V)
                if uniform[t] < -np.expm1(-rate * self.dt):
                    spikes[t], last = 1.0, t
            if t + 1 == T:
                break
            if t + 1 - last <= self.n_ref:
                V[t + 1] = V_reset
            else:
                drive = current[t] - past @ eta[1 : lags + 1]
                V[t + 1] = V[t] + self.dt / C * (-g_L * (V[t] - E_L) + drive)
        return V, spikes

    def held(self, spikes: Float[ArrayLike, " T"]) -> np.ndarray:
        """Refractory steps after ``spikes`` (V held at ``V_reset``, no spike possible), boolean ``[T]``."""
        return spike_regressors(spikes, [1, self.n_ref + 1])[:, 0] > 0

    def imposed_voltage(self, drive: Float[Array, " T *P"], held: Bool[Array, " T"]) -> Float[Array, " T *P"]:
        """Voltage (mV) under ``drive = I − η(t)`` (pA; a trailing axis for several parameter sets at
        once) with the refractory steps ``held`` imposed.

        Batched natively (the scan carries one voltage per set): a `vmap` of a scan over one voltage was
        measured up to 8× slower on CPU than this at 64 sets.
        """

        def step(V, inputs):
            drive, hold = inputs
            new = jnp.where(hold, self.V_reset, V + self.dt / self.C * (-self.g_L * (V - self.E_L) + drive))
            return new, new

        V0 = jnp.full(drive.shape[1:], self.E_L, drive.dtype)
        _, V = jax.lax.scan(step, V0, (drive[:-1], held[1:]))
        return jnp.concatenate([V0[None], V])


def _log_spike(z: Array, scale: float) -> Array:
    """``log p`` of a spike in one step, ``p = 1 − exp(−λdt)``, ``λdt = scale·exp(z)``; finite with finite
    gradients for any ``z`` (``log p → log scale + z`` as ``λdt → 0``; ``λdt`` is capped at 50, where
    ``log p = −e⁻⁵⁰`` is 0 in floating point, so an overflowing ``exp(z)`` gives no NaN gradient)."""
    rate = scale * jnp.exp(jnp.minimum(z, jnp.log(50.0 / scale)))
    small = rate < 1e-6
    safe = jnp.where(small, 1.0, rate)
    return jnp.where(small, jnp.log(scale) + z - rate / 2, jnp.log(-jnp.expm1(-safe)))


def _amplitude_bounds(name: str, bounds, unit: str, default: tuple[float, float]) -> tuple[float, float]:
    """``bounds`` as a (lower, upper) pair of finite floats with lower < upper, or a ValueError naming it."""
    message = f"`{name}` must be a (lower, upper) pair of finite numbers ({unit}) with lower < upper"
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"{message}, got {bounds!r}.") from None
    if isinstance(bounds, str) or not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{message}, got {bounds!r}; pass e.g. the default {name}={default}.")
    return lo, hi


class KernelGIFObjective:
    """The imposed-spike loss of a `KernelGIF` (module docstring) as a function of ``u ∈ ℝ²ⁿ⁺ᵐ``
    (the ``2n`` amplitudes, then the ``m`` free membrane parameters, if any).

    Offers what `diffbrain.fit.fitter.run_method` uses — ``free``, ``value``, ``values``,
    ``value_and_grad``, ``values_and_grads``, ``gradient_mode`` — so every method of `fit` runs on it.
    The gradient is reverse mode through the scan (the scan's state is one voltage, so nothing needs
    rematerialising).

    Args:
        model: the `KernelGIF` (its ``eta``/``gamma`` are replaced by the free amplitudes).
        current: injected current, pA, ``[T]``.
        voltage: recorded voltage, mV, ``[T]``.
        spikes: recorded spikes (0/1 per step), ``[T]``.
        sigma: voltage noise (mV) that scales the voltage term, finite and > 0.
        eta_bounds: (lower, upper) of every η amplitude, pA (finite, lower < upper; a ValueError otherwise).
        gamma_bounds: (lower, upper) of every γ amplitude, mV (likewise).
        membrane: ``{name: (lower, upper)}`` of `KernelGIF` parameters fitted too (``C`` pF, ``g_L`` nS,
            ``E_L``, ``V_reset``, ``V_T``, ``Delta_V`` mV, ``lambda_0`` 1/ms), after the amplitudes in
            ``u``, with the transforms of `diffbrain.fit.free_params` (``"log"`` for C, g_L and lambda_0,
            ``"logit"`` for the potentials and Delta_V); the loss is then no longer convex (V depends on C
            and g_L through the scan's recursion). None: the amplitudes alone.
    """

    def __init__(
        self,
        model: KernelGIF,
        current: Float[ArrayLike, " T"],
        voltage: Float[ArrayLike, " T"],
        spikes: Float[ArrayLike, " T"],
        *,
        sigma: float,
        eta_bounds: tuple[float, float] = (0.0, 400.0),
        gamma_bounds: tuple[float, float] = (0.0, 40.0),
        membrane: Mapping[str, tuple[float, float]] | None = None,
    ):
        spikes = np.asarray(spikes, float)
        if not (np.shape(current) == np.shape(voltage) == spikes.shape) or spikes.ndim != 1:
            raise ValueError(
                f"current {np.shape(current)}, voltage {np.shape(voltage)} and spikes {spikes.shape} "
                "must be one sweep each, of equal length [T]."
            )
        if not spikes.any():
            raise ValueError("`spikes` has no spike: the threshold kernel cannot be fitted.")
        try:
            positive = float(sigma) > 0 and np.isfinite(float(sigma))
        except (TypeError, ValueError):
            positive = False
        if isinstance(sigma, bool) or not positive:
            raise ValueError(
                f"`sigma` must be a finite voltage noise > 0 mV, got {sigma!r}; pass e.g. sigma=1.0."
            )
        eta_bounds = _amplitude_bounds("eta_bounds", eta_bounds, "pA", (0.0, 400.0))
        gamma_bounds = _amplitude_bounds("gamma_bounds", gamma_bounds, "mV", (0.0, 40.0))
        n = len(model.edges) - 1
        self.model, self.sigma, self.n = model, float(sigma), n
        names = tuple(f"eta_{j:02d}" for j in range(n)) + tuple(f"gamma_{j:02d}" for j in range(n))
        transforms = ("logit",) * 2 * n
        lower = [eta_bounds[0]] * n + [gamma_bounds[0]] * n
        upper = [eta_bounds[1]] * n + [gamma_bounds[1]] * n
        if membrane:
            extra = free_params(model, membrane)
            names, transforms = names + extra.names, transforms + extra.transforms
            lower, upper = lower + extra.lower.tolist(), upper + extra.upper.tolist()
        self.membrane = names[2 * n :]
        """Names of the free `KernelGIF` parameters after the amplitudes (empty: the amplitudes alone)."""
        self.free = FreeParams(
            names=names,
            transforms=transforms,
            lower=jnp.asarray(lower, jnp.float64),
            upper=jnp.asarray(upper, jnp.float64),
        )
        held = model.held(spikes)
        self.current = jnp.asarray(current, jnp.float64)
        self.voltage = jnp.asarray(voltage, jnp.float64)
        self.held = jnp.asarray(held)
        self.regressors = jnp.asarray(spike_regressors(spikes, model.lag_edges()))
        self.n_spikes = float(spikes.sum())
        self.spike_steps = jnp.asarray(np.flatnonzero(spikes))
        self.quiet = jnp.asarray(~held & (spikes == 0))  # steps where the model could spike but did not
        self.value = jax.jit(self.loss)
        self.values = jax.jit(self.losses)
        self.value_and_grad = jax.jit(jax.value_and_grad(self.loss))
        self.values_and_grads = jax.jit(self._values_and_grads)
        self._cost: float | None = None

    gradient = "reverse"

    def gradient_mode(self, n_starts: int) -> str:
        """Reverse mode, however many starts run together."""
        return "reverse"

    def _value_and_grad(self, u: Float[Array, " d"], mode: str | None = None) -> tuple[Scalar, Array]:
        return jax.value_and_grad(self.loss)(u)

    def amplitudes(self, u: Float[Array, " d *P"]) -> tuple[Float[Array, " n *P"], Float[Array, " n *P"]]:
        """``(η pA, γ mV)`` of the unconstrained vector ``u`` (or of its columns), ``[n]`` each; the free
        membrane parameters after them in ``u`` are not amplitudes (see `models`)."""
        theta = self.free.to_values(u.T).T
        return theta[: self.n], theta[self.n : 2 * self.n]

    def models(self, us: Float[Array, "P d"]) -> KernelGIF:
        """The `KernelGIF` of the rows of ``us``: ``eta``/``gamma`` ``[n, P]``, each free membrane
        parameter ``[P]`` (the others as given)."""
        theta = self.free.to_values(us).T  # [d, P]
        names = ("eta", "gamma", *self.membrane)
        values = [theta[: self.n], theta[self.n : 2 * self.n], *theta[2 * self.n :]]
        return eqx.tree_at(lambda m: [getattr(m, name) for name in names], self.model, values)

    def loss(self, u: Float[Array, " d"]) -> Scalar:
        """``mean (V − V̂)²/σ² + NLL/N_spikes`` at ``u`` (see the module docstring)."""
        return self.losses(u[None])[0]

    def losses(self, us: Float[Array, "P d"]) -> Float[Array, " P"]:
        """`loss` of each row of ``us``, all simulated in one scan."""
        model = self.models(us)  # eta, gamma [n, P]; free membrane parameters [P]
        V = model.imposed_voltage(self.current[:, None] - self.regressors @ model.eta, self.held)
        z = (V - model.V_T - self.regressors @ model.gamma) / model.Delta_V
        # the log-probability of a spike only where there is one (a handful of steps), exp(z) everywhere
        log_p = _log_spike(z[self.spike_steps], model.lambda_0 * model.dt)
        # −inf before the exp (not 0 after it) off the quiet steps: an overflowing exp(z) would give NaN there
        no_spike = model.lambda_0 * model.dt * jnp.exp(jnp.where(self.quiet[:, None], z, -jnp.inf))
        nll = jnp.sum(no_spike, axis=0) - jnp.sum(log_p, axis=0)
        mse = jnp.mean((V - self.voltage[:, None]) ** 2, axis=0)
        return mse / self.sigma**2 + nll / self.n_spikes

    def _values_and_grads(self, us: Float[Array, "P d"]) -> tuple[Float[Array, " P"], Float[Array, "P d"]]:
        # row i's loss depends on row i only, so the gradient of the sum holds every row's gradient
        grads, values = jax.grad(lambda us: (jnp.sum(self.losses(us)), self.losses(us)), has_aux=True)(us)
        return values, grads

    def gradient_cost(self, u: Float[Array, " d"] | None = None, repeats: int = 5) -> float:
        """Measured wall time of one value-and-gradient over one forward (median of ``repeats``), ×."""
        if self._cost is None:
            u = jnp.zeros(self.free.size) if u is None else u
            self._cost = gradient_cost(self.value, self.value_and_grad, u, repeats)
        return self._cost
