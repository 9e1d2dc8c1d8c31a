"""Losses between a simulated and a recorded set of sweeps, and the coincidence factor Γ.

Every loss is an `eqx.Module` called as ``loss(V, spikes, target)`` with the model's voltage ``V`` (mV) and
surrogate spikes (0/1 forward, differentiable through the model's surrogate) sampled on the recording's
grid, shape ``[T, S]`` (T samples, S sweeps), and the recording as a `Target`. Losses add and scale:
``VoltageMSE() + 0.1 * VanRossum(tau=10.0)``.

`gamma_factor` is the evaluation metric on spike times (NumPy, not differentiated).
"""

from __future__ import annotations

import abc
import numbers

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Scalar


class Target(eqx.Module):
    """Recorded sweeps on one time grid, as the losses read them.

    Attributes:
        voltage: membrane potential, mV, ``[T, S]`` (sample k at time k·dt).
        spikes: 1 at the sample of each recorded spike, else 0, ``[T, S]``.
        dt: sampling interval, ms.
        mask: 1 on recorded samples, 0 on padding, ``[T, S]`` (sweeps of different lengths padded to one,
            `Cell.stack(pad=True)`); every loss leaves the padding out, as if each sweep ended at its own
            length. None (default): every sample is recorded.
    """

    voltage: Float[Array, " T S"]
    spikes: Float[Array, " T S"]
    dt: float = eqx.field(static=True)
    mask: Float[Array, " T S"] | None = None

    @property
    def weights(self) -> Float[Array, " T S"]:
        """`mask`, or ones where there is none."""
        return jnp.ones_like(self.voltage) if self.mask is None else self.mask

    @property
    def duration(self) -> float:
        """Length of each sweep, ms."""
        return self.voltage.shape[0] * self.dt


def _as_number(value):
    """A converter: a 0-d real array (NumPy or JAX) as a Python float; another concrete array as its
    Python value (a list, a bool, a complex: no array in a static field) and anything else as given, for
    the checks to refuse by name."""
    if not isinstance(value, np.ndarray | jax.Array) or isinstance(value, jax.core.Tracer):
        return value
    real = jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating)
    return float(value) if real and value.ndim == 0 else value.tolist()


def _as_count(value):
    """A converter: a 0-d integer array (NumPy or JAX) as a Python int; another concrete array as its Python
    value; anything else as given."""
    if not isinstance(value, np.ndarray | jax.Array) or isinstance(value, jax.core.Tracer):
        return value
    return int(value) if value.ndim == 0 and jnp.issubdtype(value.dtype, jnp.integer) else value.tolist()


def _real_number(value) -> bool:
    """Whether ``value`` is a real number (a NumPy scalar too), not a bool or a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _concrete_sum(array) -> float | None:
    """``array``'s sum, or None when it is traced (inside ``jit`` or ``vmap``: nothing to check there)."""
    return None if isinstance(array, jax.core.Tracer) else float(jnp.sum(array))


class AbstractLoss(eqx.Module):
    """A scalar loss of simulated ``(V, spikes)`` against a `Target`; lower is better.

    To write a loss, subclass it and implement ``__call__(V, spikes, target)``; override ``check(target)``
    to raise ``ValueError`` when the loss has nothing to compare in ``target``. `fit` and `fit_cells` call it
    before they start (per cell in `fit_cells`); in a `Weighted` sum they warn about a term that fails it
    instead of refusing the sum.
    """

    @abc.abstractmethod
    def __call__(self, V: Float[Array, " T S"], spikes: Float[Array, " T S"], target: Target) -> Scalar:
        """The loss (units in each subclass's docstring)."""

    def check(self, target: Target) -> None:
        """Raise ``ValueError`` if this loss has nothing to compare in ``target``; the fits call it before
        they start. Most losses can compare any target."""

    def __add__(self, other: AbstractLoss) -> Weighted:
        if not isinstance(other, AbstractLoss):
            raise TypeError(
                f"{self!r} + {other!r}: a loss adds only another loss; scale a term by a number instead, "
                f"e.g. 0.5 * {self!r}."
            )
        return Weighted(terms=(*_terms(self), *_terms(other)))

    def __mul__(self, weight: float) -> Weighted:
        return Weighted(terms=tuple((weight * w, loss) for w, loss in _terms(self)))

    __rmul__ = __mul__


def _terms(loss: AbstractLoss) -> tuple[tuple[float, AbstractLoss], ...]:
    return loss.terms if isinstance(loss, Weighted) else ((1.0, loss),)


