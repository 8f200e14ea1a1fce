"""An async chat client for any OpenAI-compatible server, with the production habits built in.

``LLMClient.chat`` looks the request up in the response cache, and only on a miss sends it,
under a concurrency bound (``asyncio.Semaphore``) and a client-side rate limit (requests and
tokens per minute), with a per-request timeout and retries (exponential backoff with jitter,
honouring Retry-After) on 429, 5xx, timeouts and dropped connections, up to ``max_attempts`` in
total. The openai package's own retries are switched off (``max_retries=0``) so these are the
ones that count. Identical requests in flight at once are sent once. Tokens, cost, cache hits and
failures are counted per stage in ``client.usage``.

The API key is passed in by the caller and kept only inside the openai client; it is never
logged, cached or put in an error message.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from linkscan.generators.llm import quirks
from linkscan.generators.llm.cache import ResponseCache, cache_key
from linkscan.generators.llm.config import LLMConfig
from linkscan.generators.llm.ratelimit import RateLimiter
from linkscan.generators.llm.usage import TokenUsage, UsageTracker

log = logging.getLogger("linkscan")

# Sent by the openai package when no key is needed (local servers accept anything).
_NO_KEY = "not-needed"
_CONNECTIONS_PER_POOL = 16
_MAX_RETRY_AFTER_S = 600.0
# What to change when a request keeps failing for this reason.
_HINTS = {
    "timeout": "raise llm.timeout_s or lower llm.max_tokens",
    "rate_limited": "lower llm.concurrency or set llm.rpm / llm.tpm to the account's limits",
    "server_error": "the server keeps failing; check it, then rerun to resume",
    "connection_error": "check llm.base_url and that the server is up, then rerun to resume",
    "bad_response": "the server does not answer like an OpenAI chat completions endpoint; check llm.base_url",
}
# Reasons a request may succeed later (the server was down, busy or slow): its chunk waits for a
# rerun instead of being dropped. Every other failure (a 4xx, a prompt over the context, an answer
# over max_response_bytes) would fail again the same way, and is a counted, final drop.
TRANSIENT_REASONS = frozenset(_HINTS)


@dataclass(frozen=True)
class LLMResponse:
    text: str
    usage: TokenUsage
    cached: bool
    finish_reason: str | None = None


class LLMRequestError(Exception):
    """A request failed for good (after its retries); ``reason`` is counted in the manifest, and
    ``transient`` says whether the same request may work later (see ``TRANSIENT_REASONS``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    @property
    def transient(self) -> bool:
        return self.reason in TRANSIENT_REASONS


class LLMFatalError(RuntimeError):
    """Every request would fail the same way (bad key, unknown model, wrong URL): stop the run."""


def _retry_after_seconds(headers) -> float | None:
    """Seconds from a Retry-After (seconds or HTTP date) or retry-after-ms header."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, when.timestamp() - time.time()) if when else None


def _estimate_tokens(messages: list[dict]) -> int:
    return sum(len(str(m.get("content", ""))) for m in messages) // 4 + 4 * len(messages)


class LLMClient:
    """``await client.chat(messages, stage, response_format=...)`` against ``config.base_url``.

    Create it inside the event loop that uses it (or let the first ``chat`` do so); call
    ``await client.aclose()`` when done. ``cache_path`` is usually ``<data>/cache/llm.sqlite``;
    None disables caching.
    """

    def __init__(
        self,
        config: LLMConfig,
        *,
        api_key: str | None = None,
        cache_path: Path | str | None = None,
        on_usage: Callable[[UsageTracker], None] | None = None,
    ) -> None:
        self.config = config
        self._api_key = api_key or _NO_KEY
        self.cache = ResponseCache(cache_path) if cache_path else None
        self.usage = UsageTracker()
        self._price = config.price()
        self._random = random.Random()  # jitter from OS entropy: shard workers must not retry in step
        # A fallback learned by an earlier run against this server (kept in the cache) is where this
        # client starts, so a rerun finds its cached answers without asking the server first.
        learned = self.cache.learned_format(config.base_url, config.model, config.structured_output) if self.cache else None
        self._structured = learned or config.structured_output
        self._openai: list | None = None
        self._pool_load: list[int] = []
        self._loop = None
        self._semaphore: asyncio.Semaphore | None = None
        self._limiter: RateLimiter | None = None
        self._pending: dict[str, asyncio.Future] = {}
        self._given_up_in_a_row = 0
        self._outage: LLMRequestError | None = None
        if on_usage is not None:  # e.g. a progress display that shows this client's numbers live
            on_usage(self.usage)

    def __repr__(self) -> str:  # never show the key
        return f"LLMClient(base_url={self.config.base_url!r}, model={self.config.model!r})"

    def _bind_loop(self) -> None:
        """(Re)create the HTTP pools, semaphore and limiter for the running loop.

        Connections are split over several small pools: httpx scans its whole pool for every
        request, so 4 pools of 16 connections cost a quarter of the CPU of one pool of 64.
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        import httpx2
        import openai

        pools = -(-self.config.concurrency // _CONNECTIONS_PER_POOL)
        per_pool = -(-self.config.concurrency // pools)
        limits = httpx2.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        self._openai = [
            openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.config.base_url,
                max_retries=0,
                timeout=self.config.timeout_s,
                http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=self.config.timeout_s),
            )
            for _ in range(pools)
        ]
        self._pool_load = [0] * pools
        self._semaphore = asyncio.Semaphore(self.config.concurrency)
        self._limiter = RateLimiter(self.config.rpm, self.config.tpm)
        self._pending = {}
        self._loop = loop

    async def aclose(self) -> None:
        for client in self._openai or ():
            await client.close()
        self._openai = None
        self._loop = None

    def close_cache(self) -> None:
        if self.cache is not None:
            self.cache.close()

    def _params(self, params: dict) -> dict:
        merged = {"temperature": self.config.temperature, self.config.token_limit_param: self.config.max_tokens}
        if self.config.seed is not None:
            merged["seed"] = self.config.seed
        merged.update(params)
        return merged

    async def chat(
        self,
        messages: list[dict],
        stage: str,
        response_format: dict | None = None,
        **params,
    ) -> LLMResponse:
        """One chat completion, from the cache when possible; raises LLMRequestError on failure.

        ``response_format`` is the JSON-schema format to ask for; whether it is sent as
        ``json_schema``, degraded to ``json_object`` or left out depends on the config and on
        what the server accepts (``quirks``). The cache key is the request as sent, so an answer
        obtained in one structured-output mode is never reused for another, and a rerun that
        falls back the same way finds it.
        """
        request_params = self._params(params)
        usage = self.usage.stage(stage)
        while True:
            mode = self._structured
            extra = quirks.format_params(mode, response_format)
            key = cache_key(self.config.model, messages, {**request_params, "response_format": extra.get("response_format")})
            if self.cache is not None:
                hit = self.cache.get(key)
                if hit is not None:
                    usage.cache_hits += 1
                    usage.cached_tokens += hit.prompt_tokens + hit.completion_tokens
                    return _read_completion(hit.response, cached=True)
            self._bind_loop()
            request = _Request(key, stage, messages, mode, {**request_params, **extra})
            try:
                return await self._send_shared(request)
            except _FormatRejected as rejected:
                if self._structured == mode:  # the first request to see it degrades for all later ones
                    self._structured = quirks.FORMAT_FALLBACK[mode]
                    log.warning("%s: HTTP %d with response_format %s; using %s from now on (%s)",
                                self.config.base_url, rejected.status, mode, self._structured, rejected.message)
                    if self.cache is not None:
                        self.cache.learn_format(self.config.base_url, self.config.model,
                                                self.config.structured_output, self._structured)
            except _ModeChanged:
                pass  # another request degraded the mode while this one waited: ask again in the new one

    async def _send_shared(self, request: "_Request") -> LLMResponse:
        """``_send``, but identical requests in flight at once are sent once and share the answer."""
        usage = self.usage.stage(request.stage)
        key = request.key
        pending = self._pending.get(key)
        if pending is not None:
            response = await asyncio.shield(pending)
            usage.cache_hits += 1
            usage.cached_tokens += response.usage.total_tokens
            return LLMResponse(response.text, response.usage, True, response.finish_reason)
        future = self._loop.create_future()
        self._pending[key] = future
        try:
            response = await self._send(request)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: there may be no waiter
            raise
        else:
            future.set_result(response)
            return response
        finally:
            del self._pending[key]

    async def _send(self, request: "_Request") -> LLMResponse:
        """Send one request, retrying what may pass on a later attempt, up to ``max_attempts``."""
        stage = request.stage
        usage = self.usage.stage(stage)
        if self._outage is not None:  # the server has been failing every request: do not queue more
            usage.failures[self._outage.reason] += 1
            raise LLMRequestError(self._outage.reason, self._outage.detail)
        reserved = _estimate_tokens(request.messages) + request.body.get(self.config.token_limit_param, 0)
        for attempt in range(1, self.config.max_attempts + 1):
            await self._limiter.acquire(reserved)
            async with self._semaphore:
                if "response_format" in request.body and self._structured != request.mode:
                    raise _ModeChanged()  # not sent: it would be refused like the one that degraded the mode
                self.usage.in_flight += 1
                usage.attempts += 1
                try:
                    body = await asyncio.wait_for(self._post(request), self.config.timeout_s)
                    response = _read_completion(body, cached=False)
                except Exception as error:  # noqa: BLE001 - every failure is classified below
                    failure = self._classify(error, request.mode if "response_format" in request.body else None)
                else:
                    self._record_success(request, body, response, reserved)
                    return response
                finally:
                    self.usage.in_flight -= 1
            if not failure.retry:
                usage.failures[failure.reason] += 1
                raise LLMRequestError(failure.reason, failure.detail)
            if attempt < self.config.max_attempts:
                usage.retries += 1
                usage.retry_reasons[failure.reason] += 1
                await asyncio.sleep(self._backoff(attempt, failure.retry_after))
        usage.failures[failure.reason] += 1
        detail = f"{failure.detail} (gave up after {self.config.max_attempts} attempts; {_HINTS[failure.reason]})"
        log.warning("%s: %s request to %s failed: %s", stage, self.config.model, self.config.base_url, detail)
        self._given_up_in_a_row += 1
        if self._given_up_in_a_row >= self.config.outage_after:
            self._outage = LLMRequestError(failure.reason, f"{detail}; {self._given_up_in_a_row} requests in a row "
                                                           "failed, so no more are sent in this run")
        raise LLMRequestError(failure.reason, detail)

    def _classify(self, error: Exception, format_mode: str | None) -> "_Failure":
        """What a failed attempt means: retry it, give it up, or stop the run (``LLMFatalError``);
        ``format_mode`` is the structured-output mode the request asked in (None: no format)."""
        import openai

        if isinstance(error, (openai.APITimeoutError, TimeoutError)):
            return _Failure("timeout", f"no answer within {self.config.timeout_s:g} s")
        if isinstance(error, openai.APIConnectionError):
            return _Failure("connection_error", type(error.__cause__ or error).__name__)
        if isinstance(error, _TooLarge):
            return _Failure("too_large", str(error), retry=False)
        if isinstance(error, _BadResponse):
            return _Failure("bad_response", str(error))
        if not isinstance(error, openai.APIStatusError):
            raise error
        status, message = error.status_code, _short(_error_message(error), 300)
        if status in (401, 403):
            raise LLMFatalError(
                f"{self.config.base_url}: HTTP {status} for model {self.config.model!r}; "
                f"check the API key in the environment variable {self.config.api_key_env}"
            ) from None
        if status == 404:
            raise LLMFatalError(
                f"{self.config.base_url}: HTTP 404 for model {self.config.model!r}; "
                "check llm.base_url (it usually ends in /v1) and llm.model"
            ) from None
        if format_mode is not None and quirks.is_format_rejection(status, message, format_mode):
            raise _FormatRejected(status, message)
        if status == 429:
            return _Failure("rate_limited", "HTTP 429", retry_after=_retry_after_seconds(error.response.headers))
        if status >= 500 or status in (408, 409):
            return _Failure("server_error", f"HTTP {status}", retry_after=_retry_after_seconds(error.response.headers))
        if quirks.is_context_length_error(message):
            return _Failure("context_length", f"HTTP {status}: {message}", retry=False)
        return _Failure(f"http_{status}", message, retry=False)

    def _record_success(self, request: "_Request", body: str, response: "LLMResponse", reserved: int) -> None:
        usage = self.usage.stage(request.stage)
        self._given_up_in_a_row = 0
        self._limiter.settle(reserved, response.usage.total_tokens)
        usage.requests += 1
        usage.prompt_tokens += response.usage.prompt_tokens
        usage.completion_tokens += response.usage.completion_tokens
        if self._price is not None:
            usage.cost_usd += (response.usage.prompt_tokens * self._price.input
                               + response.usage.completion_tokens * self._price.output) / 1e6
        if self.cache is not None:
            self.cache.put(request.key, self.config.model, request.stage, body, response.usage.prompt_tokens,
                           response.usage.completion_tokens)

    async def _post(self, request: "_Request") -> str:
        """The raw response body, read up to ``max_response_bytes`` (a larger one raises _TooLarge).

        The openai client's generic post (its errors, headers and auth) without the per-call
        transform of ``chat.completions.create`` (about 1 ms of CPU per request) or pydantic, and
        with the body streamed, so a hostile or broken server cannot fill the memory.
        """
        import httpx2
        from openai._constants import RAW_RESPONSE_HEADER

        limit = self.config.max_response_bytes
        pool = min(range(len(self._pool_load)), key=self._pool_load.__getitem__)
        self._pool_load[pool] += 1
        try:
            response = await self._openai[pool].post(
                "/chat/completions",
                cast_to=httpx2.Response,
                body={"model": self.config.model, "messages": request.messages, **request.body},
                options={"headers": {RAW_RESPONSE_HEADER: "stream"}},
            )
            try:
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > limit:
                    raise _TooLarge(f"the server announced {int(declared):,} bytes (llm.max_response_bytes is {limit:,})")
                body = bytearray()
                async for piece in response.aiter_bytes():
                    body += piece
                    if len(body) > limit:
                        raise _TooLarge(f"the answer passed llm.max_response_bytes ({limit:,} bytes)")
            finally:
                await response.aclose()
        finally:
            self._pool_load[pool] -= 1
        return body.decode("utf-8", errors="replace")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff; a server's Retry-After is a floor (up to 10 minutes)."""
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempt - 1))
        delay = self._random.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, _MAX_RETRY_AFTER_S))
        return delay


