"""Pipeline stages. Each module has one entry point, `run(config, run_dir, out_dir)`.

A stage reads earlier stages' artifacts from `run_dir/<stage>/`, writes its own into
`out_dir` (a scratch folder the runner swaps into place on success) and returns a small
summary dict for the log and the stage record.
"""


class StageError(RuntimeError):
    """A stage cannot finish; the message says what failed and what to change."""
