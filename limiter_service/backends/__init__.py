"""Where counts live. ``Backend`` is the seam; ``memory`` and ``redis`` implement it."""

from limiter_service.backends.base import Backend
from limiter_service.backends.memory import MemoryBackend

__all__ = ["Backend", "MemoryBackend"]
