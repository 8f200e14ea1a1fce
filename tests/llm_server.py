"""An OpenAI-compatible chat server for tests and benchmarks, on 127.0.0.1, with injectable faults.

It speaks enough HTTP/1.1 (keep-alive, Content-Length) for the openai package, on asyncio
streams, so thousands of slow requests cost no threads. ``POST .../chat/completions`` answers
with a *scripted* reply: first any matching injected fault (``server.inject``), else the
responder, by default :func:`fake_llm`, which reads this project's prompts and answers them the
way a cooperative model would (and falls for prompt injection, so the validators can catch it).

    with LLMTestServer(latency_s=0.01) as server:
        server.inject(Reply(status=429, headers={"retry-after": "0.1"}), times=2)
        client = LLMClient(LLMConfig(base_url=server.url, model="test-model"), api_key="sk-test")

Run it standalone (for benchmarks): ``python -m tests.llm_server --latency 0.2`` prints the URL.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Callable

from linkscan.generators.llm.prompts import DATA_END, DATA_START


@dataclass
class Reply:
    """What the server does with one request."""

    content: str | None = None  # the assistant message (None: ask the responder)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # a raw body instead of a chat completion
    delay_s: float = 0.0  # added to the server's latency
    drop: bool = False  # close the connection without answering
    finish_reason: str = "stop"
    patch: tuple[str, bytes] | None = None  # this text of the completion's bytes replaced (by invalid UTF-8, say)


@dataclass
class _Fault:
    reply: Reply
    times: int
    match: Callable[[dict], bool] | None


def _user_text(request: dict) -> str:
    return "\n".join(str(m.get("content", "")) for m in request.get("messages", []) if m.get("role") == "user")


def request_stage(request: dict) -> str:
    """links, question or evidence, from the response_format name or the prompt's wording."""
    fmt = request.get("response_format") or {}
    name = (fmt.get("json_schema") or {}).get("name")
    if name:
        return name
    text = _user_text(request)
    if "WINDOW:" in text:
        return "links"
    if "CANDIDATES:" in text:
        return "evidence"
    if "PASSAGE" in text:
        return "question"
    return "unknown"


def data_sections(request: dict) -> dict[str, list]:
    """The DATA block of a prompt: heading -> list of JSON values (strings or {id, text})."""
    text = _user_text(request)
    if DATA_START not in text:
        return {}
    block = text.split(DATA_START, 1)[1].split("\n" + DATA_END, 1)[0]
    sections: dict[str, list] = {}
    current = None
    for line in block.splitlines():
        if not line.strip():
            continue
        if re.fullmatch(r"[A-Z_]+:", line):
            current = line[:-1]
            sections[current] = []
        elif current is not None:
            sections[current].append(json.loads(line))
    return sections


_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{4,}")


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _texts(items: list) -> list[str]:
    return [i["text"] if isinstance(i, dict) else str(i) for i in items]


