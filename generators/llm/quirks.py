"""What differs between OpenAI-compatible servers, in one place: how structured output is asked
for, what a server says when it does not take that, and how it says a prompt is too long.

OpenAI and vLLM take ``response_format: {"type": "json_schema", ...}``; llama-cpp-python's server
answers that with HTTP 500 and takes ``json_object`` plus its own ``schema`` field; some servers
take only ``json_object``, and some nothing. The client starts from the configured mode and
steps down this ladder when a server rejects a format, for the rest of the run.
"""
from __future__ import annotations

import re

# The next mode to try when a server rejects one.
FORMAT_FALLBACK = {"json_schema": "json_object", "json_object": "none"}

# A rejection of response_format comes as 400 or 422 (OpenAI, vLLM), or as a 500 whose message
# names the format (llama-cpp-python). A 500 that names nothing of the kind is a server error.
_FORMAT_WORDS = re.compile(r"response_format|json_schema|json_object|\bschema\b|grammar", re.I)

# A prompt over the model's context: OpenAI ("maximum context length is 8192 tokens"), vLLM ("This
# model's maximum context length is 2048 tokens. However, you requested ..."), llama.cpp's
# llama-server ("the request exceeds the available context size"), llama-cpp-python ("Requested
# tokens (5000) exceed context window of 2048"), Ollama and others ("prompt is too long").
_CONTEXT_LENGTH = re.compile(
    r"context[ _]length|context window|context size|context_length_exceeded|too long|too many tokens"
    r"|maximum.{0,20}tokens|exceeds? (?:the )?(?:available |maximum )?(?:context|tokens)",
    re.I,
)


def format_params(mode: str, response_format: dict | None) -> dict:
    """The request fields that ask for JSON in ``mode``, for a ``json_schema`` response format."""
    if response_format is None or mode == "none":
        return {}
    if mode == "json_object":
        schema = (response_format.get("json_schema") or {}).get("schema")
        # llama-cpp-python constrains json_object output to a schema given beside the type.
        return {"response_format": {"type": "json_object", **({"schema": schema} if schema else {})}}
    return {"response_format": response_format}


def is_context_length_error(message: str) -> bool:
    """Whether an error message says the prompt (plus max_tokens) does not fit the model."""
    return bool(_CONTEXT_LENGTH.search(message))


def is_format_rejection(status: int, message: str, mode: str) -> bool:
    """Whether an HTTP error says the server does not take ``mode``'s response_format."""
    if mode not in FORMAT_FALLBACK or is_context_length_error(message):
        return False
    if status in (400, 422):
        return True
    return status == 500 and bool(_FORMAT_WORDS.search(message))