class Weighted(AbstractLoss):
    """``Σ wᵢ·lossᵢ``; made by adding and scaling losses."""

    terms: tuple[tuple[float, AbstractLoss], ...]

    def __check_init__(self):
        for weight, loss in self.terms:
            _check_weight(weight, loss)

    def check(self, target: Target) -> None:
        """Raise ``ValueError`` when no term of nonzero weight can compare ``target`` (every weight 0
        included: the sum is 0 for any parameters); `idle_terms` names the terms that cannot."""
        weighted = [loss for weight, loss in self.terms if weight != 0]
        if not weighted:
            raise ValueError(
                "every term of the loss has weight 0, so it is 0 for any parameters; give a term a weight."
            )
        idle = idle_terms(self, target)
        if len(idle) == len(weighted):
            raise ValueError(idle[0])

    def __call__(self, V, spikes, target):
        return sum(w * loss(V, spikes, target) for w, loss in self.terms)


def _check_weight(weight, loss: AbstractLoss) -> None:
    """Raise ``ValueError`` unless ``weight`` is one finite number >= 0 (0 leaves the term out; a negative
    weight would reward the term's error, and a fit maximise it). A traced weight (inside ``jit``) has no
    value to check."""
    if isinstance(weight, jax.core.Tracer):
        return
    try:
        value = np.asarray(weight)
        valid = value.ndim == 0 and _real_number(value.item()) and np.isfinite(value) and value >= 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        shown = value.tolist() if isinstance(weight, np.ndarray | jax.Array) else weight
        raise ValueError(
            f"the loss weight {shown!r} of {loss!r} must be a finite number >= 0 (0 leaves the term out; a "
            f"negative weight would reward its error); scale the term by such a number, e.g. 0.5 * {loss!r}."
        )


def idle_terms(loss: AbstractLoss, target: Target) -> list[str]:
    """Why each term of nonzero weight of ``loss`` (a `Weighted` sum, or one loss) cannot compare
    ``target`` (its `AbstractLoss.check` message): such a term adds a constant, which the others still
    fit. The fits warn with these."""
    idle = []
    for weight, term in _terms(loss):
        if weight != 0:
            try:
                term.check(target)
            except ValueError as error:
                idle.append(str(error))
    return idle


class VoltageMSE(AbstractLoss):
    r"""Mean squared voltage error, mV²: ``(1/(S·N)) Σ_s Σ_k (V_s(t_k) − V̂_s(t_k))²``.

    With ``n_points = None`` every sample counts (N = T); otherwise N = ``n_points`` evenly spaced samples
    ``k = round(j·(T − 1)/(N − 1))``, as in the paper's GIF fit.

    With a `Target` ``mask`` (sweeps padded to one length), the padding is left out, and the two forms
    weigh sweeps differently:

    * ``n_points = None``: the recorded samples of all sweeps are pooled, ``Σ_s Σ_k m_sk·e_sk / Σ_s Σ_k m_sk``
      (``e`` the squared error): each sample weighs equally, so a longer sweep weighs more than a short one
      (not the mean of the per-sweep MSEs; without padding, both are the formula above);
    * ``n_points = N``: N samples of each sweep, spaced over its own length ``T_s`` (``k = round(j·(T_s −
      1)/(N − 1))``), then the formula above: each sweep weighs equally, the mean of the per-sweep values.
    """

    n_points: int | None = eqx.field(default=None, static=True, converter=_as_count)

    def __check_init__(self):
        whole = isinstance(self.n_points, numbers.Integral) and not isinstance(self.n_points, bool)
        if self.n_points is not None and not (whole and self.n_points >= 1):
            raise ValueError(
                f"VoltageMSE: `n_points` must be None (every sample) or a whole number >= 1, got "
                f"{self.n_points!r}."
            )

    def __call__(self, V, spikes, target):
        error = (V - target.voltage) ** 2
        if target.mask is None:
            if self.n_points is not None:
                error = error[np.round(np.linspace(0, V.shape[0] - 1, self.n_points)).astype(int)]
            return jnp.mean(error)
        if self.n_points is None:
            return jnp.sum(target.mask * error) / jnp.sum(target.mask)
        last = jnp.sum(target.mask, axis=0) - 1  # [S]: each sweep's last recorded sample
        step = last / max(self.n_points - 1, 1)  # as np.linspace(0, last, n_points) computes it
        index = jnp.round(jnp.arange(self.n_points)[:, None] * step[None, :]).astype(int)
        return jnp.mean(jnp.take_along_axis(error, index, axis=0))


def near_spikes(spikes: Float[Array, " T S"], before: int, after: int) -> Float[Array, " T S"]:
    """1 on samples from ``before`` samples before to ``after`` samples after any spike, else 0."""
    counts = jnp.cumsum(jnp.pad(spikes, ((after + 1, before), (0, 0))), axis=0)
    return (counts[before + after + 1 :] - counts[: -(before + after + 1)] > 0).astype(spikes.dtype)


