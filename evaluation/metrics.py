"""Retrieval and answer metrics, and bootstrap confidence intervals.

Retrieval metrics take a ranking (unit indices, best first) and the gold unit indices. Answer
metrics use SQuAD normalisation (lower case, no punctuation, no articles, single spaces).
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def rank_units(scores: np.ndarray) -> np.ndarray:
    """Unit indices by descending score; ties keep document order (a stable sort)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def recall_at_k(ranking: Sequence[int], gold: Sequence[int], k: int) -> float:
    """Fraction of the gold units found in the top k."""
    gold_set = set(gold)
    if not gold_set:
        raise ValueError("recall@k needs at least one gold unit")
    return len(gold_set.intersection(ranking[:k])) / len(gold_set)


def hit_at_k(ranking: Sequence[int], gold: Sequence[int], k: int) -> float:
    """1.0 when at least one gold unit is in the top k, else 0.0 (unlike recall@k, a perfect ranking
    scores 1 at every k, however many gold units a question has)."""
    gold_set = set(gold)
    if not gold_set:
        raise ValueError("hit@k needs at least one gold unit")
    return float(not gold_set.isdisjoint(ranking[:k]))


def ndcg_at_k(ranking: Sequence[int], gold: Sequence[int], k: int) -> float:
    """Binary-relevance nDCG@k: DCG of the top k over the DCG of a perfect ranking."""
    gold_set = set(gold)
    if not gold_set:
        raise ValueError("nDCG@k needs at least one gold unit")
    dcg = sum(1.0 / math.log2(rank + 2) for rank, unit in enumerate(ranking[:k]) if unit in gold_set)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(gold_set))))
    return dcg / ideal


def mrr(ranking: Sequence[int], gold: Sequence[int]) -> float:
    """Reciprocal rank of the first gold unit (0 when no gold unit is ranked)."""
    gold_set = set(gold)
    if not gold_set:
        raise ValueError("MRR needs at least one gold unit")
    for rank, unit in enumerate(ranking):
        if unit in gold_set:
            return 1.0 / (rank + 1)
    return 0.0


def _dcg_weights(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(n) + 2.0)


def expected_random_metrics(n_units: int, n_gold: int, ks: Sequence[int], ndcg_ks: Sequence[int]) -> dict[str, float]:
    """The exact expectation of recall@k, hit@k, nDCG@k and MRR over uniformly random rankings of
    ``n_units`` units of which ``n_gold`` are gold (what the seeded random retriever estimates with
    one draw per question)."""
    n, g = n_units, n_gold
    if not 0 < g <= n:
        raise ValueError(f"expected random metrics need 0 < gold units <= units, got {g} of {n}")
    # P(no gold unit among the first m) = prod_{i<m} (n-g-i)/(n-i); zero once m > n-g.
    miss = np.cumprod(np.maximum(n - g - np.arange(n), 0) / (n - np.arange(n)))
    expected: dict[str, float] = {}
    for k in ks:
        m = min(k, n)
        expected[f"recall@{k}"] = m / n
        expected[f"hit@{k}"] = float(1.0 - miss[m - 1])
    weights = _dcg_weights(n)
    for k in ndcg_ks:
        # each of the first min(k, n) positions holds a gold unit with probability g/n
        expected[f"ndcg@{k}"] = float(g / n * weights[: min(k, n)].sum() / weights[: min(k, g)].sum())
    # the first gold unit is at rank r with probability P(no gold in the first r-1) * g / (n-r+1)
    ranks = np.arange(1, n - g + 2)
    no_gold_before = np.concatenate([[1.0], miss[: n - g]])
    expected["mrr"] = float((no_gold_before * g / (n - ranks + 1) / ranks).sum())
    return expected


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, punctuation and articles removed, whitespace collapsed."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_containment(context: str, answers: Sequence[str]) -> float:
    """1.0 when the normalised context contains any normalised gold answer, else 0.0."""
    haystack = f" {normalize_answer(context)} "
    for answer in answers:
        needle = normalize_answer(answer)
        if needle and f" {needle} " in haystack:
            return 1.0
    return 0.0


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """SQuAD token F1 of a predicted answer, the maximum over the gold answers."""
    predicted = normalize_answer(prediction).split()
    best = 0.0
    for answer in answers:
        gold = normalize_answer(answer).split()
        common = sum((Counter(predicted) & Counter(gold)).values())
        if not predicted or not gold or not common:
            f1 = float(predicted == gold)
        else:
            precision, recall = common / len(predicted), common / len(gold)
            f1 = 2 * precision * recall / (precision + recall)
        best = max(best, f1)
    return best


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float  # bootstrap percentile interval
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "n": self.n}


def bootstrap_ci(values: Sequence[float], *, samples: int = 1000, seed: int = 0, confidence: float = 0.95) -> Estimate:
    """Mean with a percentile bootstrap confidence interval (resampling the values with replacement)."""
    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if data.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(data.mean())
    if data.size == 1:
        return Estimate(mean, mean, mean, 1)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Estimate(mean, float(low), float(high), int(data.size))