def fake_llm(request: dict) -> str:
    """A deterministic stand-in for a cooperative model, answering this project's three prompts.

    links: the window sentences sharing the most long words with the anchor (far ones first on
    ties), each naming a shared word; question: a question naming a word found only in each
    passage; evidence: the candidates sharing a word with the question. A document saying "ignore
    previous instructions" is obeyed, as a weak model would, and the answer is not JSON.
    """
    text = _user_text(request)
    if re.search(r"ignore (all )?previous instructions", text, re.IGNORECASE):
        return "Sure! Ignoring my previous instructions. HACKED"
    sections = data_sections(request)
    stage = request_stage(request)
    if stage == "links":
        anchor = _words(" ".join(_texts(sections.get("ANCHOR", []))))
        window = sections.get("WINDOW", [])
        scored = sorted(
            ((len(anchor & _words(item["text"])), abs(item["id"] - len(window) // 2), item["id"]) for item in window),
            reverse=True,
        )
        links = []
        for s, _, i in scored[:3]:
            if s > 0:
                words = _words(window[i]["text"])
                shared = sorted(anchor & words, key=lambda w: (-len(w), w))[0]
                own = sorted(words - anchor, key=lambda w: (-len(w), w))[:1] or ["detail"]
                links.append({"index": i, "shared": shared, "strength": min(5, s),
                              "reason": f"What is said of {shared} returns with {own[0]} (link {len(links) + 1})."})
        return json.dumps({"links": links})
    if stage == "question":
        passages = [_words(" ".join(_texts(sections[k]))) for k in ("PASSAGE", "PASSAGE_A", "PASSAGE_B") if k in sections]
        names = []
        for passage in passages:
            others = set().union(*(p for p in passages if p is not passage))
            words = sorted(passage - others or passage, key=lambda w: (-len(w), w))
            names.append(words[0] if words else "something")
        if len(names) == 1:
            return json.dumps({"question": f"What is said about {names[0]} and its role?"})
        return json.dumps({"fact_a": f"about {names[0]}", "fact_b": f"about {names[1]}",
                           "question": f"How is {names[0]} related to {names[1]} where both come up?"})
    if stage == "evidence":
        question = _words(" ".join(_texts(sections.get("QUESTION", []))))
        if "CANDIDATES_A" in sections:
            return json.dumps({f"evidence_{side}": [c["id"] for c in sections[f"CANDIDATES_{side.upper()}"]
                                                    if question & _words(c["text"])] for side in "ab"})
        candidates = sections.get("CANDIDATES", [])
        return json.dumps({"evidence": [c["id"] for c in candidates if question & _words(c["text"])]})
    return json.dumps({"answer": "ok"})


class LLMTestServer:
    """A real HTTP server in a background thread; ``url`` ends in /v1; use as a context manager."""

    def __init__(
        self,
        responder: Callable[[dict], str] = fake_llm,
        latency_s: float = 0.0,
        model: str = "test-model",
        keep_requests: bool = True,
    ) -> None:
        self.responder = responder
        self.latency_s = latency_s
        self.model = model
        self.keep_requests = keep_requests
        self.requests = 0  # every request that reached /chat/completions, faults included
        self.in_flight = 0
        self.peak_in_flight = 0  # the most requests the server was answering at once
        self.received: list[dict] = []
        self.authorizations: set[str] = set()
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def inject(self, reply: Reply, times: int = 1, match: Callable[[dict], bool] | None = None) -> None:
        """Answer the next ``times`` requests for which ``match(request)`` holds with ``reply``."""
        with self._lock:
            self._faults.append(_Fault(reply, times, match))

    def clear_faults(self) -> None:
        """Forget every injected fault: the server is healthy from now on."""
        with self._lock:
            self._faults.clear()

    def _pick(self, request: dict) -> Reply:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and (fault.match is None or fault.match(request)):
                    fault.times -= 1
                    return fault.reply
        return Reply()

    def _completion(self, request: dict, reply: Reply) -> bytes:
        content = reply.content if reply.content is not None else self.responder(request)
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in request.get("messages", [])) // 4
        body = {
            "id": f"chatcmpl-{self.requests}",
            "object": "chat.completion",
            "created": 0,
            "model": request.get("model", self.model),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": reply.finish_reason}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(content) // 4 + 1,
                "total_tokens": prompt_tokens + len(content) // 4 + 1,
            },
        }
        encoded = json.dumps(body).encode()
        return encoded.replace(reply.patch[0].encode(), reply.patch[1]) if reply.patch else encoded

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                payload = await reader.readexactly(int(headers.get("content-length", "0")))
                status, extra, body = await self._route(method, path, headers, payload)
                if status is None:  # drop the connection
                    writer.transport.abort()
                    return
                reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}.get(status, "Error")
                head_out = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}"]
                head_out += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(head_out) + "\r\n\r\n").encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()

    async def _route(self, method: str, path: str, headers: dict, payload: bytes):
        if method == "GET" and path.endswith("/models"):
            return 200, {}, json.dumps({"object": "list", "data": [{"id": self.model, "object": "model"}]}).encode()
        if method != "POST" or not path.endswith("/chat/completions"):
            return 404, {}, b'{"error": {"message": "not found"}}'
        request = json.loads(payload)
        self.requests += 1
        if self.keep_requests:
            self.received.append(request)
        if "authorization" in headers:
            self.authorizations.add(headers["authorization"])
        reply = self._pick(request)
        delay = self.latency_s + reply.delay_s
        self.in_flight += 1  # requests being answered now, as the server sees them
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if delay:
                await asyncio.sleep(delay)
        finally:
            self.in_flight -= 1
        if reply.drop:
            return None, {}, b""
        if reply.status != 200:
            message = reply.body or json.dumps({"error": {"message": f"scripted {reply.status}", "type": "test"}})
            return reply.status, reply.headers, message.encode()
        body = reply.body.encode() if reply.body is not None else self._completion(request, reply)
        return 200, reply.headers, body

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> "LLMTestServer":
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._shutdown())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="llm-test-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the LLM test server did not start within 10 s")
        return self

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> "LLMTestServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()

    async def serve() -> None:
        server = LLMTestServer(latency_s=args.latency, keep_requests=False)
        listener = await asyncio.start_server(server._handle, "127.0.0.1", args.port, backlog=4096)
        server.port = listener.sockets[0].getsockname()[1]
        print(server.url, flush=True)
        async with listener:
            await listener.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
