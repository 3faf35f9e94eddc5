"""Readable text from stored provider bodies (the last user message, the answer) for `tapgate thread`.

Read-only and forgiving: the shape of the JSON is sniffed (OpenAI chat and Responses, Anthropic
messages, Gemini contents, legacy prompts, the gateway's own assembled stream object), never the
provider's name, and anything else reads as "" rather than failing.
"""

from __future__ import annotations

import json
from typing import Any

from providers.safe_json import parse_json


def _text_of(content: Any) -> str:
    """Text in a message's content: a string, or a list of parts (text, input_text, output_text,
    Gemini's {"text"}); tool results and images are marked as such."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    out = []
    for part in content:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, dict):
            if part.get("thought") is True:  # Gemini's thought summaries are not the message
                continue
            if isinstance(part.get("text"), str):
                out.append(part["text"])
            elif part.get("type") == "tool_result":  # Anthropic
                out.append(tool_result(_text_of(part.get("content"))))
            elif isinstance(part.get("functionResponse"), dict):  # Gemini
                out.append(tool_result(json.dumps(part["functionResponse"].get("response"), ensure_ascii=False)))
            elif part.get("type") in ("image", "image_url", "input_image") or "inlineData" in part:
                out.append("[image]")
    return "\n".join(t for t in out if t)


def tool_result(text: str) -> str:
    return f"[tool result] {text}".strip()


def question(request_body: str | None) -> str:
    """The last turn from the user's side of a request body: what they said, or a tool's result."""
    body = parse_json(request_body)
    if not isinstance(body, dict):
        return ""
    for key in ("messages", "contents", "input"):
        turns = body.get(key)
        if isinstance(turns, str) and key == "input":
            return turns  # Responses `input: "..."`
        if isinstance(turns, list):
            for turn in reversed(turns):
                if not isinstance(turn, dict):
                    continue
                if turn.get("role") in ("tool", "function"):  # OpenAI chat
                    return tool_result(_text_of(turn.get("content")))
                if turn.get("type") == "function_call_output":  # OpenAI Responses
                    return tool_result(turn.get("output") if isinstance(turn.get("output"), str) else "")
                if turn.get("role", "user") == "user" and turn.get("type") in (None, "message"):
                    return _text_of(turn.get("content", turn.get("parts")))
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def answer(response_body: str | None) -> str:
    """The answer in a response body: text, then `→ name(args)` for each tool call."""
    body = parse_json(response_body)
    if not isinstance(body, dict):
        return ""
    text, calls = "", []
    if "text" in body and "finish_reason" in body:  # the gateway's assembled stream
        text = body.get("text") or ""
        calls = [(c.get("name"), c.get("arguments")) for c in body.get("tool_calls") or [] if isinstance(c, dict)]
    elif isinstance(body.get("choices"), list) and body["choices"]:  # chat completions, legacy completions
        choice = body["choices"][0]
        message = choice.get("message") or {}
        text = _text_of(message.get("content")) or choice.get("text") or ""
        calls = [((c.get("function") or {}).get("name"), (c.get("function") or {}).get("arguments"))
                 for c in message.get("tool_calls") or []]
    elif isinstance(body.get("output"), list):  # Responses
        for item in body["output"]:
            if item.get("type") == "message":
                text += _text_of(item.get("content"))
            elif item.get("type") == "function_call":
                calls.append((item.get("name"), item.get("arguments")))
    elif isinstance(body.get("content"), list):  # Anthropic messages
        text = _text_of([p for p in body["content"] if p.get("type") == "text"])
        calls = [(p.get("name"), json.dumps(p.get("input"))) for p in body["content"] if p.get("type") == "tool_use"]
    elif isinstance(body.get("candidates"), list) and body["candidates"]:  # Gemini
        parts = (body["candidates"][0].get("content") or {}).get("parts") or []
        text = _text_of(parts)
        calls = [(p["functionCall"].get("name"), json.dumps(p["functionCall"].get("args")))
                 for p in parts if isinstance(p.get("functionCall"), dict)]
    elif isinstance(body.get("message"), dict):  # Ollama /api/chat
        text = _text_of(body["message"].get("content"))
    elif isinstance(body.get("response"), str):  # Ollama /api/generate
        text = body["response"]
    elif isinstance(body.get("error"), dict):  # errors, in every provider's shape
        return f"error: {body['error'].get('message', '')}".strip()
    tools = [f"→ {name}({args or ''})" for name, args in calls if name]
    return "\n".join(t for t in [text, *tools] if t)
