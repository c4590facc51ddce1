"""Tests of ``gameball_async.testing``: the fake server, its pytest plugin and its CLI."""
