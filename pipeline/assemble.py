"""Assembly of training examples: a question and its evidence labels over one chunk.

The model input is ``question_ids`` (the question plus a newline, tokenized) followed by the chunk's
``token_ids``; unit i is labelled at position ``len(question_ids) + sentence_ends[i]``, so the label
positions follow from the stored fields and nothing is decoded or matched as text.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

from linkscan.schemas import Chunk, Example


class AssemblyError(ValueError):
    """An example cannot be built from these parts; the message names the chunk and the field."""


def question_token_ids(question: str, tokenizer) -> list[int]:
    """Token ids of ``question + "\\n"`` (no special tokens), as the model reads them."""
    return list(tokenizer.encode(question + "\n", add_special_tokens=False).ids)


def example_id(chunk_id: str, method: str, generator: str, question: str) -> str:
    """A stable id from what makes an example: its chunk, method, generator and question."""
    digest = hashlib.sha256("\x1f".join((chunk_id, method, generator, question)).encode()).hexdigest()
    return digest[:20]


def assemble_example(
    chunk: Chunk,
    *,
    question: str,
    positives: Sequence[int],
    anchor: Sequence[int],
    method: str,
    generator: str,
    prompt_version: str,
    tokenizer,
    link_target: int | None = None,
    link_distance: int | None = None,
) -> Example:
    """Build the ``examples`` row for ``question`` over ``chunk``, labelling ``positives``."""
    question = question.strip()
    if not question:
        raise AssemblyError(f"chunk {chunk.chunk_id}: the question is empty")
    n_units = len(chunk.sentences)
    for name, indices in (("positives", positives), ("anchor", anchor)):
        bad = [i for i in indices if not 0 <= i < n_units]
        if bad:
            raise AssemblyError(f"chunk {chunk.chunk_id}: {name} {bad} outside units 0..{n_units - 1}")
    if not positives:
        raise AssemblyError(f"chunk {chunk.chunk_id}: no positive units")
    if link_target is not None and not 0 <= link_target < n_units:
        raise AssemblyError(f"chunk {chunk.chunk_id}: link_target {link_target} outside units 0..{n_units - 1}")
    return Example(
        example_id=example_id(chunk.chunk_id, method, generator, question),
        chunk_id=chunk.chunk_id,
        doc_id=chunk.doc_id,
        method=method,
        generator=generator,
        prompt_version=prompt_version,
        question=question,
        question_ids=question_token_ids(question, tokenizer),
        positives=sorted(set(positives)),
        anchor=list(anchor),
        link_target=link_target,
        link_distance=link_distance,
        token_ids=chunk.token_ids,  # shared, not copied: a compact array from the segmenter
        sentence_ends=list(chunk.sentence_ends),
        sentences=list(chunk.sentences),
    )