class SubthresholdMSE(AbstractLoss):
    r"""Voltage MSE outside windows around the recorded spikes, mV².

    ``Σ m_k (V_k − V̂_k)² / Σ m_k`` with the mask ``m_k = 0`` within ``before`` ms before and ``after`` ms
    after any recorded spike (the spike's own shape is left out), 1 elsewhere. ``before`` and ``after`` are
    real numbers ≥ 0 (ms); `fit` and `fit_cells` refuse the loss (``check``, a ``ValueError``) when the
    windows cover every sample, as it would then be 0 for any parameters.
    """

    before: float = eqx.field(default=2.0, static=True, converter=_as_number)
    after: float = eqx.field(default=5.0, static=True, converter=_as_number)

    def __check_init__(self):
        if not (
            _real_number(self.before)
            and _real_number(self.after)
            and np.isfinite(self.before)
            and np.isfinite(self.after)
            and self.before >= 0
            and self.after >= 0
        ):
            raise ValueError(
                f"SubthresholdMSE: `before` ({self.before!r} ms) and `after` ({self.after!r} ms) must be "
                "finite numbers >= 0."
            )

    def check(self, target: Target) -> None:
        total = _concrete_sum(self._mask(target))
        if total is not None and total == 0:
            raise ValueError(
                f"SubthresholdMSE: the windows of before={self.before:g} ms and after={self.after:g} ms "
                "around the recorded spikes cover every sample, so no subthreshold voltage is left to "
                "compare (this loss would be 0 for any parameters); narrow `before`/`after`, or use "
                "VoltageMSE or a spike loss."
            )

    def _mask(self, target: Target) -> Float[Array, " T S"]:
        steps = round(self.before / target.dt), round(self.after / target.dt)
        return (1.0 - near_spikes(target.spikes, *steps)) * target.weights

    def __call__(self, V, spikes, target):
        mask = self._mask(target)
        return jnp.sum(mask * (V - target.voltage) ** 2) / jnp.maximum(jnp.sum(mask), 1.0)


def exponential_filter(spikes: Float[Array, " T *n"], tau: float, dt: float) -> Float[Array, " T *n"]:
    """``f_k = e^{−dt/τ}·f_{k−1} + s_k``: spike trains convolved with ``e^{−t/τ}`` (τ, dt in ms)."""
    decay = np.exp(-dt / tau)

    def advance(f, s):
        f = decay * f + s
        return f, f

    _, filtered = jax.lax.scan(advance, jnp.zeros_like(spikes[0]), spikes)
    return filtered


class VanRossum(AbstractLoss):
    r"""Van Rossum distance between spike trains, squared and averaged over sweeps (dimensionless).

    ``D² = (1/τ) ∫ (f(t) − f̂(t))² dt`` with ``f = Σ_i e^{−(t − t_i)/τ} Θ(t − t_i)``, computed on the grid
    (``Σ_k (f_k − f̂_k)²·dt/τ``) and, as in van Rossum (2001), over all time: the traces' difference at
    a sweep's last sample decays on after it, and that tail is added in closed form. So one unmatched
    spike adds ½ wherever it falls, at the sweep's end too; the model's spikes are surrogate spikes, so
    the distance has a gradient.
    """

    tau: float = eqx.field(default=10.0, static=True, converter=_as_number)

    def __check_init__(self):
        if not (_real_number(self.tau) and np.isfinite(self.tau) and self.tau > 0):
            raise ValueError(
                f"VanRossum: `tau` must be a positive finite time constant in ms, got {self.tau!r}."
            )

    def __call__(self, V, spikes, target):
        weights = target.weights
        difference = exponential_filter((spikes - target.spikes) * weights, self.tau, target.dt)
        # after a sweep's last sample k the difference is d_k·r^j (r = e^{−dt/τ}) for j = 1, 2, …
        decay = np.exp(-2 * target.dt / self.tau)
        last = weights * (1 - jnp.concatenate([weights[1:], jnp.zeros_like(weights[:1])]))
        total = weights + last * decay / (1 - decay)
        return jnp.sum(total * difference**2) * target.dt / self.tau / spikes.shape[1]


class SpikeCount(AbstractLoss):
    """Squared spike-count error, averaged over sweeps: ``(1/S) Σ_s (n_s − n̂_s)²`` (spikes²)."""

    def __call__(self, V, spikes, target):
        weights = target.weights
        return jnp.mean(((spikes * weights).sum(0) - (target.spikes * weights).sum(0)) ** 2)