class _BadResponse(Exception):
    pass


class _TooLarge(Exception):
    """An answer over ``max_response_bytes``: never parsed, never cached, not retried."""


class _ModeChanged(Exception):
    """The structured-output mode changed while a request waited to be sent."""


class _FormatRejected(Exception):
    """The server does not take the response_format of the current structured-output mode."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class _Request:
    key: str  # in the response cache
    stage: str
    messages: list[dict]
    mode: str  # the structured-output mode the body asks in
    body: dict  # sampling parameters and response_format, as sent


@dataclass(frozen=True)
class _Failure:
    reason: str
    detail: str
    retry: bool = True
    retry_after: float | None = None


def _error_message(error) -> str:
    """The server's own words in an HTTP error (the openai package keeps the JSON body's message)."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return str(message)
    return str(getattr(error, "message", "") or error)


def _short(text: object, limit: int = 200) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def _read_completion(body: str, cached: bool) -> LLMResponse:
    """Text, usage and finish reason out of a raw chat-completion body (cheap: no pydantic)."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        usage = data.get("usage") or {}
        return LLMResponse(
            text=text,
            usage=TokenUsage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
            cached=cached,
            finish_reason=choice.get("finish_reason"),
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        raise _BadResponse(f"not a chat completion ({type(error).__name__}): {_short(body, 120)!r}") from None
