"""The LLM client against a real HTTP server: cache, retries, faults, limits, accounting, secrecy."""
from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from linkscan.generators.llm import prompts
from linkscan.generators.llm.cache import ResponseCache, cache_key
from linkscan.generators.llm.client import LLMClient, LLMFatalError, LLMRequestError
from linkscan.generators.llm.usage import merge_usage
from linkscan.generators.llm.config import LLMConfig, MissingAPIKeyError, Price, resolve_api_key
from linkscan.generators.llm.ratelimit import RateLimiter, TokenBucket
from tests.llm_server import LLMTestServer, Reply, request_stage

KEY = "sk-test-0123456789-do-not-leak"
MESSAGES = prompts.evidence_messages("Who founded the Grendal mill?", ["Ada Lark founded the Grendal mill.", "It rained."])


@pytest.fixture()
def server():
    with LLMTestServer() as running:
        yield running


def make_client(server: LLMTestServer, tmp_path, **overrides) -> LLMClient:
    settings = dict(base_url=server.url, model="test-model", backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=2)
    settings.update(overrides)
    return LLMClient(LLMConfig(**settings), api_key=KEY, cache_path=tmp_path / "cache" / "llm.sqlite")


async def ask(client: LLMClient, messages=MESSAGES, stage="evidence"):
    try:
        return await client.chat(messages, stage, response_format=prompts.EVIDENCE_FORMAT)
    finally:
        await client.aclose()


def test_answer_comes_back_with_usage_and_the_key_is_sent_as_bearer(server, tmp_path):
    response = asyncio.run(ask(make_client(server, tmp_path)))
    assert response.text == '{"evidence": [0]}'
    assert response.cached is False
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    assert server.authorizations == {f"Bearer {KEY}"}


def test_second_identical_request_is_served_from_the_cache(server, tmp_path):
    first = asyncio.run(ask(make_client(server, tmp_path)))
    client = make_client(server, tmp_path)
    second = asyncio.run(ask(client))
    assert server.requests == 1
    assert second.cached is True and second.text == first.text and second.usage == first.usage
    assert client.usage.stage("evidence").cache_hits == 1
    assert client.usage.stage("evidence").requests == 0


def test_cache_key_changes_with_model_messages_and_parameters():
    base = cache_key("m", MESSAGES, {"temperature": 0})
    assert base == cache_key("m", [dict(m) for m in MESSAGES], {"temperature": 0})
    assert base != cache_key("m2", MESSAGES, {"temperature": 0})
    assert base != cache_key("m", MESSAGES[:1], {"temperature": 0})
    assert base != cache_key("m", MESSAGES, {"temperature": 0.7})


def test_identical_requests_in_flight_together_reach_the_server_once(server, tmp_path):
    server.latency_s = 0.2
    client = make_client(server, tmp_path)

    async def both():
        try:
            return await asyncio.gather(*(client.chat(MESSAGES, "evidence") for _ in range(5)))
        finally:
            await client.aclose()

    answers = asyncio.run(both())
    assert server.requests == 1
    assert {a.text for a in answers} == {'{"evidence": [0]}'}
    assert client.usage.stage("evidence").requests == 1


@pytest.mark.parametrize(
    "fault, reason",
    [
        (Reply(status=429, headers={"retry-after": "0"}), "rate_limited"),
        (Reply(status=500), "server_error"),
        (Reply(status=503), "server_error"),
        (Reply(drop=True), "connection_error"),
        (Reply(delay_s=1.0), "timeout"),
        (Reply(body="<html>502 bad gateway</html>"), "bad_response"),
    ],
)
def test_transient_faults_are_retried_until_an_answer_comes(server, tmp_path, fault, reason):
    server.inject(fault, times=2)
    client = make_client(server, tmp_path, timeout_s=0.5)
    response = asyncio.run(ask(client))
    usage = client.usage.stage("evidence")
    assert response.text == '{"evidence": [0]}'
    assert (server.requests, usage.attempts, usage.retries, usage.requests) == (3, 3, 2, 1)
    assert usage.retry_reasons == {reason: 2}
    assert usage.failures == {}


@pytest.mark.parametrize(
    "fault, reason",
    [
        (Reply(status=429), "rate_limited"),
        (Reply(status=500), "server_error"),
        (Reply(drop=True), "connection_error"),
        (Reply(delay_s=1.0), "timeout"),
    ],
)
def test_a_fault_that_persists_fails_after_max_attempts_under_its_reason(server, tmp_path, fault, reason):
    server.inject(fault, times=100)
    client = make_client(server, tmp_path, max_attempts=3, timeout_s=0.3)
    with pytest.raises(LLMRequestError) as raised:
        asyncio.run(ask(client))
    assert raised.value.reason == reason
    assert server.requests == 3
    assert client.usage.stage("evidence").failures == {reason: 1}
    assert len(client.cache) == 0  # failures are not cached: a rerun asks again


