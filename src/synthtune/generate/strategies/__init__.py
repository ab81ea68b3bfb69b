"""Generation strategies, registered by name in :data:`STRATEGIES`."""

from synthtune.generate.strategies.base import STRATEGIES, Output, Strategy, WorkItem

# Importing the modules registers the built-in strategies.
from synthtune.generate.strategies import template_fill as _template_fill  # noqa: F401  # isort: skip
from synthtune.generate.strategies import self_instruct as _self_instruct  # noqa: F401  # isort: skip
from synthtune.generate.strategies import evol_instruct as _evol_instruct  # noqa: F401  # isort: skip
from synthtune.generate.strategies import doc_qa as _doc_qa  # noqa: F401  # isort: skip
from synthtune.generate.strategies import image as _image  # noqa: F401  # isort: skip

__all__ = ["STRATEGIES", "Output", "Strategy", "WorkItem"]
