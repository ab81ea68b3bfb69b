"""Generate stage: templates with random slots, rendered and answered by a backend."""
