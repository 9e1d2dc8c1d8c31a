"""Backends of the event-driven operators, one module each, all with the same contract."""
