"""The wording checks: what a link names, when a question copies a sentence, when it needs both sides."""
from __future__ import annotations

from linkscan.generators.wording import content_words, is_copy, mentions, one_sided, only_in, restates, stem

OPENED = "Ada Lark opened the Grendal mill on the river Tarn in 1887, hiring forty weavers."
BURNED = "The Grendal mill burned down in the winter of 1921, and the weavers left the valley."


def test_stems_meet_across_inflections_and_possessives():
    assert stem("licences") == stem("licence") and stem("cited") == stem("cites") == stem("cite") == "cit"
    assert stem("Lark's") == "lark" and stem("weavers") == "weaver"


def test_content_words_keep_names_numbers_and_acronyms():
    assert content_words("What did the IP header of RFC 1144 say to us?") == ["ip", "header", "rfc", "1144"]


def test_a_phrase_is_mentioned_when_half_its_words_are_there():
    assert mentions(BURNED, "Grendal mill") and mentions(BURNED, "the old Grendal textile mill")
    assert not mentions(BURNED, "Ada Lark") and not mentions(BURNED, "the")


def test_a_copy_is_mostly_runs_of_a_sources_words():
    assert is_copy("The Grendal mill burned down in the winter of 1921.", [OPENED, BURNED])
    assert not is_copy("Fire took the mill Lark had opened, years after 1887.", [OPENED, BURNED])


def test_a_sentence_turned_into_a_question_restates_it_but_a_bridge_question_does_not():
    assert restates("Did Ada Lark, hiring forty weavers, open the Grendal mill on the Tarn river in 1887?", OPENED)
    bridge = "In which winter did the Grendal mill that Ada Lark opened on the river Tarn in 1887 burn down?"
    assert not restates(bridge, OPENED)


def test_a_two_passage_question_must_name_something_only_each_side_states():
    assert one_sided("When did the Grendal mill that Ada Lark opened burn down?", [OPENED], [BURNED]) is None
    assert one_sided("Who opened the Grendal mill in 1887?", [OPENED], [BURNED]) == "b"
    assert one_sided("When did the Grendal mill burn down?", [OPENED], [BURNED]) == "a"
    assert only_in([BURNED], [OPENED], 3) == ["burned", "valley", "winter"]  # longest first, then a-z
