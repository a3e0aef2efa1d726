"""A real instrumented LLM application for llmopt's OTLP ingest tests.

The official `openai` client, instrumented by `opentelemetry-instrumentation-openai-v2`, calls a
small fake OpenAI-compatible server started here (chat completions, plain and streamed, and a
server error), and the OpenTelemetry SDK exports the spans over OTLP/HTTP (protobuf) to
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or to every endpoint in GENAI_APP_ENDPOINTS (comma-separated:
the same spans, with the same ids, to each). App and route come from OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES, as in a deployment. Prints one JSON line per call made.
"""

import os

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

USAGE = {
    "gpt-4o-mini": (11, 7),
    "gpt-4o": (13, 5),
}


def completion(model, content, usage):
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model + "-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[0] + usage[1],
        },
    }


class FakeOpenAI(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        model = body.get("model", "")
        if model not in USAGE:
            payload = json.dumps(
                {"error": {"message": "the model is down", "type": "server_error", "code": None}}
            ).encode()
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        usage = USAGE[model]
        if not body.get("stream"):
            payload = json.dumps(completion(model, "fine", usage)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model + "-2024-08-06",
        }
        for i, piece in enumerate(["str", "eam", "ed"]):
            delta = {"content": piece} if i else {"role": "assistant", "content": piece}
            chunk = dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}])
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()
            time.sleep(0.05)
        last = dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
        self.wfile.write(b"data: " + json.dumps(last).encode() + b"\n\n")
        with_usage = dict(
            base,
            choices=[],
            usage={
                "prompt_tokens": usage[0],
                "completion_tokens": usage[1],
                "total_tokens": usage[0] + usage[1],
            },
        )
        self.wfile.write(b"data: " + json.dumps(with_usage).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    provider = TracerProvider(resource=Resource.create())
    endpoints = [e for e in os.environ.get("GENAI_APP_ENDPOINTS", "").split(",") if e]
    for endpoint in endpoints or [None]:
        exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    OpenAIInstrumentor().instrument()
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
        api_key="test",
        max_retries=0,
    )
    messages = [{"role": "user", "content": "Summarise the order."}]
    client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=64)
    print(json.dumps({"call": "plain", "model": "gpt-4o-mini"}))
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0.3,
    )
    for _ in stream:
        pass
    print(json.dumps({"call": "streamed", "model": "gpt-4o"}))
    try:
        client.chat.completions.create(model="broken-model", messages=messages)
    except openai.APIStatusError as e:
        print(json.dumps({"call": "failed", "model": "broken-model", "status": e.status_code}))
    provider.force_flush()
    provider.shutdown()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
