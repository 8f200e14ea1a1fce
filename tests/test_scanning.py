"""Scanning on CPU: carried-state segments equal one long pass; the paper's sliding-window arithmetic."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from linkscan.evaluation.scanning import scan_document, sliding_windows, window_coverage
from linkscan.training.segments import ssd_scan


@pytest.fixture(scope="module")
def document(tokenizer_path, dev_corpus):
    """A real passage, tokenized with the real tokenizer, cut into units of 20 words."""
    import gzip
    import json

    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    with gzip.open(dev_corpus / "rfc.jsonl.gz", "rt") as handle:
        words = json.loads(handle.readline())["text"].split()[:400]
    token_ids, ends = [], []
    for start in range(0, len(words), 20):
        token_ids += tokenizer.encode(" ".join(words[start:start + 20]) + " ").ids
        ends.append(len(token_ids) - 1)
    question = tokenizer.encode("Which header fields are compressed?\n").ids
    return question, token_ids, ends


def test_ssd_scan_equals_the_sequential_recurrence():
    generator = torch.Generator().manual_seed(0)
    batch, length, heads, headdim, state = 1, 37, 2, 3, 4
    x = torch.randn(batch, length, heads, headdim, generator=generator)
    a = -torch.rand(batch, length, heads, generator=generator)
    b = torch.randn(batch, length, heads, state, generator=generator)
    c = torch.randn(batch, length, heads, state, generator=generator)
    y, final = ssd_scan(x, a, b, c, chunk=8)
    h = torch.zeros(batch, heads, headdim, state)
    expected = []
    for t in range(length):  # h_t = exp(a_t) h_{t-1} + x_t b_t^T ;  y_t = h_t c_t
        h = torch.exp(a[:, t])[..., None, None] * h + x[:, t, :, :, None] * b[:, t, :, None, :]
        expected.append(torch.einsum("bhpn,bhn->bhp", h, c[:, t]))
    torch.testing.assert_close(y, torch.stack(expected, dim=1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(final, h, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("segment_tokens, max_units", [(1, 2), (2, 2), (45, None), (10_000, None)])
def test_carried_state_scan_equals_one_long_pass(tiny, document, segment_tokens, max_units):
    question, token_ids, ends = document
    if max_units:  # segments shorter than the convolution: a short document keeps the test fast
        ends = ends[:max_units]
        token_ids = token_ids[: ends[-1] + 1]
    carried = scan_document(tiny, question, token_ids, ends, segment_tokens=segment_tokens)
    ids = torch.tensor([question + token_ids])
    one_pass = tiny.score(ids, torch.tensor([[len(question) + e for e in ends]]))[0].numpy()
    assert carried.dtype == np.float32 and carried.shape == (len(ends),)
    np.testing.assert_allclose(carried, one_pass, atol=2e-5, rtol=1e-4)


def test_the_question_changes_the_scores(tiny, document):
    question, token_ids, ends = document
    other = scan_document(tiny, question[:-3] + question[-1:], token_ids, ends)
    assert not np.allclose(other, scan_document(tiny, question, token_ids, ends))


def test_paper_windows_for_a_303k_token_document():
    ends = np.arange(999, 303_000, 1000)  # 303 units of 1,000 tokens
    assert sliding_windows(ends, 303_000, 120_000, 60_000) == [(0, 120), (60, 180), (120, 240), (180, 300), (183, 303)]
    assert sliding_windows(ends, 303_000, 256_000, 128_000) == [(0, 256), (47, 303)]


def test_windows_cover_every_unit_and_never_exceed_the_window_unless_one_unit_does():
    rng = np.random.default_rng(1)
    ends = np.cumsum(rng.integers(1, 400, 500)) - 1
    ends[250] += 3000  # one unit longer than the window
    ends[251:] += 3000
    n_tokens = int(ends[-1]) + 1
    windows = sliding_windows(ends, n_tokens, 2000, 1000)
    assert (window_coverage(ends, windows) >= 1).all()
    starts = np.concatenate([[0], ends[:-1] + 1])
    for first, last in windows:
        assert ends[last - 1] - starts[first] + 1 <= 2000 or last - first == 1


def test_a_document_shorter_than_the_window_is_one_window():
    assert sliding_windows([9, 19, 29], 30, 100, 50) == [(0, 3)]


def test_sliding_window_mode_averages_each_units_windows(tiny, document):
    question, token_ids, ends = document
    window, stride = 200, 100
    scores = scan_document(tiny, question, token_ids, ends, mode="sliding_window", window_tokens=window, stride_tokens=stride)
    windows = sliding_windows(ends, len(token_ids), window, stride)
    assert len(windows) > 2
    totals, counts = np.zeros(len(ends)), np.zeros(len(ends))
    for first, last in windows:  # each window: the question, then that window's tokens, in one pass
        begin = 0 if first == 0 else ends[first - 1] + 1
        ids = torch.tensor([question + token_ids[begin:ends[last - 1] + 1]])
        positions = torch.tensor([[len(question) + e - begin for e in ends[first:last]]])
        totals[first:last] += tiny.score(ids, positions)[0].numpy()
        counts[first:last] += 1
    np.testing.assert_allclose(scores, totals / counts, atol=2e-5, rtol=1e-4)


def test_sliding_window_mode_on_a_short_document_equals_the_single_pass(tiny, document):
    question, token_ids, ends = document
    single = scan_document(tiny, question, token_ids, ends)
    windowed = scan_document(tiny, question, token_ids, ends, mode="sliding_window")
    np.testing.assert_allclose(windowed, single, atol=1e-6)


def test_sentence_ends_past_the_document_are_refused(tiny):
    with pytest.raises(ValueError, match="points past the document"):
        scan_document(tiny, [1, 2], [5, 6, 7], [1, 3])


def test_an_unknown_mode_is_refused(tiny):
    with pytest.raises(ValueError, match="unknown scan mode"):
        scan_document(tiny, [1], [5, 6], [1], mode="windows")
