"""Language identification and the language filter with its stored score."""
from __future__ import annotations

import json

from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.corpus import iter_documents
from linkscan.pipeline.drops import Drops
from linkscan.pipeline.language import detect_language

ENGLISH = ("The committee met in the spring to review the budget of the town and agreed that the "
           "roads needed repair before the winter came. ") * 12
FRENCH = ("Le comité s'est réuni au printemps pour examiner le budget de la ville et a convenu que les "
          "routes devaient être réparées avant l'hiver. ") * 12


def test_english_is_detected_with_a_high_probability():
    language, score = detect_language(ENGLISH)
    assert language == "en" and score > 0.95


def test_french_is_detected_as_french():
    assert detect_language(FRENCH)[0] == "fr"


def test_text_without_letters_has_no_language():
    assert detect_language("   \n ") == ("und", 0.0)


def test_long_documents_are_classified_from_samples_across_the_text():
    # English at the start only: samples from the middle and end outvote it.
    assert detect_language(ENGLISH[:2000] + FRENCH * 20)[0] == "fr"


def _corpus(tmp_path, texts):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def test_filter_keeps_english_with_its_score_and_drops_the_rest(tmp_path):
    drops = Drops()
    documents = list(iter_documents(_corpus(tmp_path, [ENGLISH, FRENCH]), CorpusConfig(), drops))
    assert [d.lang for d in documents] == ["en"]
    assert documents[0].lang_score > 0.95
    assert drops.as_dict() == {"not_english": 1}


def test_a_score_threshold_above_the_documents_score_drops_it(tmp_path):
    mixed = ENGLISH[:1200] + FRENCH[:700]
    language, score = detect_language(mixed)
    assert language == "en" and 0.5 < score < 0.95
    drops = Drops()
    config = CorpusConfig(min_language_score=0.95)
    assert list(iter_documents(_corpus(tmp_path, [mixed]), config, drops)) == []
    assert drops.as_dict() == {"not_english": 1}


def test_language_none_keeps_every_language_and_still_records_it(tmp_path):
    documents = list(iter_documents(_corpus(tmp_path, [FRENCH]), CorpusConfig(language=None), Drops()))
    assert [(d.lang, d.lang_score > 0.9) for d in documents] == [("fr", True)]
