"""Configuration of the generation stage, and loading it from a YAML file plus overrides.

One :class:`GenerateConfig` holds everything that decides a dataset version: the corpus and how it
is cut into chunks (:class:`linkscan.pipeline.config.CorpusConfig`), the method and its parameters, the back
end and its parameters, the seed and the number of shards. The resolved config goes into the
manifest; :func:`version_config` is the part of it that names the version.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from linkscan.generators.llm.config import LLMConfig
from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.settings import SettingsError, load_settings

Method = Literal["link", "chunk", "pair"]
Generator = Literal["offline", "llm"]


class LinkMethodConfig(BaseModel):
    """The link-based method; defaults are the paper's (PAPER.md section 2.2)."""

    model_config = ConfigDict(extra="forbid")

    anchor_units: int = Field(5, ge=1, description="consecutive units in an anchor")
    window_units: int = Field(
        200, ge=2, description="units around the anchor; the back end may link to those min_link_distance or more away"
    )
    min_link_distance: int = Field(10, ge=1, description="a kept link is at least this many units from the anchor")
    anchor_context: int = Field(2, ge=0, description="evidence candidates: the anchor +- this many units")
    link_context: int = Field(3, ge=0, description="evidence candidates: the link target +- this many units")
    anchor_attempts: int = Field(3, ge=1, description="anchors tried per chunk before giving up on it")
    max_evidence_share: float = Field(
        0.4, gt=0, le=1, description="evidence may hold at most this share of the candidates (more is no choice)"
    )


class PassageMethodConfig(BaseModel):
    """The chunk-based and pair-based methods (the paper's ablation)."""

    model_config = ConfigDict(extra="forbid")

    passage_units: int = Field(5, ge=1, description="consecutive units in a passage")
    passage_context: int = Field(2, ge=0, description="evidence candidates: each passage +- this many units")
    min_pair_distance: int = Field(10, ge=1, description="pair method: units between the two passages, at least")
    attempts: int = Field(3, ge=1, description="passages (or pairs) tried per chunk before giving up on it")
    max_evidence_share: float = Field(
        0.4, gt=0, le=1, description="evidence may hold at most this share of the candidates (more is no choice)"
    )


class OfflineConfig(BaseModel):
    """The offline back end (defaults tuned on the dev corpus)."""

    model_config = ConfigDict(extra="forbid")

    idf_scope: Literal["document", "chunk"] = Field(
        "document", description="count term frequencies over the units of the whole document, or of the chunk"
    )
    min_link_score: float = Field(5.0, ge=0, description="minimum summed weight of shared rare terms for a link")
    max_df_fraction: float = Field(0.05, gt=0, le=1, description="a term is rare in at most this share of units")
    min_rare_df: int = Field(3, ge=2, description="...or in at most this many units (for short chunks)")
    min_word_chars: int = Field(4, ge=1, description="content words shorter than this are ignored")
    name_weight: float = Field(1.5, ge=0, description="weight multiplier of capitalised names")
    phrase_weight: float = Field(2.0, ge=0, description="weight multiplier of two-word phrases")
    number_weight: float = Field(1.5, ge=0, description="weight multiplier of numbers")
    max_links_per_anchor: int = Field(8, ge=1, description="links returned per anchor, strongest first")


class GenerateConfig(BaseModel):
    """Everything `linkscan generate` needs; the YAML config file has the same fields."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("linkscan", description="dataset name under <data>/datasets/")
    corpus: list[str] = Field(default_factory=list, description="input files, folders or globs")
    method: Method = "link"
    generator: Generator = "offline"
    seed: int = 0
    num_shards: int = Field(8, ge=1, description="shards per artifact, cut over the corpus's content (fewer when it cannot be cut so finely)")
    # Chunks in flight at once within a shard; it matters for the LLM back end only, and does not
    # change the output (results are written in chunk order).
    concurrency: int = Field(16, ge=1)
    corpus_config: CorpusConfig = Field(default_factory=CorpusConfig)
    link: LinkMethodConfig = Field(default_factory=LinkMethodConfig)
    passage: PassageMethodConfig = Field(default_factory=PassageMethodConfig)
    offline: OfflineConfig = Field(default_factory=OfflineConfig)
    llm: LLMConfig | None = None
    # Publish even when chunks still wait for the LLM (a request given up on for a transient
    # reason). Such a version has its own id, says complete: false, and is not trained on by default.
    allow_partial: bool = Field(False, description="publish with chunks still pending (complete: false)")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        from linkscan.pipeline.store import is_valid_name

        if not is_valid_name(value):
            raise ValueError("use 1 to 100 letters, digits, '.', '_' and '-', starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _llm_needs_settings(self) -> "GenerateConfig":
        if self.generator == "llm" and self.llm is None:
            self.llm = LLMConfig()
        return self


def version_config(config: GenerateConfig, code: str | None = None) -> dict:
    """The fields that decide the output, for the version id.

    Left out: the corpus paths (the input fingerprints stand for the content), throughput
    settings (concurrency, the LLM's rate limits and retries) and the back end settings the
    chosen generator does not use. A local tokenizer and the
    decontamination documents count by their content, not their paths. ``code`` is the
    fingerprint of the generating code (default: this code's, ``linkscan.pipeline.store.code_fingerprint``;
    ``""``: none, as versions made before code fingerprints were named),
    so new validators or a cleaning fix make a new version instead of answering "already published".
    """
    from linkscan.pipeline.corpus import content_key, fingerprint_inputs
    from linkscan.pipeline.store import code_fingerprint
    from linkscan.pipeline.tokenize import tokenizer_identity

    fields = config.model_dump(mode="json", exclude={"corpus", "concurrency", "llm", "offline", "allow_partial"})
    if code != "":
        fields["code"] = code or code_fingerprint()
    # How shards are cut and deduplicated decides their bytes: content ranges, corpus-wide dedupe.
    fields["sharding"] = "content-ranges"
    if config.allow_partial:  # a partial version never takes the id (and the place) of the complete one
        fields["allow_partial"] = True
    corpus_fields = fields["corpus_config"]
    corpus_fields["tokenizer"] = tokenizer_identity(config.corpus_config.tokenizer)
    if config.corpus_config.decontaminate:  # the evaluation documents by content, like the corpus
        corpus_fields["decontaminate"] = content_key(fingerprint_inputs(config.corpus_config.decontaminate))
    if config.generator == "offline":
        fields["offline"] = config.offline.model_dump(mode="json")
    elif config.llm is not None:
        fields["llm"] = config.llm.output_fields()
    return fields


# The settings of generate are read like every command's (linkscan.pipeline.settings); the old names stay the
# generation stage's vocabulary.
ConfigFileError = SettingsError


def load_config(yaml_path: Path | str | None = None, overrides: Mapping[str, Any] | None = None,
                sets: Sequence[str] = ()) -> GenerateConfig:
    """The config from a YAML file (optional), with ``overrides`` (dotted keys or nested dicts; None
    means "not given") and ``--set key=value`` pairs on top (``linkscan.pipeline.settings.load_settings``)."""
    return load_settings(GenerateConfig, yaml_path, overrides, sets)
