"""`python -m serving.cli`, the same as the `valuation` console script."""

from serving.cli.main import app

app()
