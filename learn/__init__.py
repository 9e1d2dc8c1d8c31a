"""Training spiking networks on tasks: BPTT and online learning with eligibility traces."""

from . import analysis as analysis
from . import loss as loss
from .bptt import bptt as bptt
from .loss import Batch as Batch
from .loss import SimpleBatch as SimpleBatch
from .loss import accuracy as accuracy
from .loss import add_evidence as add_evidence
from .loss import cross_entropy as cross_entropy
from .network import EINetwork as EINetwork
from .network import NetState as NetState
from .network import default_neuron as default_neuron
from .network import trainable as trainable
from .online import online as online
from .trainer import METHODS as METHODS
from .trainer import TrainingDiverged as TrainingDiverged
from .trainer import TrainResult as TrainResult
from .trainer import train as train
