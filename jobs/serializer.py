"""A JSON serializer for Huey messages, so a worker never unpickles what it reads from the queue.

Huey's default is pickle: anyone able to write to queue.db or Redis could run code in the
worker. Our tasks take a run id only; everything else lives in the run folder.
"""
from __future__ import annotations

import datetime
import json

from huey.registry import Message
from huey.serializer import Serializer


def _encode(value):
    if isinstance(value, Message):
        return {"__message__": [_encode(v) for v in value]}
    if isinstance(value, datetime.datetime):
        return {"__datetime__": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"__timedelta__": value.total_seconds()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("queue messages may only hold dicts with string keys")
        return {k: _encode(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot put a {type(value).__name__} on the queue (JSON only)")


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if "__message__" in value:
            return Message(*[_decode(v) for v in value["__message__"]])
        if "__datetime__" in value:
            return datetime.datetime.fromisoformat(value["__datetime__"])
        if "__timedelta__" in value:
            return datetime.timedelta(seconds=value["__timedelta__"])
        return {k: _decode(v) for k, v in value.items()}
    return value


class JsonSerializer(Serializer):
    def _serialize(self, data) -> bytes:
        return json.dumps(_encode(data), separators=(",", ":")).encode("utf-8")

    def _deserialize(self, data: bytes):
        return _decode(json.loads(data))
