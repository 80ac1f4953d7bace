"""Benchmarks run by scripts/benchmark.py (one function per subcommand)."""
