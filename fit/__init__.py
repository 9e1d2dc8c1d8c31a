"""Fitting single-neuron models to electrophysiology recordings, with gradients and gradient-free search."""

from .fitter import METHODS as METHODS
from .fitter import SyntheticSweep as SyntheticSweep
from .fitter import fit as fit
from .fitter import prepare as prepare
from .fitter import synthetic_sweeps as synthetic_sweeps
from .losses import AbstractLoss as AbstractLoss
from .losses import FirstSpikeLatency as FirstSpikeLatency
from .losses import SpikeCount as SpikeCount
from .losses import SubthresholdMSE as SubthresholdMSE
from .losses import Target as Target
from .losses import VanRossum as VanRossum
from .losses import VoltageMSE as VoltageMSE
from .losses import Weighted as Weighted
from .losses import gamma_factor as gamma_factor
from .losses import spike_times as spike_times
from .objective import Account as Account
from .objective import Objective as Objective
from .params import FreeParams as FreeParams
from .params import free_params as free_params
from .result import FitResult as FitResult
from .result import StartResult as StartResult
