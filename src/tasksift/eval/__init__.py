"""Prove a selection helps: finetune a small model on it and score that model on the task's test set.

- :func:`evaluate` (``tasksift eval``): selection -> finetune -> test metrics over seeds, into ``eval.json``;
- :func:`load_task`: read and check a task directory (its format is in :mod:`tasksift.eval.tasks`);
- :mod:`~tasksift.eval.metrics`: option log-likelihood accuracy, answer loss, NDCG@k, Recall@k.
"""

from tasksift.eval.harness import EVAL_FILE, evaluate, make_settings, settings_class
from tasksift.eval.metrics import (
    accuracy,
    answer_loss,
    ndcg_at_k,
    option_accuracy,
    option_metrics,
    recall_at_k,
    retrieval_metrics,
)
from tasksift.eval.tasks import KINDS, Task, load_task, selection_rows

__all__ = [
    "EVAL_FILE",
    "KINDS",
    "Task",
    "accuracy",
    "answer_loss",
    "evaluate",
    "load_task",
    "make_settings",
    "ndcg_at_k",
    "option_accuracy",
    "option_metrics",
    "recall_at_k",
    "retrieval_metrics",
    "selection_rows",
    "settings_class",
]
