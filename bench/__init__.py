"""Benchmarks: serving throughput and latency, batches, training scaling, pyfunc overhead, quality."""
