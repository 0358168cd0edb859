"""tasksift: choose the training examples that serve your task.

``tasksift.select(...)`` is the one-call entry point; each method is also a class in
``tasksift.selectors`` with scikit-learn style use.
"""

from tasksift.api import select
from tasksift.selectors.base import Selection, Selector
from tasksift.util.errors import InputError

__all__ = ["InputError", "Selection", "Selector", "select"]
__version__ = "0.1.0"
