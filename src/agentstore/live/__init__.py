"""Live delivery of new events to followers: the in-process fan-out and the doorbell."""
