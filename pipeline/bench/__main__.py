"""`python -m pipeline.bench`: see pipeline.bench."""
from absl import app

from pipeline import cli
from pipeline.bench import main

app.run(main, flags_parser=cli.parse_or_exit)
