"""synthtune: generate a domain dataset with an LLM, filter it, mix it, fine-tune on it."""

__version__ = "0.1.0"
