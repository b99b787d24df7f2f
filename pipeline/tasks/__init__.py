"""The pipeline's tasks, registered once.

A task owns what is specific to its model (see `pipeline.tasks.base.Task`): its datasets
and their checks, its config rules, how data becomes ids, how the model is built, trained
and converted, how it is scored and what the bundle holds. Stages, methods and evaluators
ask `for_config(config)` for the task and never branch on its name. Adding a task is one
module with a `Task` subclass plus one line in REGISTRY (and its configs).
"""
from __future__ import annotations

import importlib

# name → "module:class"; modules load only when a task is used (the config reads the names).
REGISTRY = {
    "sentiment": "pipeline.tasks.sentiment:SentimentTask",
    "textgen": "pipeline.tasks.textgen:TextGenTask",
}


def get(name: str):
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def for_config(config):
    return get(config.data.task)
