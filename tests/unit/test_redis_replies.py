"""The Redis backend never hands back fewer verdicts than hits: it fails loudly instead."""

from __future__ import annotations

import pytest

from limiter_service.backends.attempts import complete, store_reply
from limiter_service.decision import Verdict
from limiter_service.errors import BackendUnavailable


def test_complete_verdicts_pass_through() -> None:
    verdicts: list[Verdict | None] = [Verdict(True, 1, 2, 0), Verdict(False, 0, 3, 4)]
    assert complete(verdicts) == verdicts


def test_a_missing_verdict_raises_instead_of_shortening_the_list() -> None:
    with pytest.raises(BackendUnavailable, match="redis answered 1 of 2 hits"):
        complete([Verdict(True, 1, 2, 0), None])


@pytest.mark.parametrize("reply", [[1, 2, 3], [1, 2, 3, 4, 5, 6, 7], "OK"])
def test_a_reply_of_the_wrong_size_is_refused(reply: object) -> None:
    verdicts: list[Verdict | None] = [None, None]
    with pytest.raises(BackendUnavailable, match="for 2 hits of 4 each"):
        store_reply(reply, [0, 1], verdicts)  # type: ignore[arg-type]
    assert verdicts == [None, None]


def test_a_reply_of_the_right_size_is_stored_in_order() -> None:
    verdicts: list[Verdict | None] = [None, None, None]
    store_reply([1, 5, 10, 0, 0, 0, 20, 30], [2, 0], verdicts)
    assert verdicts == [Verdict(False, 0, 20, 30), None, Verdict(True, 5, 10, 0)]
