"""Training spiking networks on tasks: BPTT and online learning with eligibility traces."""
