"""Command-line plumbing shared by the entry points (run, bench, predict, generate)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from absl import flags

from pipeline.artifacts import read_regular_text

FLAGFILE = re.compile(r"^--?flagfile=(.+)$")


class FlagfileError(ValueError):
    """A --flagfile cannot be read; the message names it."""


def expand_flagfiles(argv: list[str], base: Path | None = None,
                     including: tuple[Path, ...] = ()) -> list[str]:
    """Replaces each --flagfile=PATH by the flags in that file, recursively.

    A relative path inside a flagfile is relative to that file's folder (absl would take
    it relative to the working directory), so configs that include each other work from
    any folder. Lines are flags; blank lines and lines starting with # or // are skipped.
    """
    expanded = []
    for argument in argv:
        match = FLAGFILE.match(argument)
        if not match:
            expanded.append(argument)
            continue
        path = Path(match.group(1)).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        if path.resolve() in including:
            raise FlagfileError(f"--flagfile={path} includes itself")
        try:
            text = read_regular_text(path)
        except (OSError, UnicodeDecodeError) as error:
            raise FlagfileError(f"--flagfile={path} cannot be read ({error})") from None
        lines = [line.strip() for line in text.splitlines()]
        lines = [line for line in lines if line and not line.startswith(("#", "//"))]
        expanded += expand_flagfiles(lines, path.parent, including + (path.resolve(),))
    return expanded


def parse_or_exit(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """absl flag parsing that exits with status 2 and one line on any flag error."""
    try:
        return flag_values([argv[0]] + expand_flagfiles(argv[1:]))
    except (flags.Error, FlagfileError) as error:
        sys.stderr.write(f"error: {error}\nRun with --helpfull to see every flag.\n")
        sys.exit(2)
