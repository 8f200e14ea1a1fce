"""The link, chunk and pair methods: sampling windows, filters, evidence rules and determinism.

Chunks are real text (a dev-corpus document split with spaCy's sentencizer, real tokenizer). The
filter tests use a scripted back end, so each rule is checked against answers that test it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest

from linkscan.generators.base import LinkCandidate, NothingToAsk, QuestionDraft, Refusal
from linkscan.generators.config import LinkMethodConfig, PassageMethodConfig
from linkscan.generators.methods import chunk_example, gap_to, link_example, link_window, pair_example
from linkscan.generators.offline import OfflineBackend
from linkscan.generators.wording import content_stems
from tests.generators_data import dev_chunks


@pytest.fixture(scope="module")
def chunks(dev_corpus, tokenizer):
    """Chunks of 80 units of a Supreme Court opinion."""
    found = dev_chunks(dev_corpus, tokenizer, "scotus-2009-berghuis-v-thompkins", 60_000)
    assert len(found) >= 3 and all(len(c.sentences) >= 60 for c in found[:3])
    return found


class ScriptedBackend:
    """Answers with fixed link targets and evidence; records what the method asked.

    The question names the first word of each passage that the other passage lacks (a question
    that needs both), unless ``question`` gives one (None: refuse).
    """

    name = "scripted"
    prompt_version = "scripted-v1"

    def __init__(self, targets=(), evidence="both", question="", scores=None):
        self.targets = targets
        self.evidence = evidence
        self.question = question
        self.scores = scores or {}
        self.link_requests = []
        self.question_requests = []
        self.evidence_requests = []

    async def find_links(self, request):
        """A link ``gap`` units after the anchor's end and one ``gap`` units before its start."""
        self.link_requests.append(request)
        anchor = list(request.anchor)
        targets = [t for gap in self.targets for t in (anchor[-1] + gap, anchor[0] - gap)]
        return [LinkCandidate(t, self.scores.get(abs(t - anchor[0]) if t < anchor[0] else t - anchor[-1], 1.0), "test")
                for t in targets if 0 <= t < len(request.units)]

    async def write_question(self, request):
        self.question_requests.append(request)
        if self.question is None:
            raise Refusal("no_terms")
        if self.question:
            return QuestionDraft(self.question, ("court",))
        sides = [content_stems(" ".join(request.units[u] for u in passage)) for passage in request.passages]
        named = [sorted(side - set().union(*(other for other in sides if other is not side)))[:1] for side in sides]
        return QuestionDraft(f"How does {' relate to '.join(w[0] for w in named if w)} in the opinion?", ("court",))

    async def pick_evidence(self, request):
        self.evidence_requests.append(request)
        if self.evidence == "both":
            return [request.sides[0][0], request.sides[-1][-1]] if request.sides else list(request.candidates[:2])
        if self.evidence == "first":
            return [request.sides[0][0]]
        return [999]  # outside the candidates


def run(coroutine):
    return asyncio.run(coroutine)


def test_the_window_leaves_out_the_units_closer_than_the_minimum_distance():
    # The anchor is 40..44 and the window [30, 100): 30 is 10 units from 40, 54 is 10 from 44.
    assert link_window(40, 5, 200, 100, random.Random(0), min_distance=10) == [30, *range(54, 100)]


def test_window_is_the_papers_longer_side_and_excludes_the_anchor():
    rng = random.Random(0)
    # Near the start, [start-10, start+190) clipped to [0, 193) is the longer one.
    assert link_window(3, 5, 200, 500, rng) == [u for u in range(0, 193) if not 3 <= u < 8]
    # Near the end, [start-185, start+15) is longer after clipping than [start-10, start+190).
    assert link_window(450, 5, 200, 500, rng) == [u for u in range(265, 465) if not 450 <= u < 455]
    # A short chunk: [start-10, end of chunk) is longer than [0, start+15).
    assert link_window(20, 5, 200, 60, rng) == [u for u in range(10, 60) if not 20 <= u < 25]


