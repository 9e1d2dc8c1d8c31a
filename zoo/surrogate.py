"""Heaviside spike functions with surrogate (pseudo-)derivatives.

Every surrogate is an `eqx.Module` whose call is *exactly* the Heaviside step ``x >= 0`` (1 at
threshold) in the forward pass, and whose derivative is the named pseudo-derivative ``pseudo_derivative(x)``.
Here ``x`` is the distance to threshold, usually ``V - V_th`` in mV, so sharpness parameters are per mV.
Because the surrogate is a field of a neuron model, it can be swapped (``eqx.tree_at``). It cannot be
fitted by gradient descent: it shapes only the backward pass, so the gradient of any loss with respect to
its parameters (``alpha``, ``sigma``, …) is exactly 0. Tune them as hyperparameters instead.

Every parameter is a scalar (one surrogate serves a whole population); every sharpness and width must be
finite and > 0 (a negative ``alpha`` flips the sign of every gradient, ``sigma = 0`` makes them NaN);
`MultiGaussian`'s side-lobe weight ``h`` must lie in [0, 1).

All pseudo-derivatives are evaluated in forms that stay finite for |x| up to 1e4 in float32 and return
the dtype of ``x``.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from diffbrain.zoo import surrogate
    >>> spike = surrogate.Sigmoid(alpha=4.0)
    >>> spike(jnp.array([-1.0, 0.0, 2.0]))
    Array([0., 1., 1.], dtype=float32)
    >>> float(jax.grad(spike)(0.0))  # alpha / 4 at threshold
    1.0
"""

from __future__ import annotations

import abc
import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._checks import check_positive
from ._param import as_param


@jax.custom_jvp
def _heaviside(x, surrogate):
    return (x >= 0).astype(x.dtype)


@_heaviside.defjvp
def _heaviside_jvp(primals, tangents):
    x, surrogate = primals
    x_dot, _ = tangents
    return _heaviside(x, surrogate), surrogate.pseudo_derivative(x) * x_dot


