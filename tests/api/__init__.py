"""Tests of the ``api`` package: unit tests and real-process integration tests."""
