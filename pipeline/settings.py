"""Which settings exist and which a stage may read: the machinery behind stage keys.

pipeline.config defines the settings (sections of typed, validated fields); this module
names every one (FIELDS, flag name → section), turns the names a stage, task, method or
evaluator declares into the settings of its key, and gives each stage a view of the config
that refuses to read anything undeclared, so a key cannot miss a setting.
"""
from __future__ import annotations

import dataclasses
import json
import typing

from pipeline.config import SECTIONS, PipelineConfig

RUN_FIELDS = tuple(f.name for f in dataclasses.fields(PipelineConfig) if f.name not in SECTIONS)
# Fields that choose which code runs (the task, the pruning method): any stage may read them
# to find that code; the task is part of every stage key, the method where it declares so.
DISPATCH_FIELDS = ("task", "pruning_method")


def _all_fields() -> dict[str, tuple[str | None, dataclasses.Field, object]]:
    """flag name → (section or None, field, type) for every setting; names are unique."""
    result = {}
    owners = [(None, PipelineConfig)] + list(SECTIONS.items())
    for section, cls in owners:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name in SECTIONS:
                continue
            if field.name in result:
                raise TypeError(f"setting {field.name} is defined twice: flag names must be "
                                "unique across sections")
            result[field.name] = (section, field, hints[field.name])
    return result


FIELDS = _all_fields()


def values(config: PipelineConfig, names) -> dict:
    """{field: value} of the named fields and sections, as JSON values."""
    chosen = {}
    for field in sorted(expand(names)):
        section = FIELDS[field][0]
        owner = getattr(config, section) if section else config
        chosen[field] = getattr(owner, field)
    return json.loads(json.dumps(chosen))


def expand(names) -> frozenset[str]:
    """Section names become their fields; field names stay; anything else is a bug."""
    result = set()
    for name in names:
        if name in SECTIONS:
            result.update(f.name for f in dataclasses.fields(SECTIONS[name]))
        elif name in FIELDS and name not in RUN_FIELDS:
            result.add(name)
        else:
            raise KeyError(f"{name!r} is neither a config section nor a setting")
    return frozenset(result)


class UndeclaredSettingError(RuntimeError):
    """Code read a setting its stage did not declare: the stage key would miss it."""


class ConfigView:
    """A stage's window on the config: it can read only the settings its key holds.

    So a stage key cannot miss a setting the stage depends on: reading an undeclared one
    fails loudly (a programming error, caught by the tests) instead of being silently
    reused from an old run.
    """

    def __init__(self, config: PipelineConfig, allowed: frozenset[str], reader: str):
        self._config, self._allowed, self._reader = config, allowed, reader

    def __getattr__(self, name: str):
        if name in SECTIONS:
            return _SectionView(getattr(self._config, name), self._allowed, self._reader)
        if name in RUN_FIELDS:
            raise UndeclaredSettingError(f"{self._reader} read --{name}, which only steers the "
                                         "runner and is in no stage key")
        raise AttributeError(name)

    def declares(self, name: str) -> bool:
        """Whether the stage may read `name`: for settings a method reads only when on."""
        return name in self._allowed

    def settings(self) -> dict:
        """Every readable setting by section, for a manifest."""
        result: dict = {}
        for name in sorted(self._allowed):
            section = FIELDS[name][0]
            result.setdefault(section, {})[name] = getattr(getattr(self._config, section), name)
        return json.loads(json.dumps(result))


class _SectionView:
    def __init__(self, section, allowed: frozenset[str], reader: str):
        self._section, self._allowed, self._reader = section, allowed, reader

    def __getattr__(self, name: str):
        fields = {f.name for f in dataclasses.fields(self._section)}
        if name in fields and name not in self._allowed and name not in DISPATCH_FIELDS:
            raise UndeclaredSettingError(
                f"{self._reader} read --{name} without declaring it: add it to the reads of "
                "the stage, task or pruning method that uses it, so the stage key holds it")
        if name not in fields and not fields <= self._allowed:
            raise UndeclaredSettingError(
                f"{self._reader} called {type(self._section).__name__}.{name}(), which reads "
                "the whole section: declare the section")
        return getattr(self._section, name)