def test_retry_after_is_honoured(server, tmp_path):
    server.inject(Reply(status=429, headers={"retry-after": "0.6"}))
    client = make_client(server, tmp_path, backoff_base_s=0.0)
    started = time.monotonic()
    asyncio.run(ask(client))
    assert time.monotonic() - started >= 0.6
    assert server.requests == 2


def test_a_client_error_is_not_retried(server, tmp_path):
    server.inject(Reply(status=413), times=5)
    client = make_client(server, tmp_path)
    with pytest.raises(LLMRequestError) as raised:
        asyncio.run(ask(client))
    assert raised.value.reason == "http_413"
    assert server.requests == 1


def test_bad_key_stops_the_run_with_a_message_naming_the_variable(server, tmp_path):
    server.inject(Reply(status=401), times=5)
    with pytest.raises(LLMFatalError, match="OPENAI_API_KEY"):
        asyncio.run(ask(make_client(server, tmp_path)))


def test_server_rejecting_json_schema_falls_back_to_json_object_then_none(server, tmp_path):
    server.inject(Reply(status=400), times=1, match=lambda r: r.get("response_format", {}).get("type") == "json_schema")
    server.inject(Reply(status=400), times=1, match=lambda r: r.get("response_format", {}).get("type") == "json_object")
    client = make_client(server, tmp_path)
    response = asyncio.run(ask(client))
    assert response.text == '{"evidence": [0]}'
    assert [r.get("response_format", {}).get("type") for r in server.received] == ["json_schema", "json_object", None]


@pytest.mark.parametrize("message", [
    "This model's maximum context length is 4096 tokens. However, you requested 9000 tokens.",  # OpenAI, vLLM
    "the request exceeds the available context size, try increasing it",  # llama.cpp's llama-server
    "Requested tokens (5012) exceed context window of 2048",  # llama-cpp-python
])
def test_a_prompt_too_long_fails_that_request_without_giving_up_structured_output(server, tmp_path, message):
    too_long = json.dumps({"error": {"message": message, "type": "invalid_request_error"}})
    server.inject(Reply(status=400, body=too_long), times=1)
    client = make_client(server, tmp_path)
    with pytest.raises(LLMRequestError, match="context_length") as raised:
        asyncio.run(ask(client))
    assert raised.value.transient is False  # the same prompt would fail again: a final drop
    assert client.usage.stage("evidence").failures == {"context_length": 1}
    other = prompts.evidence_messages("Who ran the Grendal mill?", ["Ada Lark ran the Grendal mill.", "It rained."])
    asyncio.run(ask(client, messages=other))  # the next request still asks for json_schema
    assert [r.get("response_format", {}).get("type") for r in server.received] == ["json_schema", "json_schema"]


def test_concurrency_is_bounded_as_the_server_sees_it(server, tmp_path):
    server.latency_s = 0.1
    client = make_client(server, tmp_path, concurrency=3)

    async def run():
        try:
            questions = [prompts.evidence_messages(f"Question {i}?", ["a", "b"]) for i in range(12)]
            await asyncio.gather(*(client.chat(m, "evidence") for m in questions))
        finally:
            await client.aclose()

    asyncio.run(run())
    assert server.peak_in_flight == 3  # never more at once, and the bound was used
    assert server.requests == 12


def test_token_bucket_paces_requests_after_the_burst():
    now = [0.0]
    bucket = TokenBucket(per_minute=60, clock=lambda: now[0])  # 1 per second, burst of 60
    assert bucket.wait_time(60) == 0
    bucket._level -= 60
    assert bucket.wait_time(1) == pytest.approx(1.0)
    now[0] = 30.0
    assert bucket.wait_time(1) == 0 and bucket.wait_time(45) == pytest.approx(15.0)


def test_tokens_per_minute_reserve_the_estimate_and_refund_what_was_not_used():
    limiter = RateLimiter(rpm=None, tpm=1000, clock=lambda: 0.0)
    asyncio.run(limiter.acquire(800))
    assert limiter.tokens.wait_time(400) > 0
    limiter.settle(reserved=800, used=300)
    assert limiter.tokens.wait_time(400) == 0 and limiter.tokens.wait_time(800) > 0


