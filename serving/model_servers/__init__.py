"""The model servers behind the proxy: `mlflow models serve` processes, one per served version.

- `supervisor`: keeps the watched aliases served, blue/green (the proxy's entry point).
- `process`: one `mlflow models serve` child: start, /ping, smoke prediction, stop, leftovers.
- `registry`: a version's metadata, rules and example request; which version an alias names.
- `timeouts`: MLflow calls that may hang, bounded in time.
- `served`: `ServedModel` (what the proxy forwards to) and `ModelLoadError`.
"""
