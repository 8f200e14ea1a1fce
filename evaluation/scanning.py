"""Scanning a document with the scanner: one score per retrieval unit.

``single_pass``: the question (with its newline) then the whole document, read once left to right.
The pass runs in segments of ``segment_tokens`` with the SSM and convolution state carried from one
segment to the next (``linkscan.training.segments``), so memory is bounded by the segment, any length works
(the 1.3b kernels fail on one sequence of 262,144 tokens or more), and the scores equal those of
one long pass.

``sliding_window``: the paper's evaluation. Windows of ``window_tokens`` document tokens cut at unit
boundaries, ``stride_tokens`` apart, the last one aligned to the document's end; the question is
prepended to each; a unit scored in several windows gets the mean of its logits.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Sequence

import numpy as np
import torch

from linkscan.training.model import ScannerModel
from linkscan.training.segments import ScanState, score_segment

MODES = ("single_pass", "sliding_window")
DEFAULT_SEGMENT_TOKENS = 131072
PAPER_WINDOW_TOKENS = 120000
PAPER_STRIDE_TOKENS = 60000


def _check_units(token_ids: Sequence[int], sentence_ends: Sequence[int]) -> None:
    if len(sentence_ends) and int(sentence_ends[-1]) >= len(token_ids):
        raise ValueError(
            f"sentence_ends points past the document ({sentence_ends[-1]} >= {len(token_ids)} tokens); "
            "tokenize the document and its units together"
        )
    if len(sentence_ends) > 1 and np.any(np.diff(np.asarray(sentence_ends)) <= 0):
        raise ValueError("sentence_ends must be strictly increasing (one end position per unit, in order)")


def scan_sequence(model: ScannerModel, input_ids: Sequence[int], positions: Sequence[int],
                  segment_tokens: int = DEFAULT_SEGMENT_TOKENS) -> np.ndarray:
    """Logits at ``positions`` of one sequence, read in segments with the state carried across."""
    if segment_tokens < 1:
        raise ValueError(f"segment_tokens must be positive, got {segment_tokens}")
    device = model.binary_head.weight.device
    ids = torch.as_tensor(np.asarray(input_ids, dtype=np.int64), device=device)
    positions = np.asarray(positions, dtype=np.int64)
    state = ScanState.empty(model.shape.n_layer)
    scores = np.empty(len(positions), dtype=np.float32)
    for start in range(0, len(ids), segment_tokens):
        end = min(start + segment_tokens, len(ids))
        lo, hi = np.searchsorted(positions, [start, end])
        relative = torch.as_tensor(positions[lo:hi] - start, device=device)
        logits = score_segment(model, ids[None, start:end], relative, state)
        scores[lo:hi] = logits[0].cpu().numpy()
    return scores


def sliding_windows(sentence_ends: Sequence[int], n_tokens: int, window_tokens: int = PAPER_WINDOW_TOKENS,
                    stride_tokens: int = PAPER_STRIDE_TOKENS) -> list[tuple[int, int]]:
    """Unit ranges [first, last) of the paper's windows over a document of ``n_tokens`` tokens.

    A window starts at the unit holding its nominal start (or at the first unit no window holds
    yet, if that is earlier), holds the units that end before ``window_tokens`` past that unit's
    start (at least one), and the next nominal start is ``stride_tokens`` later. The last window
    is aligned to the document's end. Every unit is in at least one window.
    """
    if window_tokens < 1 or stride_tokens < 1:
        raise ValueError("window_tokens and stride_tokens must be positive")
    n_units = len(sentence_ends)
    if n_units == 0:
        return []
    sentence_ends = [int(e) for e in sentence_ends]
    starts = [0] + [end + 1 for end in sentence_ends[:-1]]  # first token of each unit

    def window_from(first: int) -> tuple[int, int]:
        last = bisect_left(sentence_ends, starts[first] + window_tokens)  # units ending inside
        return first, max(last, first + 1)

    if n_tokens <= window_tokens:
        return [(0, n_units)]
    # the last window ends at the document's end: its first unit starts at or after n - window
    final_first = min(bisect_left(starts, n_tokens - window_tokens), n_units - 1)
    windows = []
    nominal, covered = 0, 0  # units [0, covered) are in some window
    while nominal + window_tokens < n_tokens or covered < final_first:
        # the unit holding the nominal start, or the first unit not yet covered if that is earlier
        # (a unit longer than the stride must not fall between two windows)
        first = min(bisect_right(starts, nominal) - 1, covered)
        windows.append(window_from(first))
        covered = max(covered, windows[-1][1])
        nominal += stride_tokens
    windows.append((final_first, n_units))
    return list(dict.fromkeys(windows))


def scan_document(
    model: ScannerModel,
    question_ids: Sequence[int],
    token_ids: Sequence[int],
    sentence_ends: Sequence[int],
    *,
    mode: str = "single_pass",
    segment_tokens: int = DEFAULT_SEGMENT_TOKENS,
    window_tokens: int = PAPER_WINDOW_TOKENS,
    stride_tokens: int = PAPER_STRIDE_TOKENS,
) -> np.ndarray:
    """Relevance logits (float32, one per unit) of ``token_ids``' units for the question.

    ``question_ids`` is the tokenized question plus its newline; ``sentence_ends[i]`` is the
    position in ``token_ids`` of unit i's last token.
    """
    if mode not in MODES:
        raise ValueError(f"unknown scan mode {mode!r}; choose one of {', '.join(MODES)}")
    _check_units(token_ids, sentence_ends)
    question = np.asarray(question_ids, dtype=np.int64)
    document = np.asarray(token_ids, dtype=np.int64)
    offset = len(question)
    ends = np.asarray(sentence_ends, dtype=np.int64)
    if mode == "single_pass":
        return scan_sequence(model, np.concatenate([question, document]), ends + offset, segment_tokens)
    totals = np.zeros(len(ends), dtype=np.float64)
    counts = np.zeros(len(ends), dtype=np.int64)
    for first, last in sliding_windows(ends, len(document), window_tokens, stride_tokens):
        begin = 0 if first == 0 else int(ends[first - 1]) + 1
        stop = int(ends[last - 1]) + 1
        window = np.concatenate([question, document[begin:stop]])
        totals[first:last] += scan_sequence(model, window, ends[first:last] - begin + offset, segment_tokens)
        counts[first:last] += 1
    return (totals / np.maximum(counts, 1)).astype(np.float32)


def window_coverage(sentence_ends: Sequence[int], windows: Sequence[tuple[int, int]]) -> np.ndarray:
    """How many windows score each unit (every unit must be covered at least once)."""
    counts = np.zeros(len(sentence_ends), dtype=np.int64)
    for first, last in windows:
        counts[first:last] += 1
    return counts


__all__ = ["scan_document", "scan_sequence", "sliding_windows", "window_coverage", "MODES"]
