"""What every launcher shares: leaving a ``with`` block stops what was started."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class StopsOnExit:
    """``with x:`` hands back ``x`` and calls ``x.stop()`` on the way out, whatever
    happened inside. Subclasses that start on entry override ``__enter__``."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
