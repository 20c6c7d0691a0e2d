"""relulab benchmarks: ``python -m bench`` (see :mod:`bench.__main__`)."""
