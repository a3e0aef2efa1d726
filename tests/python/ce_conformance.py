#!/usr/bin/env python3
"""CloudEvents Kafka binding conformance between llmopt (Rust) and the CloudEvents Python SDK.

Driven by `crates/llmopt-cloudevents/tests/python_sdk.rs`; needs `cloudevents==2.2.0`.

    ce_conformance.py write OUT.json   # the SDK encodes events; Rust decodes them
    ce_conformance.py read IN.json     # Rust encoded events; the SDK decodes them (JSON on stdout)

A message file is a JSON list of objects:

    {"mode": "binary" | "structured",
     "headers": {name: base64 of the header bytes},
     "key": base64 or null,
     "value": base64,
     "expected": {...}}           # only in files written by `write`

`expected` (and each entry printed by `read`) holds the attributes as the SDK sees them: id,
source, type, specversion, time, subject, dataschema, datacontenttype, extensions (a dict of
strings, partitionkey included) and data (a JSON object when the SDK holds a dict, otherwise the
base64 of the bytes), plus data_type ("dict", "bytes", "str" or null) saying which it was.
"""

import base64
import json
import sys
from datetime import datetime, timedelta, timezone

from cloudevents.core.bindings.kafka import (
    KafkaMessage,
    from_binary,
    from_structured,
    to_binary,
    to_structured,
)
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

REQUIRED = ("id", "source", "type", "specversion")
OPTIONAL = ("time", "subject", "dataschema", "datacontenttype")
LLM_CALL_TYPE = "io.llmopt.llm_call.v1"
LLM_CALL_SCHEMA = "urn:llmopt:schema:llmopt.events.LlmCall"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def b64(raw):
    return base64.b64encode(raw).decode("ascii")


def unb64(text):
    return base64.b64decode(text.encode("ascii"), validate=True)


def as_bytes(value):
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def llm_call(n):
    """An llmopt LlmCall as a third-party JSON producer would write it."""
    call = {
        "event_time": 1767225600000 + n * 37,
        "request_id": f"req-py-{n:04d}",
        "app": "checkout",
        "route": "summarize",
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o-mini",
        "gen_ai_usage_input_tokens": 120 + n,
        "gen_ai_usage_output_tokens": 30 + n,
        "latency_ms": 412.5 + n,
        "status": "OK",
    }
    if n % 2 == 0:
        call["tenant"] = f"tenant-{n}"
        call["cost_usd"] = 0.00042
        call["time_to_first_token_ms"] = 88.25
    return call


# Arbitrary bytes that look like Avro single-object data: the C3 01 marker (never valid UTF-8,
# so the SDK keeps them as bytes), an 8-byte fingerprint and a body with every byte value.
AVRO_LIKE = b"\xc3\x01" + bytes(range(0xF0, 0xF8)) + bytes(range(256)) + b"\x00\xff"


