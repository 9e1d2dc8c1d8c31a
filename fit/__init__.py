"""Fitting single-neuron models to electrophysiology recordings, with gradients and gradient-free search."""
