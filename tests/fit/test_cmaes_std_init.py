"""CMA-ES's ``std_init`` option reaches the evosax strategy: it sets the first generation's spread."""

import jax
import jax.numpy as jnp
import numpy as np

from diffbrain.fit.objective import Account
from diffbrain.fit.search import evosax_search


class Free:
    size = 3


class DistanceFromTheStart:
    """A member's loss is its distance from the start (0): the best of one generation measures its spread."""

    free = Free()

    def values(self, population):
        return jnp.linalg.norm(population, axis=-1)


def best_of_the_first_generation(std_init):
    # A budget of 8 simulations is one generation of 8 members.
    (result,) = evosax_search(
        DistanceFromTheStart(),
        "cmaes",
        np.zeros((1, 3)),
        Account(8),
        jax.random.key(0),
        size=8,
        std_init=std_init,
    )
    return result.loss


def test_std_init_sets_the_first_generations_spread():
    # Measured: 0.017 at std_init 0.01 and 5.06 at 3.0; the same 1.69 for both when std_init is ignored.
    small, large = best_of_the_first_generation(0.01), best_of_the_first_generation(3.0)
    assert small < 0.05 and large > 0.5, (small, large)
