"""The budgets a task is evaluated at."""
from __future__ import annotations

import numpy as np

from .tasks import Task


def choose_budgets(durations: list[float], count: int) -> list[float]:
    """From where no eviction completes almost nothing to where it completes almost everything."""
    qs = np.linspace(0.05, 0.95, count) if count > 2 else np.array([0.3, 0.7])
    return sorted({round(float(np.quantile(durations, q)), 1) for q in qs})


def task_budgets(task: Task, durations: list[float], count: int) -> list[float]:
    """The task's own budgets (thinned to ``count``, keeping both ends), else chosen from the times."""
    if not task.budgets:
        return choose_budgets(durations, count)
    picks = np.linspace(0, len(task.budgets) - 1, min(max(count, 2), len(task.budgets)))
    return sorted({task.budgets[int(round(i))] for i in picks})
