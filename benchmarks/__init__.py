"""Benchmarks of gameball_async against the alternatives people use today.

Run them all with ``python -m benchmarks`` (``--quick`` for a smoke run); each
module also runs on its own. The fake server always runs in a child process,
so the figures are the client's alone.
"""