def test_link_method_keeps_the_strongest_link_and_the_longest_among_equals(chunks, tokenizer):
    backend = ScriptedBackend(targets=(12, 25))  # 25 units fit on one side of any anchor of 80 units
    example = run(link_example(chunks[0], backend, tokenizer, LinkMethodConfig(), seed=0)).example
    assert example is not None
    assert example.link_distance == 25 == gap_to(example.anchor, example.link_target)
    stronger_nearer = ScriptedBackend(targets=(12, 25), scores={12: 4.0, 25: 2.0})
    example = run(link_example(chunks[0], stronger_nearer, tokenizer, LinkMethodConfig(), seed=0)).example
    assert example.link_distance == 12


def test_the_back_end_is_only_shown_units_far_enough_from_the_anchor(chunks, tokenizer):
    backend = ScriptedBackend(targets=(2, 5, 9))
    outcome = run(link_example(chunks[0], backend, tokenizer, LinkMethodConfig(anchor_attempts=3), seed=0))
    assert all(gap_to(r.anchor, u) >= 10 for r in backend.link_requests for u in r.window)
    assert outcome.example is None and outcome.drop_reason == "no_usable_link"
    assert outcome.anchors_tried == 3 and outcome.anchors_without_link == 3
    assert outcome.links == []  # links the back end made up outside the window are not kept


def test_evidence_on_one_side_only_is_dropped(chunks, tokenizer):
    backend = ScriptedBackend(targets=(20,), evidence="first")
    outcome = run(link_example(chunks[0], backend, tokenizer, LinkMethodConfig(anchor_attempts=2), seed=0))
    assert outcome.example is None
    assert outcome.drop_reason == "evidence_one_side"


def test_link_evidence_must_hold_a_unit_of_the_anchor_itself_and_of_the_far_end(chunks, tokenizer):
    backend = ScriptedBackend(targets=(20,))
    outcome = run(link_example(chunks[0], backend, tokenizer, LinkMethodConfig(), seed=0))
    request = backend.evidence_requests[-1]
    anchor_side, far_end = request.sides
    assert anchor_side == outcome.example.anchor  # not the two units of context on each side of it
    assert all(gap_to(anchor_side, u) >= 10 for u in far_end) and outcome.example.link_target in far_end

    class ContextOnly(ScriptedBackend):
        async def pick_evidence(self, request):  # the units just before the anchor, and the far end
            return [request.sides[0][0] - 1, request.sides[0][0] - 2, request.sides[1][0]]

    outcome = run(link_example(chunks[0], ContextOnly(targets=(20,)), tokenizer, LinkMethodConfig(anchor_attempts=1), seed=0))
    assert outcome.example is None and outcome.drop_reason == "evidence_one_side"


def test_evidence_that_is_most_of_the_candidates_is_no_choice(chunks, tokenizer):
    class TakesAll(ScriptedBackend):
        async def pick_evidence(self, request):
            self.evidence_requests.append(request)
            return list(request.candidates)

    backend = TakesAll(targets=(20,))
    outcome = run(link_example(chunks[0], backend, tokenizer, LinkMethodConfig(anchor_attempts=2), seed=0))
    assert outcome.example is None and outcome.drop_reason == "evidence_too_broad"
    request = backend.evidence_requests[-1]
    assert request.max_picks == int(0.4 * len(request.candidates)) == 6  # 16 candidates
    assert outcome.attempt_reasons == {"evidence_too_broad": 2}


