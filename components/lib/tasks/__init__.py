"""The tasks, by `--task`. A new task is one module with a `Task` subclass and one line here
(components/lib/tasks/base.py says what a task provides)."""

from __future__ import annotations

from components.lib.data.contract import task_of
from components.lib.errors import UserError
from components.lib.quality_gate import Gate
from components.lib.tasks.base import Task
from components.lib.tasks.causal_lm import CausalLanguageModelTask
from components.lib.tasks.classification import ClassificationTask
from components.lib.tasks.multilabel import MultiLabelTask

TASKS: dict[str, Task] = {
    ClassificationTask.name: ClassificationTask(),
    CausalLanguageModelTask.name: CausalLanguageModelTask(),
    MultiLabelTask.name: MultiLabelTask(),
}


def task_named(name: str, where: str = "--task") -> Task:
    if name not in TASKS:
        raise UserError(f"{where}: must be one of {', '.join(TASKS)}; got {name!r}")
    return TASKS[name]


def task_for(manifest: dict, where: str) -> Task:
    """The task a stage output belongs to, from its manifest's lineage; `where` names the output in messages."""
    return task_named(task_of(manifest), f"{where}: its lineage's task")


def all_gates() -> list[Gate]:
    """Every task's gate, each once (tasks may share one)."""
    return list(dict.fromkeys(task.gate for task in TASKS.values()))
