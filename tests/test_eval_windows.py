"""The paper's sliding-window arithmetic (linkscan.evaluation.scanning): window bounds, coverage, the question
prepended to every window, and the mean of a unit's logits over the windows that score it."""
from __future__ import annotations

import numpy as np
import pytest

import linkscan.evaluation.scanning as scanning
from linkscan.evaluation.scanning import scan_document, sliding_windows, window_coverage


def uniform_ends(n_units: int, unit_tokens: int) -> list[int]:
    return [unit_tokens * (i + 1) - 1 for i in range(n_units)]


def test_document_within_one_window_is_one_window() -> None:
    ends = uniform_ends(10, 10)
    assert sliding_windows(ends, 100, window_tokens=100, stride_tokens=50) == [(0, 10)]


def test_windows_hand_computed_with_last_window_aligned_to_the_end() -> None:
    # 100 units of 10 tokens; window 300 tokens = 30 units, stride 150 tokens = 15 units
    ends = uniform_ends(100, 10)
    windows = sliding_windows(ends, 1000, window_tokens=300, stride_tokens=150)
    # nominal starts 0,150,...,600 (the next, 750, would pass the end); then the window ending at 1000
    assert windows == [(0, 30), (15, 45), (30, 60), (45, 75), (60, 90), (70, 100)]
    coverage = window_coverage(ends, windows)
    assert coverage.min() == 1
    assert coverage[:15].tolist() == [1] * 15 and coverage[15:30].tolist() == [2] * 15
    assert coverage[70:75].tolist() == [3] * 5  # (45,75), (60,90), (70,100)


def test_paper_window_counts_for_a_303k_token_document() -> None:
    # PAPER.md: a 303k-token document gives 5 windows at W=120k and 2 at W=256k (stride W/2)
    ends = uniform_ends(10_100, 30)
    assert len(sliding_windows(ends, 303_000, 120_000, 60_000)) == 5
    assert len(sliding_windows(ends, 303_000, 256_000, 128_000)) == 2


def test_windows_are_cut_at_unit_boundaries_with_uneven_units() -> None:
    ends = [4, 24, 29, 59, 64, 99]  # units of 5, 20, 5, 30, 5, 35 tokens
    windows = sliding_windows(ends, 100, window_tokens=40, stride_tokens=20)
    for first, last in windows:
        begin = 0 if first == 0 else ends[first - 1] + 1
        assert ends[last - 1] - begin + 1 <= 40 or last == first + 1
    assert windows[0] == (0, 3)  # tokens 0..29 fit; unit 3 ends at 59
    assert windows[-1][1] == len(ends)
    assert window_coverage(ends, windows).min() >= 1


def test_sliding_mode_prepends_the_question_and_averages_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    question = [900, 901]
    token_ids = list(range(100))  # token value == position, so positions can be checked
    ends = uniform_ends(10, 10)
    seen = []

    def fake_scan_sequence(model, input_ids, positions, segment_tokens):
        input_ids, positions = list(input_ids), np.asarray(positions)
        assert input_ids[:2] == question  # the question starts every window
        seen.append((input_ids[2], len(input_ids) - 2))
        picked = [input_ids[p] for p in positions]
        # every position lands on a unit's last token
        assert all((token + 1) % 10 == 0 for token in picked)
        return np.full(len(positions), float(len(seen)), dtype=np.float32)  # window number as logit

    monkeypatch.setattr(scanning, "scan_sequence", fake_scan_sequence)
    scores = scan_document(None, question, token_ids, ends, mode="sliding_window", window_tokens=40, stride_tokens=20)
    # windows (units): (0,4) (2,6) (4,8) (6,10) -> logits 1,2,3,4
    assert seen == [(0, 40), (20, 40), (40, 40), (60, 40)]
    assert scores.tolist() == pytest.approx([1, 1, 1.5, 1.5, 2.5, 2.5, 3.5, 3.5, 4, 4])
