"""Language identification with py3langid (its model ships inside the package; no download)."""
from __future__ import annotations

import functools

# Classifying a few spread-out samples is as reliable as the whole text for long documents, and
# keeps the cost per document bounded.
_SAMPLES = 4
_SAMPLE_CHARS = 2500


@functools.lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_DIR / MODEL_FILE, norm_probs=True)


def _sample(text: str) -> str:
    if len(text) <= _SAMPLES * _SAMPLE_CHARS:
        return text
    step = (len(text) - _SAMPLE_CHARS) // (_SAMPLES - 1)
    return "\n".join(text[i * step: i * step + _SAMPLE_CHARS] for i in range(_SAMPLES))


def detect_language(text: str) -> tuple[str, float]:
    """The most likely ISO 639-1 language of ``text`` and its probability (0..1)."""
    if not text.strip():
        return "und", 0.0
    language, probability = _identifier().classify(_sample(text))
    return str(language), float(probability)
