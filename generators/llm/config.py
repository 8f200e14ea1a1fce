"""Configuration of the LLM back end: which server, which model, how fast, what it costs.

The API key is never part of the config: the config names the environment variable that holds
it (``api_key_env``), and the caller (flow or CLI) resolves it with :func:`resolve_api_key` and
hands the value to :class:`~linkscan.generators.llm.client.LLMClient`. So the config can go into the
manifest, the card and Prefect's parameter store without leaking the key.
"""
from __future__ import annotations

from typing import Literal, Mapping

from pydantic import BaseModel, Field, field_validator


class Price(BaseModel):
    """US dollars per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


# List prices at the time of writing; override or extend with ``prices`` in the config. A model
# missing from the table is counted with cost 0 and flagged as ``unpriced`` in the usage totals.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(input=0.15, output=0.60),
    "gpt-4o-mini-2024-07-18": Price(input=0.15, output=0.60),
    "gpt-4o": Price(input=2.50, output=10.00),
    "gpt-4o-2024-08-06": Price(input=2.50, output=10.00),
    "gpt-4.1-mini": Price(input=0.40, output=1.60),
    "gpt-4.1-nano": Price(input=0.10, output=0.40),
}

StructuredOutput = Literal["json_schema", "json_object", "none"]


class LLMConfig(BaseModel):
    """How to reach an OpenAI-compatible chat server (OpenAI, vLLM, Ollama, llama.cpp)."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    # Name of the environment variable holding the key; local servers need none (leave it unset).
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=1024, ge=1)
    # OpenAI's reasoning models take "max_completion_tokens" instead of "max_tokens".
    token_limit_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    seed: int | None = 0
    # The links prompt shows this many window units: those sharing the most rare terms with the
    # anchor (the offline generator's weights), in document order; 0 shows the whole window, as the
    # paper did. A shortlist is a few hundred prompt tokens instead of thousands, and a small model
    # picks real links from it far more often; an anchor that shares no rare term with any far unit
    # is passed over without a request.
    link_candidates: int = Field(default=8, ge=0)
    # A draft question that fails the method's checks (one-sided, a copied sentence) is sent back
    # with what to change this many times before it counts as a failed attempt: one more short
    # request instead of a new anchor's three.
    question_revisions: int = Field(default=1, ge=0)
    # Ask for JSON through response_format: "json_schema" (strict structured output), "json_object",
    # or "none" (the prompt alone asks for JSON). A server that rejects one falls back to the next.
    structured_output: StructuredOutput = "json_schema"
    concurrency: int = Field(default=16, ge=1)
    rpm: int | None = Field(default=None, ge=1)  # requests per minute (client-side token bucket)
    tpm: int | None = Field(default=None, ge=1)  # tokens per minute (prompt estimate + max_tokens)
    timeout_s: float = Field(default=120.0, gt=0)  # per request
    max_attempts: int = Field(default=6, ge=1)  # total attempts per request, first one included
    backoff_base_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    # After this many requests in a row given up on for a transient reason (the server is down),
    # the rest of the run sends no more: their chunks wait for a rerun, which retries them.
    outage_after: int = Field(default=3, ge=1)
    # An answer larger than this is not read further (a broken or hostile server): a final drop,
    # counted as too_large, never cached.
    max_response_bytes: int = Field(default=1_000_000, ge=1024)
    prices: dict[str, Price] = Field(default_factory=dict)  # merged over DEFAULT_PRICES

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"llm.base_url {value!r}: give a full URL such as http://127.0.0.1:8000/v1")
        return value.rstrip("/")

    def price(self) -> Price | None:
        """This model's price, from ``prices`` first, then the default table."""
        return self.prices.get(self.model) or DEFAULT_PRICES.get(self.model)

    def output_fields(self) -> dict:
        """The settings that change what the model answers (and so belong in a dataset version id).

        Throughput settings (concurrency, rate limits, timeouts, retries) and prices do not; the
        prompt version does.
        """
        from linkscan.generators.llm.prompts import PROMPT_VERSION

        fields = self.model_dump(mode="json", include={"model", "temperature", "max_tokens", "seed", "structured_output", "link_candidates",
                                                         "question_revisions"})
        return {**fields, "prompt_version": PROMPT_VERSION}


class MissingAPIKeyError(RuntimeError):
    pass


def resolve_api_key(config: LLMConfig, environ: Mapping[str, str]) -> str | None:
    """The API key from ``environ[config.api_key_env]``; None is fine for a local server.

    Called by flows and the CLI with ``os.environ``; the library never reads the environment.
    """
    key = environ.get(config.api_key_env) if config.api_key_env else None
    if key:
        return key
    if "api.openai.com" in config.base_url:
        raise MissingAPIKeyError(
            f"{config.base_url} needs an API key: set the environment variable {config.api_key_env} "
            "(or name another one with llm.api_key_env)"
        )
    return None
