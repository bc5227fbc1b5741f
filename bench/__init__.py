"""Benchmark suite: `python bench/run_all.py --out BENCHMARKS.md` (see BENCHMARKS.md)."""
