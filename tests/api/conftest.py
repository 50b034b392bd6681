"""Processes shared by the ``api`` integration tests (see ``api_stack.SharedStack``).

Budgets never collide between tests: each test charges its own client addresses (its own
``X-Real-IP`` values, or its own 127.0.0.x source address).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack import ProcessGroup
from tests.api.api_stack import SharedStack, start_shared_stack


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedStack]:
    with ProcessGroup(tmp_path_factory.mktemp("api-shared")) as group:
        yield start_shared_stack(group)
