"""Configuration of the corpus-to-chunks stage: how documents are read, cleaned, filtered and cut."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CorpusConfig(BaseModel):
    """Everything that decides which documents become which chunks (goes into the manifest)."""

    model_config = ConfigDict(extra="forbid")

    # Reading. Field/column names for JSONL and Parquet; an encoding for files that are not UTF-8
    # (None: UTF-8, else detected with charset-normalizer, else the file is skipped).
    text_field: str = "text"
    id_field: str = "id"
    title_field: str = "title"
    encoding: str | None = None
    # A document (file, JSONL line or Parquet cell) larger than this is skipped as ``too_long``
    # before it is decoded, so one huge input cannot exhaust memory.
    max_doc_bytes: int = Field(default=64_000_000, ge=1)

    # Cleaning.
    unicode_form: Literal["NFC", "NFKC"] = "NFC"
    strip_gutenberg: bool = True
    # When > 0, a line of at least 30 characters seen more than this many times in one document is
    # boilerplate (running heads and footers, repeated licence lines) and removed. Off by default:
    # on the dev corpus it also removes real repeated content (RFC packet diagrams, MIB clauses).
    max_line_repeats: int = Field(default=0, ge=0)
    min_doc_chars: int = Field(default=1000, ge=0)

    # Language filter (py3langid); language=None keeps every document.
    language: str | None = "en"
    min_language_score: float = Field(default=0.5, ge=0.0, le=1.0)

    # Segmentation into retrieval units: "sentencizer" (spaCy blank + sentencizer), "regex"
    # (a faster punctuation rule), or the name of an installed spaCy pipeline.
    segmenter: str = "sentencizer"
    min_unit_tokens: int = Field(default=20, ge=1)
    max_unit_tokens: int = Field(default=64, ge=2)

    # Tokenization and chunking.
    tokenizer: str = "EleutherAI/gpt-neox-20b"
    chunk_tokens: int = Field(default=2000, ge=8)
    min_chunk_tokens: int = Field(default=200, ge=1)

    # Decontamination: chunks sharing word n-grams with these evaluation documents are dropped
    # when the fraction of their units that share one exceeds the threshold.
    decontaminate: list[str] = Field(default_factory=list)
    decontamination_ngram: int = Field(default=13, ge=3)
    decontamination_threshold: float = Field(default=0.01, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_sizes(self) -> "CorpusConfig":
        if self.max_unit_tokens < self.min_unit_tokens:
            raise ValueError(
                f"max_unit_tokens ({self.max_unit_tokens}) must be >= min_unit_tokens ({self.min_unit_tokens})"
            )
        # The largest possible unit: short sentences (< min) + one sentence (<= max), plus a short
        # tail merged into it. Every unit must fit in a chunk.
        largest_unit = self.max_unit_tokens + 2 * self.min_unit_tokens
        if self.chunk_tokens < largest_unit:
            raise ValueError(
                f"chunk_tokens ({self.chunk_tokens}) must be >= max_unit_tokens + 2 * min_unit_tokens "
                f"({largest_unit}); raise chunk_tokens or lower the unit sizes"
            )
        return self
