"""The self-evolving data engine: generate, filter, measure, regenerate; a bandit steers."""
