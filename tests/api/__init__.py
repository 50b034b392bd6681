"""Tests of the client library (``ratelimit_client``: asyncio and sync clients, FastAPI
integration, testing fake) and of the demo API built on it: unit tests and real-process
integration tests."""
