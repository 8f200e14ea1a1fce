"""LLM client throughput against the test server, and cached lookups per second.

    .venv/bin/python benchmarks/bench_llm_client.py [--requests 2000] [--latency 0.2] [--concurrency 64]

The server (tests/llm_server.py, asyncio) runs in its own process so it does not share the
client's CPU time slice. Three measurements, each the median of ``--repeats`` runs:

1. ``LLMClient.chat`` with the cache off: sustained requests/s (ideal: concurrency / latency);
2. the plain openai ``AsyncOpenAI.chat.completions.create`` under the same semaphore, side by side;
3. ``LLMClient.chat`` served from a warm SQLite cache: lookups/s.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from linkscan.generators.llm import prompts  # noqa: E402
from linkscan.generators.llm.client import LLMClient  # noqa: E402
from linkscan.generators.llm.config import LLMConfig  # noqa: E402


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.llm_server", "--latency", str(latency)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        raise RuntimeError("the test server did not print its URL")
    return process, url


def messages(i: int) -> list[dict]:
    return prompts.evidence_messages(f"Which clause of contract {i} sets the notice period?", [
        "The notice period is ninety days.", f"Contract {i} was signed in Geneva.", "Either party may end it.",
    ])


async def run_client(config: LLMConfig, n: int, cache_path: Path | None) -> float:
    client = LLMClient(config, api_key="bench", cache_path=cache_path)
    started = time.perf_counter()
    await asyncio.gather(*(client.chat(messages(i), "evidence", response_format=prompts.EVIDENCE_FORMAT) for i in range(n)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    client.close_cache()
    return n / elapsed


async def run_plain_openai(url: str, n: int, concurrency: int) -> float:
    import httpx2
    import openai

    http_client = openai.DefaultAsyncHttpxClient(limits=httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))
    client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0, http_client=http_client)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with semaphore:
            await client.chat.completions.create(model="bench-model", messages=messages(i), temperature=0, max_tokens=256)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - started
    await client.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--cached", type=int, default=5000, help="cached lookups per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    process, url = start_server(args.latency)
    try:
        config = LLMConfig(base_url=url, model="bench-model", concurrency=args.concurrency, max_tokens=256, timeout_s=30)
        live, plain, cached = [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for repeat in range(args.repeats):
                live.append(asyncio.run(run_client(config, args.requests, None)))
                plain.append(asyncio.run(run_plain_openai(url, args.requests, args.concurrency)))
            cache_path = Path(tmp) / "llm.sqlite"
            fast = config.model_copy(update={"concurrency": 256})
            asyncio.run(run_client(fast, args.cached, cache_path))  # fill the cache
            for repeat in range(args.repeats):
                cached.append(asyncio.run(run_client(fast, args.cached, cache_path)))
    finally:
        process.kill()
        process.wait()

    ideal = args.concurrency / args.latency
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"server latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}, {args.requests} requests x {args.repeats}")
    print(f"ideal                       {ideal:8.1f} req/s")
    print(f"LLMClient (cache off)       {statistics.median(live):8.1f} req/s  (runs: {', '.join(f'{x:.1f}' for x in live)}; "
          f"{statistics.median(live) / ideal:.2f} of ideal)")
    print(f"plain openai AsyncOpenAI    {statistics.median(plain):8.1f} req/s  (runs: {', '.join(f'{x:.1f}' for x in plain)}; "
          f"LLMClient / plain = {statistics.median(live) / statistics.median(plain):.2f})")
    print(f"LLMClient cached lookups    {statistics.median(cached):8.0f} /s     (runs: {', '.join(f'{x:.0f}' for x in cached)}; "
          f"{args.cached} lookups each)")


if __name__ == "__main__":
    main()
