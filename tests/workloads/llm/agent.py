"""An agent for aiwatch's tests: asks a model what to do through a real
client library (openai, anthropic or ollama), runs the shell command of
each tool call it gets, sends the output back, and prints a JSON summary
(its pid, the tool calls, the final text) as its last line.

Usage: agent.py --client openai|anthropic|ollama --base URL [--ca PEM]
                [--stream] [--chunked] [--api-key KEY]
                [--download URL] --prompt TEXT [--prompt TEXT ...]

Each prompt is one turn: the model's tool calls run until it answers with
text. --download fetches a URL over the same kind of client (plain HTTPS,
no LLM traffic) after the turns.
"""

import argparse
import json
import os
import subprocess

import httpx

MODEL = {"openai": "gpt-mock", "anthropic": "claude-mock", "ollama": "llama-mock"}
SCHEMA = {"type": "object", "properties": {"command": {"type": "string"}},
          "required": ["command"]}


def run(command):
    done = subprocess.run(command, shell=True, capture_output=True, text=True)
    return (done.stdout + done.stderr)[:2000]


def openai_turn(args, http, prompt, calls):
    import openai
    headers = {"x-mock-chunked": "1"} if args.chunked else None
    client = openai.OpenAI(base_url=args.base + "/v1", api_key=args.api_key,
                           http_client=http, default_headers=headers, max_retries=0)
    tools = [{"type": "function", "function": {
        "name": "run_shell", "description": "Runs a shell command", "parameters": SCHEMA}}]
    messages = [{"role": "user", "content": prompt}]
    while True:
        if args.stream:
            stream = client.chat.completions.create(
                model=MODEL["openai"], messages=messages, tools=tools, stream=True,
                stream_options={"include_usage": True})
            text, pending = "", {}
            for chunk in stream:
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    for call in choice.delta.tool_calls or []:
                        entry = pending.setdefault(call.index, {"id": call.id, "name": "", "arguments": ""})
                        entry["name"] += (call.function.name or "") if call.function else ""
                        entry["arguments"] += (call.function.arguments or "") if call.function else ""
            tool_calls = [pending[i] for i in sorted(pending)]
        else:
            answer = client.chat.completions.create(
                model=MODEL["openai"], messages=messages, tools=tools)
            message = answer.choices[0].message
            text = message.content or ""
            tool_calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                          for c in message.tool_calls or []]
        if not tool_calls:
            return text
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": c["arguments"]}} for c in tool_calls]})
        for call in tool_calls:
            command = json.loads(call["arguments"])["command"]
            calls.append(command)
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": run(command)})


def anthropic_turn(args, _http, prompt, calls):
    import anthropic
    import httpx2  # the HTTP client this SDK is built on
    headers = {"x-mock-chunked": "1"} if args.chunked else None
    client = anthropic.Anthropic(base_url=args.base, api_key=args.api_key,
                                 http_client=httpx2.Client(verify=args.ca or True),
                                 default_headers=headers, max_retries=0)
    tools = [{"name": "run_shell", "description": "Runs a shell command", "input_schema": SCHEMA}]
    messages = [{"role": "user", "content": prompt}]
    while True:
        request = dict(model=MODEL["anthropic"], max_tokens=256, messages=messages, tools=tools)
        if args.stream:
            with client.messages.stream(**request) as stream:
                answer = stream.get_final_message()
        else:
            answer = client.messages.create(**request)
        uses = [b for b in answer.content if b.type == "tool_use"]
        if not uses:
            return "".join(b.text for b in answer.content if b.type == "text")
        messages.append({"role": "assistant", "content": [
            {"type": "tool_use", "id": u.id, "name": u.name, "input": u.input} for u in uses]})
        results = []
        for use in uses:
            calls.append(use.input["command"])
            results.append({"type": "tool_result", "tool_use_id": use.id,
                            "content": run(use.input["command"])})
        messages.append({"role": "user", "content": results})


def ollama_turn(args, http, prompt, calls):
    import ollama
    headers = {"x-mock-chunked": "1"} if args.chunked else None
    client = ollama.Client(host=args.base, verify=args.ca or True, headers=headers)
    tools = [{"type": "function", "function": {
        "name": "run_shell", "description": "Runs a shell command", "parameters": SCHEMA}}]
    messages = [{"role": "user", "content": prompt}]
    while True:
        if args.stream:
            text, tool_calls = "", []
            for part in client.chat(model=MODEL["ollama"], messages=messages, tools=tools, stream=True):
                text += part.message.content or ""
                tool_calls += part.message.tool_calls or []
        else:
            answer = client.chat(model=MODEL["ollama"], messages=messages, tools=tools, stream=False)
            text, tool_calls = answer.message.content or "", answer.message.tool_calls or []
        if not tool_calls:
            return text
        messages.append({"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": c.function.name, "arguments": dict(c.function.arguments)}}
            for c in tool_calls]})
        for call in tool_calls:
            command = call.function.arguments["command"]
            calls.append(command)
            messages.append({"role": "tool", "content": run(command)})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", required=True, choices=["openai", "anthropic", "ollama"])
    parser.add_argument("--base", required=True)
    parser.add_argument("--ca")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--chunked", action="store_true")
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--download")
    parser.add_argument("--prompt", action="append", required=True)
    args = parser.parse_args()
    http = httpx.Client(verify=args.ca or True)
    turn = {"openai": openai_turn, "anthropic": anthropic_turn, "ollama": ollama_turn}[args.client]
    calls, finals = [], []
    for prompt in args.prompt:
        finals.append(turn(args, http, prompt, calls))
    downloaded = None
    if args.download:
        downloaded = len(http.get(args.download).content)
    print(json.dumps({"pid": os.getpid(), "tool_calls": calls, "finals": finals,
                      "downloaded": downloaded}), flush=True)


if __name__ == "__main__":
    main()
