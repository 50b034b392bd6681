import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_UNSPECIFIED: _ClassVar[Reason]
    REASON_WITHIN_LIMIT: _ClassVar[Reason]
    REASON_OVER_LIMIT: _ClassVar[Reason]
    REASON_FAIL_OPEN: _ClassVar[Reason]
    REASON_FAIL_CLOSED: _ClassVar[Reason]
    REASON_SHADOW_OVER_LIMIT: _ClassVar[Reason]
    REASON_UNLIMITED: _ClassVar[Reason]
    REASON_NOT_ALL_ALLOWED: _ClassVar[Reason]
REASON_UNSPECIFIED: Reason
REASON_WITHIN_LIMIT: Reason
REASON_OVER_LIMIT: Reason
REASON_FAIL_OPEN: Reason
REASON_FAIL_CLOSED: Reason
REASON_SHADOW_OVER_LIMIT: Reason
REASON_UNLIMITED: Reason
REASON_NOT_ALL_ALLOWED: Reason

class ShouldAllowRequest(_message.Message):
    __slots__ = ("key", "policy", "cost", "dry_run", "limit", "window")
    KEY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    key: str
    policy: str
    cost: int
    dry_run: bool
    limit: int
    window: _duration_pb2.Duration
    def __init__(self, key: _Optional[str] = ..., policy: _Optional[str] = ..., cost: _Optional[int] = ..., dry_run: _Optional[bool] = ..., limit: _Optional[int] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ShouldAllowResponse(_message.Message):
    __slots__ = ("allowed", "limit", "remaining", "reset_after", "retry_after", "policy", "reason", "window")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RESET_AFTER_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    limit: int
    remaining: int
    reset_after: _duration_pb2.Duration
    retry_after: _duration_pb2.Duration
    policy: str
    reason: Reason
    window: _duration_pb2.Duration
    def __init__(self, allowed: _Optional[bool] = ..., limit: _Optional[int] = ..., remaining: _Optional[int] = ..., reset_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., policy: _Optional[str] = ..., reason: _Optional[_Union[Reason, str]] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ShouldAllowBatchRequest(_message.Message):
    __slots__ = ("requests", "all_or_nothing")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ALL_OR_NOTHING_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[ShouldAllowRequest]
    all_or_nothing: bool
    def __init__(self, requests: _Optional[_Iterable[_Union[ShouldAllowRequest, _Mapping]]] = ..., all_or_nothing: _Optional[bool] = ...) -> None: ...

class ShouldAllowBatchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[ShouldAllowResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[ShouldAllowResponse, _Mapping]]] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("key", "policy", "limit", "window")
    KEY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    key: str
    policy: str
    limit: int
    window: _duration_pb2.Duration
    def __init__(self, key: _Optional[str] = ..., policy: _Optional[str] = ..., limit: _Optional[int] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ResetResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: str
    def __init__(self, policy: _Optional[str] = ...) -> None: ...
