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


MAX_FLAGFILE_DEPTH = 50  # files including files
MAX_FLAGFILES = 1_000  # files read in all: "billion laughs" include trees stop here


def expand_flagfiles(argv: list[str], base: Path | None = None,
                     including: tuple[Path, ...] = (), read: list | None = None) -> list[str]:
    """Replaces each --flagfile=PATH by the flags in that file, recursively.

    A relative path inside a flagfile is relative to that file's folder (absl would take
    it relative to the working directory), so configs that include each other work from
    any folder. Lines are flags; blank lines and lines starting with # or // are skipped.
    Includes nest at most MAX_FLAGFILE_DEPTH deep and read at most MAX_FLAGFILES files.
    """
    read = [] if read is None else read
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
        if len(including) >= MAX_FLAGFILE_DEPTH or len(read) >= MAX_FLAGFILES:
            raise FlagfileError(f"--flagfile={path}: flagfiles nest over {MAX_FLAGFILE_DEPTH} "
                                f"deep or read over {MAX_FLAGFILES:,} files in all; include "
                                "each file once, from a shallower tree")
        read.append(path)
        try:
            text = read_regular_text(path)
        except (OSError, UnicodeDecodeError) as error:
            raise FlagfileError(f"--flagfile={path} cannot be read ({error})") from None
        lines = [line.strip() for line in text.splitlines()]
        lines = [line for line in lines if line and not line.startswith(("#", "//"))]
        expanded += expand_flagfiles(lines, path.parent, including + (path.resolve(),), read)
    return expanded


HELP_ARGUMENTS = ("--help", "-help", "-h", "--h", "-?", "--?")


def short_help(flag_values: flags.FlagValues, module) -> str:
    """What --help prints: the entry point's summary, the flags a user starts with (its
    QUICK_FLAGS) and its EXAMPLES; --helpfull has every flag."""
    summary = (module.__doc__ or "").strip().split("\n\n")[0]
    lines = [summary, "", "Main flags:"]
    for name in getattr(module, "QUICK_FLAGS", ()):
        if name == "flagfile":  # absl's own, not among the defined flags
            lines.append("  --flagfile: a file of flags, one per line (configs/*.flags); a "
                         "flagfile may include others, relative to its own folder")
            continue
        flag = flag_values[name]
        default = "" if flag.default in (None, "", []) else f" (default: {flag.default_as_str})"
        lines.append(f"  --{name}: {flag.help}{default}")
    examples = getattr(module, "EXAMPLES", "")
    if examples:
        lines += ["", "Examples:", *("  " + line for line in examples.strip().splitlines())]
    lines += ["", "Every flag, grouped by section: --helpfull"]
    return "\n".join(lines) + "\n"


def parse_or_exit(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """absl flag parsing that exits with status 2 and one line on any flag error; --help
    prints the short help and exits 0."""
    if any(argument in HELP_ARGUMENTS for argument in argv[1:]):
        sys.stdout.write(short_help(flag_values, sys.modules["__main__"]))
        sys.exit(0)
    try:
        return flag_values([argv[0]] + expand_flagfiles(argv[1:]))
    except (flags.Error, FlagfileError) as error:
        sys.stderr.write(f"error: {error}\nRun with --helpfull to see every flag.\n")
        sys.exit(2)


def keep_own_info_lines(verbosity: int) -> None:
    """Below warnings, only this project's log lines: TensorFlow's own INFO lines (SavedModel
    writes, sharding durations) go through absl's handler too, unless --verbosity >= 1."""
    import logging as std_logging

    from absl import logging
    if verbosity >= 1:
        return
    own = (str(Path(__file__).resolve().parents[1] / "pipeline"),
           str(Path(__file__).resolve().parents[1] / "models"))
    logging.get_absl_handler().addFilter(
        lambda record: record.levelno >= std_logging.WARNING or record.pathname.startswith(own))