def first_spike_latency(
    spikes: Float[Array, " T S"], dt: float, duration: Float[ArrayLike, " S"] | None = None
) -> Float[Array, " S"]:
    r"""Time of the first spike per sweep, ms; the sweep's duration when there is none.

    ``Σ_k t_k·s_k·Π_{j<k}(1 − s_j) + D·Π_k(1 − s_k)`` with ``t_k = k·dt`` and ``D = duration`` (ms, per
    sweep; default T·dt): exact for 0/1 spikes and differentiable through surrogate spikes.
    """
    none_before = jnp.cumprod(jnp.concatenate([jnp.ones_like(spikes[:1]), 1 - spikes[:-1]]), axis=0)
    first = spikes * none_before
    times = jnp.arange(spikes.shape[0], dtype=spikes.dtype)[:, None] * dt
    duration = spikes.shape[0] * dt if duration is None else duration
    return jnp.sum(first * times, 0) + duration * (1 - jnp.sum(first, 0))


class FirstSpikeLatency(AbstractLoss):
    """Squared error of the first-spike latency, averaged over sweeps (ms²); see `first_spike_latency`."""

    def __call__(self, V, spikes, target):
        weights = target.weights
        duration = jnp.sum(weights, 0) * target.dt
        model = first_spike_latency(spikes * weights, target.dt, duration)
        return jnp.mean((model - first_spike_latency(target.spikes * weights, target.dt, duration)) ** 2)


def count_coincidences(model: np.ndarray, data: np.ndarray, window: float) -> int:
    """Number of data spikes matched one-to-one to a model spike within ±``window`` ms (sorted times)."""
    i = j = matched = 0
    while i < len(data) and j < len(model):
        if abs(data[i] - model[j]) <= window:
            matched, i, j = matched + 1, i + 1, j + 1
        elif model[j] < data[i]:
            j += 1
        else:
            i += 1
    return matched


def gamma_factor(
    model_times: ArrayLike, data_times: ArrayLike, duration: float, window: float = 2.0
) -> float:
    r"""The coincidence factor Γ of Kistler et al. (1997) and Jolivet et al. (2008); 1 is a perfect match.

    ``Γ = (N_coinc − 2νΔ·N_data) / (½(N_data + N_model)·(1 − 2νΔ))`` where ``N_coinc`` counts data spikes
    matched one-to-one by a model spike within ``Δ = window`` ms, and ``ν = N_model/duration`` is the
    model's rate in spikes/ms (so ``2νΔ`` is dimensionless: ``2νΔ·N_data`` is the number of coincidences a
    Poisson train of the model's rate would get by chance). Γ ≈ 0 for independent trains; negative values
    mean fewer coincidences than chance. The normalisation ``𝒩 = 1 − 2νΔ`` (Jolivet et al. 2008) makes the
    largest possible Γ 1; the chance model needs ``2νΔ < 1`` (a coincidence probability per data spike), so
    a model firing at ``ν ≥ 1/(2Δ)`` (250 Hz at Δ = 2 ms) has no Γ: NaN, as `numpy.nanmean` and
    `diffbrain.fit.datasets.repeat_reliability` skip, rather than a value whose sign is flipped.

    Args:
        model_times, data_times: spike times, ms (any order).
        duration: length of the recording, ms.
        window: coincidence window Δ, ms (default ±2 ms).

    Returns:
        Γ (dimensionless); NaN when both trains are empty or the model fires at ``ν ≥ 1/(2·window)``.

    Examples:
        >>> gamma_factor([10.0, 50.0], [10.0, 50.0], duration=100.0)
        1.0
    """
    model = np.sort(np.asarray(model_times, float).ravel())
    data = np.sort(np.asarray(data_times, float).ravel())
    if not (0 < duration < np.inf and 0 < window < np.inf):
        raise ValueError(f"`duration` ({duration} ms) and `window` ({window} ms) must be finite and > 0.")
    if len(model) + len(data) == 0:
        return float("nan")
    rate = len(model) / duration  # spikes per ms
    chance = 2 * rate * window
    if chance >= 1:  # the chance correction is undefined: 𝒩 = 1 − 2νΔ would be ≤ 0
        return float("nan")
    expected = chance * len(data)
    normalisation = 0.5 * (len(data) + len(model)) * (1 - chance)
    return float((count_coincidences(model, data, window) - expected) / normalisation)


def spike_times(spikes: ArrayLike, dt: float) -> np.ndarray:
    """Times (ms) of the nonzero samples of a spike train sampled every ``dt`` ms (sample k at k·dt)."""
    return np.flatnonzero(np.asarray(spikes) > 0.5) * dt