def test_requests_per_minute_limit_slows_the_client(server, tmp_path):
    client = make_client(server, tmp_path, rpm=600)  # 10/s after a burst of 600

    async def run():
        client._bind_loop()
        client._limiter.requests._level = 0  # spend the burst, so the steady pace shows
        questions = [prompts.evidence_messages(f"Question {i}?", ["a", "b"]) for i in range(5)]
        started = time.monotonic()
        await asyncio.gather(*(client.chat(m, "evidence") for m in questions))
        await client.aclose()
        return time.monotonic() - started

    elapsed = asyncio.run(run())
    assert elapsed >= 0.45  # 5 requests at 10/s from an empty bucket


def test_cost_is_counted_per_stage_from_the_price_table(server, tmp_path):
    client = make_client(server, tmp_path, prices={"test-model": Price(input=1.0, output=2.0)})
    response = asyncio.run(ask(client))
    usage = client.usage.stage("evidence")
    expected = (response.usage.prompt_tokens * 1.0 + response.usage.completion_tokens * 2.0) / 1e6
    assert usage.cost_usd == pytest.approx(expected)
    assert client.usage.as_dict()["total"]["cost_usd"] == pytest.approx(expected, abs=1e-6)


def test_usage_from_shards_adds_up():
    one = {"stages": {"links": {"requests": 2, "cache_hits": 1, "attempts": 3, "retries": 1,
                                "retry_reasons": {"rate_limited": 1}, "failures": {"timeout": 1},
                                "prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 7, "cost_usd": 0.5}}}
    merged = merge_usage([one, one])
    assert merged["stages"]["links"]["requests"] == 4
    assert merged["stages"]["links"]["failures"] == {"timeout": 2}
    assert merged["stages"]["links"]["retry_reasons"] == {"rate_limited": 2}
    assert merged["total"]["cost_usd"] == 1.0 and merged["total"]["cached_tokens"] == 14


def test_key_never_reaches_logs_cache_or_repr(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server.inject(Reply(status=500))
    client = make_client(server, tmp_path)
    asyncio.run(ask(client))
    assert KEY not in caplog.text
    assert KEY not in repr(client)
    client.close_cache()
    for path in (tmp_path / "cache").iterdir():
        assert KEY.encode() not in path.read_bytes()


def test_api_key_comes_from_the_named_variable():
    config = LLMConfig(api_key_env="MY_LLM_KEY")
    assert resolve_api_key(config, {"MY_LLM_KEY": "abc"}) == "abc"
    with pytest.raises(MissingAPIKeyError, match="MY_LLM_KEY"):
        resolve_api_key(config, {})
    assert resolve_api_key(LLMConfig(base_url="http://127.0.0.1:8000/v1"), {}) is None


def test_server_classifies_stages_by_format_name():
    assert request_stage({"response_format": prompts.LINKS_FORMAT}) == "links"
    assert request_stage({"messages": prompts.question_messages("chunk", [["a"]])}) == "question"


def test_backoff_is_exponential_full_jitter_under_a_cap_with_retry_after_as_a_floor(server, tmp_path):
    config = dict(backoff_base_s=0.1, backoff_max_s=0.5)
    one, two = make_client(server, tmp_path, **config), make_client(server, tmp_path / "b", **config)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (8, 0.5)]:
        delays = [one._backoff(attempt, None) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # spread over [0, ceiling]
    assert all(one._backoff(1, 3.0) == 3.0 for _ in range(20))  # Retry-After beats a shorter draw
    # Two clients (two shard workers) do not draw the same delays, so their retries do not line up.
    assert [one._backoff(3, None) for _ in range(5)] != [two._backoff(3, None) for _ in range(5)]


def test_cache_is_in_wal_mode_so_workers_read_while_one_writes(tmp_path):
    import sqlite3

    ResponseCache(tmp_path / "c.sqlite").put("k", "m", "links", "{}", 1, 1)
    assert sqlite3.connect(tmp_path / "c.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cache_survives_reopening(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put("k", "m", "links", '{"x": 1}', 3, 4)
    cache.close()
    reopened = ResponseCache(tmp_path / "c.sqlite")
    assert reopened.get("k").response == '{"x": 1}' and reopened.get("k").completion_tokens == 4
    assert reopened.get("other") is None


def test_a_progress_board_shows_the_sum_of_the_clients_handed_to_it(server, tmp_path):
    import io

    from rich.console import Console

    from linkscan.generators.llm.progress import ProgressBoard

    board = ProgressBoard()
    settings = dict(base_url=server.url, model="test-model", timeout_s=2)
    for _ in range(2):  # the second answer comes from the cache
        client = LLMClient(LLMConfig(**settings), cache_path=tmp_path / "cache" / "llm.sqlite", on_usage=board.register)
        asyncio.run(ask(client))
    outside = make_client(server, tmp_path)
    asyncio.run(ask(outside))
    stages, in_flight = board.totals()
    assert (stages["total"].requests, stages["total"].cache_hits, in_flight) == (1, 1, 0)
    output = io.StringIO()
    Console(file=output, width=100, force_terminal=False).print(board)
    assert "evidence" in output.getvalue() and "cache hits" in output.getvalue()


def test_token_limit_goes_under_the_configured_parameter_name(server, tmp_path):
    asyncio.run(ask(make_client(server, tmp_path, token_limit_param="max_completion_tokens", max_tokens=77)))
    sent = server.received[0]
    assert sent["max_completion_tokens"] == 77 and "max_tokens" not in sent
    assert (sent["temperature"], sent["seed"], sent["model"]) == (0.0, 0, "test-model")


def test_a_final_failure_says_what_to_change(server, tmp_path):
    server.inject(Reply(status=429), times=10)
    with pytest.raises(LLMRequestError, match="llm.concurrency"):
        asyncio.run(ask(make_client(server, tmp_path, max_attempts=2)))


def _open_and_write(path: str, start, worker: int) -> int:
    start.wait()
    cache = ResponseCache(path)
    cache.put(f"k{worker}", "m", "links", '{"x": 1}', 1, 1)
    cache.close()
    return worker


def test_many_processes_opening_one_fresh_cache_at_once_all_succeed(tmp_path):
    # Shard workers of one run open the same new cache file at the same moment (the race that
    # once failed a flow with "database is locked" while switching the file to WAL mode).
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    for attempt in range(3):
        path = tmp_path / f"race{attempt}" / "llm.sqlite"
        with context.Manager() as manager:
            start = manager.Barrier(8)
            with ProcessPoolExecutor(8, mp_context=context) as pool:
                done = list(pool.map(_open_and_write, [str(path)] * 8, [start] * 8, range(8)))
        assert done == list(range(8))
        assert len(ResponseCache(path)) == 8


def test_after_an_outage_of_several_requests_in_a_row_no_more_are_sent(server, tmp_path):
    server.inject(Reply(status=503), times=10**6)
    client = make_client(server, tmp_path, max_attempts=2, outage_after=3)

    async def many() -> list[str]:
        reasons = []
        try:
            for index in range(6):
                messages = prompts.evidence_messages(f"Question {index} about the mill?", ["Ada ran the mill."])
                try:
                    await client.chat(messages, "evidence", response_format=prompts.EVIDENCE_FORMAT)
                except LLMRequestError as error:
                    assert error.transient
                    reasons.append(error.reason)
        finally:
            await client.aclose()
        return reasons

    assert asyncio.run(many()) == ["server_error"] * 6  # every request waits for a rerun...
    assert server.requests == 3 * 2  # ...but after 3 given up on, the other 3 were never sent
    assert client.usage.stage("evidence").failures == {"server_error": 6}


def test_a_rerun_after_a_format_fallback_is_served_from_the_cache_without_the_server(server, tmp_path):
    # llama-cpp-python's answer to json_schema: a 500 that names the format.
    refusal = json.dumps({"error": {"message": "Unsupported response_format type: json_schema", "code": 500}})
    server.inject(Reply(status=500, body=refusal), times=1)
    first = asyncio.run(ask(make_client(server, tmp_path)))
    assert [r.get("response_format", {}).get("type") for r in server.received] == ["json_schema", "json_object"]
    server.stop()  # the rerun starts where the first run ended up: json_object, found in the cache
    again = asyncio.run(ask(make_client(server, tmp_path, max_attempts=1)))
    assert again.cached and again.text == first.text


def test_requests_waiting_when_the_format_is_refused_are_not_sent_in_the_refused_format(server, tmp_path):
    refusal = json.dumps({"error": {"message": "response_format json_schema is not supported"}})
    server.inject(Reply(status=400, body=refusal, delay_s=0.2), times=1)
    client = make_client(server, tmp_path, concurrency=1)

    async def many():
        try:
            questions = [f"Who ran mill number {i}?" for i in range(4)]
            await asyncio.gather(*(client.chat(prompts.evidence_messages(q, ["Ada ran the mill."]), "evidence",
                                               response_format=prompts.EVIDENCE_FORMAT) for q in questions))
        finally:
            await client.aclose()

    asyncio.run(many())
    sent = [r.get("response_format", {}).get("type") for r in server.received]
    assert sent == ["json_schema", "json_object", "json_object", "json_object", "json_object"]
