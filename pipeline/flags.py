"""Command-line flags, generated from the config fields, and the config built from them.

A flag's name, type, default, help and choices all come from its field in
`pipeline.config`; this module only turns text into values. Ranges and cross-field rules
are checked by the config dataclasses, so a config built in a test is validated exactly
like one from the command line.
"""
from __future__ import annotations

import dataclasses
import os

from absl import flags

from pipeline import config as cfg
from pipeline import settings

FLAGS = flags.FLAGS
PAIRS = tuple[tuple[str, float], ...]


def _help(field: dataclasses.Field, kind) -> str:
    text = field.metadata["help"]
    choices = field.metadata["choices"]
    if choices and kind is not str:
        text += f" Choices: {','.join(choices)}."
    return text


def _default(field: dataclasses.Field):
    env = field.metadata["env"]
    if env and os.environ.get(env):
        return os.environ[env]
    if isinstance(field.default, tuple):
        return [_format_pair(v) if isinstance(v, tuple) else v for v in field.default]
    return field.default


def _format_pair(pair: tuple[str, float]) -> str:
    return f"{pair[0]}:{pair[1]:g}"


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """One absl flag per setting; the type decides the kind of flag."""
    for name, (section, field, kind) in settings.FIELDS.items():
        help_text, default = _help(field, kind), _default(field)
        # --helpfull lists flags under their module name: one heading per config section
        common = {"flag_values": flag_values, "module_name": section_heading(section)}
        if kind is bool:
            flags.DEFINE_bool(name, default, help_text, **common)
        elif kind is int:
            flags.DEFINE_integer(name, default, help_text, **common)
        elif kind is float:
            flags.DEFINE_float(name, default, help_text, **common)
        elif kind is str and field.metadata["choices"]:
            flags.DEFINE_enum(name, default, field.metadata["choices"], help_text, **common)
        elif kind is str:
            flags.DEFINE_string(name, default, help_text, **common)
        elif kind in (tuple[str, ...], PAIRS):
            flags.DEFINE_list(name, default, help_text, **common)
        else:
            raise TypeError(f"setting {name} has type {kind}, which has no flag kind")


def section_heading(section: str | None) -> str:
    return f"pipeline settings: {section or 'run'}"


def parse_pairs(name: str, entries: list[str]) -> PAIRS:
    """`KIND:VALUE` list items, e.g. --layer_sparsity=embedding:0.9,dense:0.5."""
    parsed = []
    for entry in entries:
        key, sep, value = entry.partition(":")
        try:
            parsed.append((key.strip(), float(value)))
        except ValueError:
            sep = ""
        if not sep:
            raise cfg.ConfigError(f"--{name} entry {entry!r} is not KIND:VALUE, e.g. lstm:0.8")
    return tuple(parsed)


def _value(name: str, kind, raw):
    if kind == PAIRS:
        return parse_pairs(name, raw)
    if kind == tuple[str, ...]:
        return tuple(raw)
    return raw


def config_from_flags(values=FLAGS) -> cfg.PipelineConfig:
    """Builds the frozen config; raises ConfigError naming the offending flag."""
    grouped: dict = {None: {}, **{section: {} for section in cfg.SECTIONS}}
    for name, (section, _, kind) in settings.FIELDS.items():
        grouped[section][name] = _value(name, kind, getattr(values, name))
    sections = {name: cls(**grouped[name]) for name, cls in cfg.SECTIONS.items()}
    return cfg.PipelineConfig(**grouped[None], **sections)


def parse_values(argv: list[str]) -> flags.FlagValues:
    """pipeline.run's flags parsed from these arguments alone (flagfiles expanded): which
    were given (`values[name].present`) and their values, before any config check."""
    from pipeline import cli
    values = flags.FlagValues()
    define_flags(values)
    values(["pipeline.run"] + cli.expand_flagfiles(argv))
    return values


def parse_config(argv: list[str]) -> cfg.PipelineConfig:
    """The config `pipeline.run` would build from these arguments, parsed in isolation.

    Raises ConfigError (or absl's flags.Error, or cli.FlagfileError) naming the problem;
    used to check every cell of a sweep before any of them runs.
    """
    return config_from_flags(parse_values(argv))