def events():
    """(mode, CloudEvent) pairs covering the attribute and data shapes llmopt must read."""
    utc_micros = datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=timezone.utc)
    utc_whole = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
    plus_two = datetime(2026, 3, 4, 12, 30, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    minus_five_thirty = datetime(2025, 12, 31, 19, 0, 0, tzinfo=timezone(-timedelta(hours=5, minutes=30)))
    out = []
    for mode in ("binary", "structured"):
        # JSON data, only the required attributes plus time and content type.
        out.append((mode, CloudEvent(
            attributes={
                "id": f"{mode}-json-minimal",
                "source": "/apps/checkout",
                "type": LLM_CALL_TYPE,
                "specversion": "1.0",
                "time": utc_whole,
                "datacontenttype": "application/json",
            },
            data=llm_call(1),
        )))
        # JSON data with every optional attribute and both extensions.
        out.append((mode, CloudEvent(
            attributes={
                "id": f"{mode}-json-full",
                "source": "https://gateway.example.com/llm",
                "type": LLM_CALL_TYPE,
                "specversion": "1.0",
                "time": utc_micros,
                "subject": "checkout/summarize",
                "dataschema": LLM_CALL_SCHEMA,
                "datacontenttype": "application/json",
                "partitionkey": "checkout/summarize",
                "traceparent": TRACEPARENT,
            },
            data=llm_call(2),
        )))
        # Avro-like bytes data with extensions, a non-UTC offset and a non-ASCII subject.
        out.append((mode, CloudEvent(
            attributes={
                "id": f"{mode}-avro",
                "source": "llmopt/aggregator",
                "type": LLM_CALL_TYPE,
                "specversion": "1.0",
                "time": plus_two,
                "subject": "r\u00e9sum\u00e9/\u00fc",
                "dataschema": LLM_CALL_SCHEMA,
                "datacontenttype": "application/avro",
                "partitionkey": "search/answer",
                "traceparent": TRACEPARENT,
            },
            data=AVRO_LIKE,
        )))
        # JSON data with a content type parameter and a negative offset; traceparent only.
        out.append((mode, CloudEvent(
            attributes={
                "id": f"{mode}-json-charset",
                "source": "/apps/support-bot",
                "type": LLM_CALL_TYPE,
                "specversion": "1.0",
                "time": minus_five_thirty,
                "datacontenttype": "application/json; charset=utf-8",
                "traceparent": TRACEPARENT,
            },
            data=llm_call(4),
        )))
    return out


def describe(event):
    """The attributes and data of an SDK event, as JSON-friendly values."""
    attrs = event.get_attributes()
    time = attrs.get("time")
    data = event.get_data()
    if data is None:
        data_type, data_out = None, None
    elif isinstance(data, dict):
        data_type, data_out = "dict", data
    elif isinstance(data, str):
        data_type, data_out = "str", b64(data.encode("utf-8"))
    else:
        data_type, data_out = "bytes", b64(bytes(data))
    return {
        "id": attrs.get("id"),
        "source": attrs.get("source"),
        "type": attrs.get("type"),
        "specversion": attrs.get("specversion"),
        "time": time.isoformat() if isinstance(time, datetime) else time,
        "subject": attrs.get("subject"),
        "dataschema": attrs.get("dataschema"),
        "datacontenttype": attrs.get("datacontenttype"),
        "extensions": {
            name: str(value)
            for name, value in attrs.items()
            if name not in REQUIRED and name not in OPTIONAL
        },
        "data": data_out,
        "data_type": data_type,
    }


def written_time(mode, message):
    """The exact `time` string the SDK put on the wire."""
    if mode == "binary":
        raw = message.headers.get("ce_time")
        return raw.decode("utf-8") if raw is not None else None
    return json.loads(message.value.decode("utf-8")).get("time")


def write(path):
    fmt = JSONFormat()
    entries = []
    for mode, event in events():
        message = to_binary(event, fmt) if mode == "binary" else to_structured(event, fmt)
        expected = describe(event)
        expected["time"] = written_time(mode, message)
        key = as_bytes(message.key)
        entries.append({
            "mode": mode,
            "headers": {name: b64(as_bytes(value)) for name, value in message.headers.items()},
            "key": b64(key) if key is not None else None,
            "value": b64(as_bytes(message.value)),
            "expected": expected,
        })
    with open(path, "w", encoding="utf-8") as out:
        json.dump(entries, out, indent=2)


def read(path):
    fmt = JSONFormat()
    with open(path, encoding="utf-8") as src:
        entries = json.load(src)
    decoded = []
    for entry in entries:
        message = KafkaMessage(
            headers={name: unb64(value) for name, value in entry["headers"].items()},
            key=unb64(entry["key"]) if entry.get("key") is not None else None,
            value=unb64(entry["value"]) if entry.get("value") is not None else b"",
        )
        if entry["mode"] == "binary":
            event = from_binary(message, fmt, CloudEvent)
        elif entry["mode"] == "structured":
            event = from_structured(message, fmt, CloudEvent)
        else:
            raise SystemExit(f"unknown mode {entry['mode']!r}")
        decoded.append(describe(event))
    json.dump(decoded, sys.stdout, indent=2)
    sys.stdout.write("\n")


def main(argv):
    if len(argv) != 3 or argv[1] not in ("write", "read"):
        sys.stderr.write(f"usage: {argv[0]} write OUT.json | read IN.json\n")
        return 2
    if argv[1] == "write":
        write(argv[2])
    else:
        read(argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
