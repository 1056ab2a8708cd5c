"""Task registry: ``task=<name>`` in the config ↔ a module here."""

from __future__ import annotations

from harness.errors import unknown
from harness.spec import TaskSpec
from harness.tasks.base import Example, Task

# name → (module, class); imported lazily so one task's dependencies never slow another.
_TASKS = {
    "tickets": ("harness.tasks.tickets", "TicketsTask"),
    "tickets_prefs": ("harness.tasks.tickets_prefs", "TicketsPrefsTask"),
    "arithmetic": ("harness.tasks.arithmetic", "ArithmeticTask"),
    "custom": ("harness.tasks.custom", "CustomTask"),
}


def task_names() -> list[str]:
    return sorted(_TASKS)


def get_task(spec: TaskSpec) -> Task:
    import importlib
    import inspect

    if spec.name not in _TASKS:
        raise unknown("task", spec.name, _TASKS)
    module, cls = _TASKS[spec.name]
    task_cls = getattr(importlib.import_module(module), cls)
    if hasattr(task_cls, "from_spec"):
        return task_cls.from_spec(spec)
    # Generated tasks take the spec's fields that their constructor names (seed, sizes, difficulty).
    params = inspect.signature(task_cls).parameters
    kwargs = {k: v for k, v in vars(spec).items() if k in params and v is not None}
    return task_cls(**kwargs)


__all__ = ["Example", "Task", "get_task", "task_names"]