def test_a_question_that_restates_a_unit_is_dropped(chunks, tokenizer):
    backend = ScriptedBackend(targets=(20,))
    first = run(link_example(chunks[0], backend, tokenizer, LinkMethodConfig(anchor_attempts=1), seed=0))
    unit = chunks[0].sentences[first.example.anchor[1]]
    words = unit.split()
    reordered = " ".join(words[len(words) // 2:] + words[: len(words) // 2]).rstrip(".") + "?"
    copier = ScriptedBackend(targets=(20,), question=f"Is it true that {reordered}")
    outcome = run(link_example(chunks[0], copier, tokenizer, LinkMethodConfig(anchor_attempts=1), seed=0))
    assert outcome.example is None and outcome.drop_reason == "question_restates_unit"


def test_a_two_passage_question_that_names_nothing_of_one_passage_is_dropped(chunks, tokenizer):
    backend = ScriptedBackend(targets=(20,))
    first = run(link_example(chunks[0], backend, tokenizer, LinkMethodConfig(anchor_attempts=1), seed=0))
    request = backend.question_requests[-1]
    anchor_words = sorted(content_stems(" ".join(chunks[0].sentences[u] for u in request.passages[0]))
                          - content_stems(" ".join(chunks[0].sentences[u] for u in request.passages[1])))
    one_sided = ScriptedBackend(targets=(20,), question=f"What does the opinion say about {anchor_words[0]}?")
    outcome = run(link_example(chunks[0], one_sided, tokenizer, LinkMethodConfig(anchor_attempts=1), seed=0))
    assert first.example is not None
    assert outcome.example is None and outcome.drop_reason == "question_one_sided"


def test_a_question_about_things_in_neither_passage_is_dropped(chunks, tokenizer):
    made_up = ScriptedBackend(targets=(20,), question="In which year did the mill that Ada Lark opened in 1887 burn down?")
    outcome = run(link_example(chunks[0], made_up, tokenizer, LinkMethodConfig(anchor_attempts=1), seed=0))
    assert outcome.example is None and outcome.drop_reason == "question_not_grounded"


def test_every_failed_attempt_is_counted_under_its_own_reason(chunks, tokenizer):
    class FailsDifferently(ScriptedBackend):
        calls = 0

        async def pick_evidence(self, request):
            self.calls += 1
            return [999] if self.calls == 1 else [request.sides[0][0]]

    outcome = run(link_example(chunks[0], FailsDifferently(targets=(20,)), tokenizer,
                               LinkMethodConfig(anchor_attempts=3), seed=0))
    assert outcome.drop_reason == "evidence_one_side"  # the last attempt's
    assert outcome.attempt_reasons == {"evidence_empty": 1, "evidence_one_side": 2}


def test_an_anchor_with_nothing_to_ask_costs_no_attempt(chunks, tokenizer):
    class AsksEveryOther(ScriptedBackend):
        asked = 0

        async def find_links(self, request):
            self.asked += 1
            if self.asked % 2:
                raise NothingToAsk("no_candidates")
            return await super().find_links(request)

    backend = AsksEveryOther(targets=(20,), evidence="outside")
    outcome = run(link_example(chunks[0], backend, tokenizer, LinkMethodConfig(anchor_attempts=3), seed=0))
    assert outcome.anchors_tried == 3 and outcome.anchors_skipped == 3
    assert outcome.attempt_reasons == {"evidence_empty": 3}


def test_evidence_candidates_are_anchor_plus_2_and_target_plus_3(chunks, tokenizer):
    backend = ScriptedBackend(targets=(20,))
    outcome = run(link_example(chunks[0], backend, tokenizer, LinkMethodConfig(), seed=0))
    example = outcome.example
    request = backend.evidence_requests[-1]
    anchor_side = range(example.anchor[0] - 2, example.anchor[-1] + 3)
    link_side = range(example.link_target - 3, example.link_target + 4)
    assert sorted(request.candidates) == sorted(set(anchor_side) | set(link_side))
    assert set(example.positives) <= set(request.candidates)


def test_evidence_outside_the_candidates_is_ignored(chunks, tokenizer):
    backend = ScriptedBackend(targets=(20,), evidence="outside")
    outcome = run(link_example(chunks[0], backend, tokenizer, LinkMethodConfig(anchor_attempts=1), seed=0))
    assert outcome.example is None and outcome.drop_reason == "evidence_empty"


def test_refused_question_is_counted_under_its_reason(chunks, tokenizer):
    backend = ScriptedBackend(targets=(20,), question=None)
    outcome = run(link_example(chunks[0], backend, tokenizer, LinkMethodConfig(anchor_attempts=1), seed=0))
    assert outcome.drop_reason == "question_no_terms"


def test_too_short_chunk_is_counted(chunks, tokenizer):
    from tests.generators_data import chunk_from_units

    short = chunk_from_units(chunks[0].sentences[:12], tokenizer)
    outcome = run(link_example(short, ScriptedBackend(targets=(20,)), tokenizer, LinkMethodConfig(), seed=0))
    assert outcome.example is None and outcome.drop_reason == "chunk_too_few_units"


def test_offline_link_examples_have_evidence_on_both_sides_far_apart(chunks, tokenizer):
    config = LinkMethodConfig()
    examples = [run(link_example(c, OfflineBackend(), tokenizer, config, seed=0)).example for c in chunks]
    examples = [e for e in examples if e is not None]
    assert examples, "the offline back end should find a long link in a Supreme Court opinion"
    for example in examples:
        assert example.link_distance >= 10
        anchor_side = set(range(example.anchor[0] - 2, example.anchor[-1] + 3))
        link_side = set(range(example.link_target - 3, example.link_target + 4))
        assert set(example.positives) & anchor_side and set(example.positives) & link_side
        assert example.question.endswith("?") and example.generator == "offline"


def test_chunk_method_evidence_comes_from_around_the_passage(chunks, tokenizer):
    config = PassageMethodConfig()
    outcome = run(chunk_example(chunks[1], OfflineBackend(), tokenizer, config, seed=0))
    example = outcome.example
    assert example is not None and example.method == "chunk" and example.link_target is None
    passage = example.anchor
    assert len(passage) == 5 and passage == list(range(passage[0], passage[0] + 5))
    assert set(example.positives) <= set(range(passage[0] - 2, passage[-1] + 3))


def test_pair_method_passages_are_far_apart_and_both_covered(chunks, tokenizer):
    config = PassageMethodConfig()
    backend = ScriptedBackend()
    example = run(pair_example(chunks[1], backend, tokenizer, config, seed=0)).example
    first_side, second_side = backend.evidence_requests[-1].sides
    assert example.method == "pair" and example.link_distance >= 10
    assert min(second_side) - max(first_side) >= 10 - 2 * config.passage_context
    assert set(example.positives) & set(first_side) and set(example.positives) & set(second_side)


class RefusingLinks(ScriptedBackend):
    async def find_links(self, request):
        raise Refusal("no_links")


def test_an_anchor_whose_link_search_is_refused_counts_as_one_without_a_usable_link(chunks, tokenizer):
    outcome = run(link_example(chunks[0], RefusingLinks(), tokenizer, LinkMethodConfig(anchor_attempts=3), seed=0))
    assert outcome.example is None and outcome.drop_reason == "links_no_links"
    assert outcome.anchors_tried == 3 and outcome.anchors_without_link == 3


@pytest.mark.parametrize("method, evidence, reason", [
    (chunk_example, "outside", "evidence_empty"),
    (pair_example, "outside", "evidence_empty"),
    (pair_example, "first", "evidence_one_side"),  # the chunk method has one side only
])
def test_passage_methods_drop_bad_evidence_by_reason(chunks, tokenizer, method, evidence, reason):
    backend = ScriptedBackend(evidence=evidence)
    outcome = run(method(chunks[1], backend, tokenizer, PassageMethodConfig(attempts=2), seed=0))
    assert outcome.example is None and outcome.drop_reason == reason and outcome.anchors_tried == 2


@pytest.mark.parametrize("method, units", [(chunk_example, 4), (pair_example, 19)])
def test_passage_methods_drop_chunks_too_short_for_their_passages(chunks, tokenizer, method, units):
    # 5-unit passages: the chunk method needs 5 units, the pair method 5 + 10 + 5.
    short = dataclasses.replace(chunks[1], sentences=chunks[1].sentences[:units])
    backend = ScriptedBackend()
    outcome = run(method(short, backend, tokenizer, PassageMethodConfig(), seed=0))
    assert outcome.example is None and outcome.drop_reason == "chunk_too_few_units"
    assert outcome.anchors_tried == 0 and backend.evidence_requests == []


def test_sampling_follows_the_seed(chunks, tokenizer):
    config = LinkMethodConfig()

    def anchor_starts(seed: int) -> list[int]:
        backend = ScriptedBackend(targets=(1,))
        run(link_example(chunks[0], backend, tokenizer, config, seed=seed))
        return [r.anchor[0] for r in backend.link_requests]

    assert anchor_starts(0) == anchor_starts(0)
    assert len({tuple(anchor_starts(seed)) for seed in range(5)}) > 1


def test_a_question_request_says_which_method_asks_and_how_many_passages_it_has():
    from linkscan.generators.base import QuestionRequest

    assert QuestionRequest("c", ["a", "b"], [[0]], "chunk").method == "chunk"
    with pytest.raises(ValueError, match="the pair method asks about 2 passage"):
        QuestionRequest("c", ["a", "b"], [[0]], "pair")
    with pytest.raises(ValueError, match="use link, chunk or pair"):
        QuestionRequest("c", ["a", "b"], [[0]], "graph")
