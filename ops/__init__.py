"""Event-driven CSR synaptic operators: forward and backward passes touch only the rows that spiked.

`CSR` holds a sparse weight matrix (rows presynaptic) and builds random connectivity without a dense
matrix; `event_matvec` / `event_matmat` turn spikes into synaptic input, `csr_matvec` multiplies a dense
vector, `arrival_scatter` adds delayed synapses' input to a ring of future steps. All are differentiable
(w.r.t. the weights and float spikes), batch under `jax.vmap` and run inside `jax.jit` and `lax.scan`;
the kernels come from one of several backends (`backends()`). `event_scan` runs a network's steps with
the weight gradient accumulated in place, on the synapses of the neurons that fired.
"""

from ._backend import available as backends
from .csr import CSR as CSR
from .event import arrival_scatter as arrival_scatter
from .event import csr_matvec as csr_matvec
from .event import event_matmat as event_matmat
from .event import event_matvec as event_matvec
from .scan import event_scan as event_scan

__all__ = ["CSR", "arrival_scatter", "backends", "csr_matvec", "event_matmat", "event_matvec", "event_scan"]
