"""`persistent_activity`'s threshold is a rate difference to exceed: at 0, a neuron as active on every trial
(a silent one) is selective to no class."""

import numpy as np

from diffbrain.learn import analysis


def _one_selective_neuron_and_two_silent():
    """Neuron 0 fires at every step of the class-0 trials (stimulus and delay); neurons 1 and 2 never."""
    steps, trials = 40, 8
    spikes = np.zeros((steps, trials, 3))
    labels = np.array([0, 1] * 4)
    spikes[:, labels == 0, 0] = 1.0
    stimulus = np.arange(steps) < 20
    return spikes, labels, stimulus, ~stimulus


def test_a_zero_threshold_leaves_silent_neurons_unselective():
    """Review s26: with ``>= threshold``, threshold 0 made the silent neurons selective to both classes
    (selective [[T, T, T], [F, T, T]], class 1's preferred rate 0 Hz instead of NaN)."""
    spikes, labels, stimulus, delay = _one_selective_neuron_and_two_silent()
    result = analysis.persistent_activity(spikes, labels, stimulus, delay, dt=1.0, threshold=0.0)
    np.testing.assert_array_equal(result.selective, [[True, False, False], [False, False, False]])
    np.testing.assert_array_equal(result.preferred, [1000.0, np.nan])
    np.testing.assert_array_equal(result.nonpreferred, [0.0, np.nan])


def test_a_difference_equal_to_the_threshold_is_not_selective():
    """Neuron 0 fires 1000 Hz more on class-0 trials: selective under a threshold below that, not at it."""
    spikes, labels, stimulus, delay = _one_selective_neuron_and_two_silent()
    below = analysis.persistent_activity(spikes, labels, stimulus, delay, dt=1.0, threshold=999.0)
    at = analysis.persistent_activity(spikes, labels, stimulus, delay, dt=1.0, threshold=1000.0)
    assert below.selective[0].tolist() == [True, False, False]
    assert not at.selective.any()
