"""`zoo.networks.Network`: complex currents, background rates and weights, pulse amplitudes and initial
potentials are refused naming the argument, as complex weights and delays are (they lost their imaginary
part with only a NumPy ComplexWarning)."""

import re

import numpy as np
import pytest

from diffbrain import zoo
from diffbrain.zoo.networks import Background, Network, Pulse

BUILD = dict(sizes={"A": 2}, neuron=zoo.LIF(), receptors={"e": zoo.Expon(tau=5.0, mode="cuba")}, edges={})


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("I_ext", dict(I_ext=np.array([500 + 100j, 0j]))),
        ("background.rate", dict(background=Background(np.array([1000 + 5j, 1000 + 0j]), 1.0, "e"))),
        ("background.weight", dict(background=Background(1000.0, np.array([1 + 5j, 1 + 0j]), "e"))),
    ],
)
def test_build_refuses_complex_values(name, extra):
    with pytest.raises(ValueError, match=re.escape(f"`{name}` must hold real numbers, got dtype complex128")):
        Network.build(**BUILD, **extra)


def test_a_complex_pulse_current_is_refused():
    net = Network.build(**BUILD)
    pulse = Pulse([0], 0.0, 50.0, np.array(500 + 200j))
    with pytest.raises(ValueError, match=re.escape("`pulse.current` must hold real numbers")):
        net.simulate(50.0, None, state=net.init_state(), pulse=pulse)


def test_complex_initial_potentials_are_refused():
    net = Network.build(**BUILD)
    with pytest.raises(ValueError, match="`V` must hold real numbers"):
        net.init_state(V=np.array([-60 + 1j, -60 + 0j]))
