"""The codegen benchmark suite (not part of the package): ``python -m benchmarks [--quick]``."""
