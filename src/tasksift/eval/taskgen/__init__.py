"""Benchmark tasks built from real text that installed packages ship (PyPI, Debian, npm)."""
