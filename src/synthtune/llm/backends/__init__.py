"""Generation backends, registered by name in :data:`BACKENDS`."""

from synthtune.llm.backends.base import (
    BACKENDS,
    Backend,
    GenerationRequest,
    GenerationResult,
    create_backend,
)

# Importing the modules registers the built-in backends.
from synthtune.llm.backends import template as _template  # noqa: F401  # isort: skip
from synthtune.llm.backends import transformers as _transformers  # noqa: F401  # isort: skip
from synthtune.llm.backends import openai_compat as _openai  # noqa: F401  # isort: skip
from synthtune.llm.backends import vllm as _vllm  # noqa: F401  # isort: skip

__all__ = ["BACKENDS", "Backend", "GenerationRequest", "GenerationResult", "create_backend"]
