"""A mock LLM API for aiwatch's tests, over TLS (self-signed) or plain HTTP.

It speaks the wire formats of OpenAI chat completions, Anthropic messages
and Ollama chat: JSON answers and streams (server-sent events, NDJSON).
JSON answers carry a Content-Length unless the request has the header
`x-mock-chunked: 1`; streams are always chunked. GET /download/<n> answers
<n> bytes of a file that is no LLM traffic.

It is stateless. A conversation whose last user message is
`RUN: <command>` is answered with a call of the tool `run_shell` with
`{"command": "<command>"}`; any other conversation (a tool result last)
is answered with the text `Done.`.

Usage: mock_llm.py PORT [CERT KEY]. Prints `ready` once it listens.
"""

import http.server
import json
import ssl
import sys

TOOL = "run_shell"


def wanted_command(messages):
    """The command a conversation asks for, or None."""
    if not messages:
        return None
    last = messages[-1]
    if last.get("role") == "tool":
        return None
    content = last.get("content")
    if isinstance(content, list):
        if any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            return None
        content = " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    text = content or ""
    return text[len("RUN: "):] if text.startswith("RUN: ") else None


def tokens(body):
    return max(1, len(body) // 4)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, body, kind):
        self.send_response(200)
        self.send_header("content-type", kind)
        if self.headers.get("x-mock-chunked") == "1":
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.chunk(body)
            self.end_chunks()
        else:
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def start_stream(self, kind):
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def chunk(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_GET(self):
        if self.path.startswith("/download/"):
            size = int(self.path.rsplit("/", 1)[1])
            body = b"z" * size
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        request = json.loads(raw)
        command = wanted_command(request.get("messages", []))
        model = request.get("model", "mock")
        usage_in, usage_out = tokens(raw), 7
        if self.path.endswith("/chat/completions"):
            self.openai(request, model + "-0001", command, usage_in, usage_out)
        elif self.path.endswith("/messages"):
            self.anthropic(request, model, command, usage_in, usage_out)
        elif self.path.endswith("/api/chat"):
            self.ollama(request, model, command, usage_in, usage_out)
        else:
            self.send_error(404)

    def openai(self, request, model, command, usage_in, usage_out):
        arguments = json.dumps({"command": command}) if command else None
        if not request.get("stream"):
            if command:
                message = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": TOOL, "arguments": arguments}}]}
            else:
                message = {"role": "assistant", "content": "Done."}
            answer = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                      "model": model,
                      "choices": [{"index": 0, "message": message,
                                   "finish_reason": "tool_calls" if command else "stop"}],
                      "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out,
                                "total_tokens": usage_in + usage_out}}
            self.send(json.dumps(answer).encode(), "application/json")
            return
        self.start_stream("text/event-stream")

        def event(delta, finish=None):
            piece = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0,
                     "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self.chunk("data: " + json.dumps(piece) + "\n\n")

        if command:
            event({"role": "assistant", "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function",
                 "function": {"name": TOOL, "arguments": ""}}]})
            half = len(arguments) // 2
            for part in (arguments[:half], arguments[half:]):
                event({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
            event({}, "tool_calls")
        else:
            event({"role": "assistant", "content": "Do"})
            event({"content": "ne."})
            event({}, "stop")
        usage = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0,
                 "model": model, "choices": [],
                 "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out,
                           "total_tokens": usage_in + usage_out}}
        self.chunk("data: " + json.dumps(usage) + "\n\n")
        self.chunk("data: [DONE]\n\n")
        self.end_chunks()

    def anthropic(self, request, model, command, usage_in, usage_out):
        if command:
            content = [{"type": "tool_use", "id": "toolu_1", "name": TOOL,
                        "input": {"command": command}}]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": "Done."}]
            stop = "end_turn"
        if not request.get("stream"):
            answer = {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                      "content": content, "stop_reason": stop, "stop_sequence": None,
                      "usage": {"input_tokens": usage_in, "output_tokens": usage_out}}
            self.send(json.dumps(answer).encode(), "application/json")
            return
        self.start_stream("text/event-stream")

        def event(name, data):
            data["type"] = name
            self.chunk("event: %s\ndata: %s\n\n" % (name, json.dumps(data)))

        event("message_start", {"message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": usage_in, "output_tokens": 1}}})
        if command:
            event("content_block_start", {"index": 0, "content_block": {
                "type": "tool_use", "id": "toolu_1", "name": TOOL, "input": {}}})
            partial = json.dumps({"command": command})
            half = len(partial) // 2
            for part in (partial[:half], partial[half:]):
                event("content_block_delta", {"index": 0, "delta": {
                    "type": "input_json_delta", "partial_json": part}})
        else:
            event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Done."}})
        event("content_block_stop", {"index": 0})
        event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                "usage": {"output_tokens": usage_out}})
        event("message_stop", {})
        self.end_chunks()

    def ollama(self, request, model, command, usage_in, usage_out):
        if command:
            message = {"role": "assistant", "content": "",
                       "tool_calls": [{"function": {"name": TOOL,
                                                    "arguments": {"command": command}}}]}
        else:
            message = {"role": "assistant", "content": "Done."}
        done = {"model": model, "created_at": "2026-01-01T00:00:00Z", "message": message,
                "done": True, "done_reason": "stop", "total_duration": 1000,
                "prompt_eval_count": usage_in, "eval_count": usage_out}
        # Ollama streams unless told not to.
        if request.get("stream") is False:
            self.send(json.dumps(done).encode(), "application/json; charset=utf-8")
            return
        self.start_stream("application/x-ndjson")
        if not command:
            first = {"model": model, "created_at": "2026-01-01T00:00:00Z",
                     "message": {"role": "assistant", "content": "Do"}, "done": False}
            self.chunk(json.dumps(first) + "\n")
            done["message"] = {"role": "assistant", "content": "ne."}
        self.chunk(json.dumps(done) + "\n")
        self.end_chunks()


def main():
    port = int(sys.argv[1])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    if len(sys.argv) > 3:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
