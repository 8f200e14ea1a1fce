"""Metrics on hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from linkscan.evaluation.metrics import (
    answer_containment,
    bootstrap_ci,
    mrr,
    ndcg_at_k,
    normalize_answer,
    rank_units,
    recall_at_k,
    token_f1,
)


def test_rank_units_orders_by_score_and_keeps_document_order_on_ties() -> None:
    assert rank_units(np.array([0.1, 0.9, 0.5, 0.9, 0.1])).tolist() == [1, 3, 2, 0, 4]


def test_recall_at_k_counts_gold_units_in_the_top_k() -> None:
    ranking = [4, 2, 7, 1, 0]
    assert recall_at_k(ranking, gold=[2, 0], k=1) == 0.0
    assert recall_at_k(ranking, gold=[2, 0], k=2) == 0.5
    assert recall_at_k(ranking, gold=[2, 0], k=5) == 1.0


def test_recall_needs_gold_units() -> None:
    with pytest.raises(ValueError, match="at least one gold unit"):
        recall_at_k([0, 1], gold=[], k=1)


def test_ndcg_hand_computed() -> None:
    # gold at ranks 2 and 3 (1-based): DCG = 1/log2(3) + 1/log2(4); ideal = 1 + 1/log2(3)
    expected = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k([9, 5, 6, 1], gold=[5, 6], k=3) == pytest.approx(expected)
    assert ndcg_at_k([5, 6, 9], gold=[5, 6], k=3) == pytest.approx(1.0)
    # a cut-off above the gold count does not inflate the ideal DCG
    assert ndcg_at_k([5, 9, 8, 7], gold=[5], k=4) == pytest.approx(1.0)
    assert ndcg_at_k([9, 8], gold=[5], k=2) == 0.0


def test_mrr_is_reciprocal_rank_of_first_gold() -> None:
    assert mrr([3, 8, 2, 5], gold=[2, 5]) == pytest.approx(1 / 3)
    assert mrr([2, 8], gold=[2]) == 1.0
    assert mrr([1, 8], gold=[2]) == 0.0


def test_normalize_answer_is_squad_normalisation() -> None:
    assert normalize_answer("The  Cat, sat on A mat!") == "cat sat on mat"


def test_answer_containment_matches_whole_normalised_words() -> None:
    context = "Season two premiered on April 25, 2018 on Hulu."
    assert answer_containment(context, ["April 25 , 2018"]) == 1.0
    assert answer_containment(context, ["May 1"]) == 0.0
    # "10" must not match inside "2018" or "105"
    assert answer_containment("It has 105 pages, printed 2018.", ["10"]) == 0.0
    assert answer_containment("It has 10 episodes.", ["nope", "10"]) == 1.0


def test_token_f1_hand_computed() -> None:
    # prediction "the cat sat" -> [cat, sat]; gold "a cat sat down" -> [cat, sat, down]
    # precision 2/2, recall 2/3 -> F1 = 0.8
    assert token_f1("the cat sat", ["a cat sat down"]) == pytest.approx(0.8)
    assert token_f1("the cat sat", ["dog", "cat sat"]) == pytest.approx(1.0)  # max over answers
    assert token_f1("nothing here", ["cat"]) == 0.0


def test_bootstrap_ci_brackets_the_mean_and_is_seeded() -> None:
    values = [0.0, 1.0] * 50
    estimate = bootstrap_ci(values, samples=2000, seed=3)
    assert estimate.mean == 0.5
    assert estimate.n == 100
    # binomial standard error sqrt(.25/100) = 0.05 -> interval about 0.5 +- 0.1
    assert 0.38 < estimate.low < 0.45 and 0.55 < estimate.high < 0.62
    assert bootstrap_ci(values, samples=2000, seed=3) == estimate


def test_bootstrap_ci_of_constant_values_is_a_point() -> None:
    estimate = bootstrap_ci([0.7, 0.7, 0.7])
    assert (estimate.low, estimate.mean, estimate.high) == pytest.approx((0.7, 0.7, 0.7))


def test_bootstrap_ci_ignores_missing_values() -> None:
    estimate = bootstrap_ci([1.0, None, float("nan"), 0.0])
    assert estimate.n == 2 and estimate.mean == 0.5
    assert math.isnan(bootstrap_ci([]).mean)
