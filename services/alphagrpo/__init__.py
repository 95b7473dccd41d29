"""The ``alphagrpo`` command line: one entry point for serving, benchmarks and demos (see ``cli.py``)."""
