"""Test helpers shipped with the package (fake servers for offline tests and benchmarks)."""
