"""Event-driven CSR synaptic operators: forward and backward passes touch only the rows that spiked."""