class AbstractSurrogate(eqx.Module):
    """Heaviside forward, pseudo-derivative backward. Subclasses define `pseudo_derivative`."""

    @abc.abstractmethod
    def pseudo_derivative(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """The derivative used in place of Dirac's delta, as a function of the distance to threshold."""

    def __check_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if jnp.ndim(value) != 0:
                raise ValueError(
                    f"{type(self).__name__}: `{field.name}` must be a scalar, got an array of shape "
                    f"{jnp.shape(value)}; one surrogate serves the whole population. Pass one number."
                )
            if field.metadata.get("positive", True):
                check_positive(type(self).__name__, field.name, value, field.metadata.get("unit", ""))

    def __call__(self, x: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            x = x.astype(jnp.result_type(float))
        return _heaviside(x, self)


def _field(default: float, doc: str):
    return eqx.field(default=default, converter=as_param, metadata={"unit": "1/mV", "doc": doc})


def _cast(value, x):
    return jnp.asarray(value, dtype=x.dtype)


def _normal_pdf(x, mean, sigma):
    z = (x - mean) / sigma
    return jnp.exp(-0.5 * z * z) / (sigma * math.sqrt(2.0 * math.pi))


class Sigmoid(AbstractSurrogate):
    """Derivative of the logistic function: ``alpha·σ(alpha·x)·(1 − σ(alpha·x))``; area 1, peak alpha/4."""

    alpha: Float[Array, ""] = _field(4.0, "sharpness")

    def pseudo_derivative(self, x):
        s = jax.nn.sigmoid(_cast(self.alpha, x) * x)
        return _cast(self.alpha, x) * s * (1 - s)


class Arctan(AbstractSurrogate):
    """Derivative of ``arctan``: ``(alpha/2) / (1 + (π·alpha·x/2)²)``; area 1, peak alpha/2."""

    alpha: Float[Array, ""] = _field(2.0, "sharpness")

    def pseudo_derivative(self, x):
        alpha = _cast(self.alpha, x)
        return (alpha / 2) / (1 + jnp.square(math.pi / 2 * alpha * x))


class Gaussian(AbstractSurrogate):
    """Normal density with standard deviation ``sigma`` (mV); area 1."""

    sigma: Float[Array, ""] = eqx.field(
        default=0.5, converter=as_param, metadata={"unit": "mV", "doc": "width"}
    )

    def pseudo_derivative(self, x):
        return _normal_pdf(x, 0.0, _cast(self.sigma, x))


class MultiGaussian(AbstractSurrogate):
    """Yin et al. (2021): ``(1+h)·N(0, σ) − h·N(σ, sσ) − h·N(−σ, sσ)``; area ``1 − h``."""

    sigma: Float[Array, ""] = eqx.field(
        default=0.5, converter=as_param, metadata={"unit": "mV", "doc": "width"}
    )
    h: Float[Array, ""] = eqx.field(
        default=0.15, converter=as_param, metadata={"unit": "1", "doc": "side lobes", "positive": False}
    )
    s: Float[Array, ""] = eqx.field(
        default=6.0, converter=as_param, metadata={"unit": "1", "doc": "lobe width"}
    )

    def __check_init__(self):
        h = np.asarray(self.h) if not isinstance(self.h, jax.core.Tracer) else None
        if h is not None and not np.all((h >= 0) & (h < 1)):
            raise ValueError(
                f"MultiGaussian: `h` (the side lobes' weight) must lie in [0, 1), got {h}; at h >= 1 the "
                "pseudo-derivative's area 1 - h is no longer positive."
            )

    def pseudo_derivative(self, x):
        sigma, h, s = (_cast(v, x) for v in (self.sigma, self.h, self.s))
        centre = (1 + h) * _normal_pdf(x, 0.0, sigma)
        return centre - h * _normal_pdf(x, sigma, s * sigma) - h * _normal_pdf(x, -sigma, s * sigma)


class ReLU(AbstractSurrogate):
    """The paper's ReluGrad: ``alpha·max(width − |x|, 0)``; area ``alpha·width²``."""

    alpha: Float[Array, ""] = eqx.field(
        default=0.3, converter=as_param, metadata={"unit": "1/mV²", "doc": "slope"}
    )
    width: Float[Array, ""] = eqx.field(
        default=1.0, converter=as_param, metadata={"unit": "mV", "doc": "width"}
    )

    def pseudo_derivative(self, x):
        return _cast(self.alpha, x) * jax.nn.relu(_cast(self.width, x) - jnp.abs(x))


class PiecewiseQuadratic(AbstractSurrogate):
    """Derivative of a piecewise quadratic step: ``max(alpha − alpha²·|x|, 0)``; area 1."""

    alpha: Float[Array, ""] = _field(1.0, "sharpness")

    def pseudo_derivative(self, x):
        alpha = _cast(self.alpha, x)
        return jax.nn.relu(alpha - alpha * alpha * jnp.abs(x))


class SuperSpike(AbstractSurrogate):
    """Fast sigmoid of Zenke & Ganguli (2018): ``1 / (beta·|x| + 1)²``; area ``2/beta``, peak 1."""

    beta: Float[Array, ""] = _field(10.0, "sharpness")

    def pseudo_derivative(self, x):
        return 1 / jnp.square(_cast(self.beta, x) * jnp.abs(x) + 1)


class Exponential(AbstractSurrogate):
    """SLAYER's (Shrestha & Orchard 2018) exponential: ``(beta/2)·exp(−beta·|x|)``; area 1."""

    beta: Float[Array, ""] = _field(2.0, "sharpness")

    def pseudo_derivative(self, x):
        beta = _cast(self.beta, x)
        return beta / 2 * jnp.exp(-beta * jnp.abs(x))


SURROGATES: dict[str, type[AbstractSurrogate]] = {
    "sigmoid": Sigmoid,
    "arctan": Arctan,
    "gaussian": Gaussian,
    "multi-gaussian": MultiGaussian,
    "relu": ReLU,
    "piecewise-quadratic": PiecewiseQuadratic,
    "superspike": SuperSpike,
    "exponential": Exponential,
}
"""Every surrogate by name, with its default parameters."""
