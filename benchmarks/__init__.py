"""The benchmark harness: ``python -m benchmarks --quick | --full`` (see benchmarks/README.md)."""
