"""The offline back end: links, questions and evidence from rare shared terms, with no LLM.

Deterministic and fast. Each unit of a chunk is reduced to its *terms*: content words (lower-cased,
not stop words), capitalised names and numbers. Terms are weighted by their inverse document
frequency over the units (a unit is a "document") of the whole source document when the stage
announces it (``prepare_document``, ``idf_scope="document"``), else of the chunk; only rare terms
(in at most ``max_df_fraction`` of those units, or ``min_rare_df`` of them) can link two units. A
name that recurs all through a book is no evidence of a link between two of its sentences, even
where it happens to be rare inside one chunk. Names and numbers weigh more than plain words
because a shared name or figure is rarely a coincidence.

Questions come from templates over the linking terms plus one term found only on each side, so
they need both sides, read as questions, and never paste a unit. Evidence is every candidate unit
that mentions a question term: the linked units themselves plus the neighbours that share terms.
"""
from __future__ import annotations

import functools
import hashlib
import math
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

from linkscan.generators.base import (
    Backend,
    EvidenceRequest,
    LinkCandidate,
    LinkRequest,
    QuestionDraft,
    QuestionRequest,
    Refusal,
)
from linkscan.generators.config import OfflineConfig
from linkscan.schemas import Chunk

PROMPT_VERSION = "offline-v1"

# Words (with inner apostrophes and single hyphens: "O'Neil", "well-known", not "you--for") and numbers.
_TOKEN_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:['\-][A-Za-z0-9]+)*|\d+(?:[.,:]\d+)*")
# spaCy's English stop words plus archaic and speech words that are frequent in older books.
_EXTRA_STOP = {
    "thee", "thou", "thy", "thine", "hath", "doth", "shall", "upon", "unto", "said", "says", "like",
    "yes", "no", "oh", "mr", "mrs", "miss", "sir", "madam", "one", "two", "also", "would", "could",
    "should", "might", "must", "will", "may", "page", "chapter", "section", "figure", "table",
    "amid", "amidst", "among", "amongst", "towards", "whilst", "till", "until", "shan't", "don't",
}


# Word endings of verbs, adverbs and adjectives: such words make poor question subjects.
_NON_NOUN_ENDINGS = ("ing", "ed", "ly", "ful", "ous", "ive", "ible", "able")
# Frequent verbs (irregular past forms above all) and adverbs that no suffix rule catches; they
# make poor question subjects and phrase ends ("jeanne threw", "gave forth").
_VERB_LIKE = frozenset("""
    arose awoke became began bent bore bound bought brought built burnt caught chose clung came cost
    crept dealt dug drew drank drove dwelt fell felt fought found fled flung forgot forgave froze got
    gave went grew hung heard hid held hurt kept knelt knew laid led leant leapt left lent lay lit lost
    made meant met paid put quit read rode rang rose ran said saw sought sold sent set shook shone
    shot showed shut sang sank sat slept slid spoke spent spun spat split spread sprang stood stole
    stuck stung strode struck swore swept swam swung took taught tore told thought threw understood
    woke wore wept won wound wrote asks gets gives goes knows makes says sees takes thinks tells
    comes looks seems wants uses finds determines provides requires contains includes allows
    seen known done gone given taken written shown grown drawn born borne chosen spoken broken
    fallen forgotten hidden risen driven eaten beaten
    forth beneath within without upon toward towards thus hence therefore however perhaps indeed
    rather quite almost already always never often soon still yet again also else ever even just
    much more most less least many several certain whole following previous next last first second
    away farther further today tomorrow yesterday later earlier instead otherwise together alone
    find make take give know think tell become show apply applies mean means conclude restore hold
    seem want need keep bring begin leave call try ask feel provide require include allow consider
""".split())
# question_rank levels: 0 name, 1 phrase, 2 noun-like word, 3 number, 4 verb-like word. A question
# is about a term up to _SUBJECT_RANK; context terms that tie it to each side go up to _CONTEXT_RANK.
_SUBJECT_RANK = 3
_CONTEXT_RANK = 2
_TWO_TERM_TEMPLATES = {
    "chunk": ("How is {a} related to {b}?", "What is said about {a} in connection with {b}?"),
    "pair": ("How does {a} relate to {b}?", "What do {a} and {b} have to do with each other?"),
}
_CONTRACTIONS = ("n't", "'re", "'ve", "'ll", "'d", "'m")
_DIGITS = re.compile(r"\d")
_PHRASE_GAP = re.compile(r"[ \t]*\n?[ \t]*")
_SENTENCE_END = frozenset(".!?:;“‘([")
_CLOSING = frozenset("\"'”’)]")


def _opens_sentence(text: str, start: int) -> bool:
    """True when the token at ``start`` opens the text, a line or a sentence.

    A line start counts: verse capitalises every line, and a name at the start of a hard-wrapped
    line is still recognised by its other, mid-line occurrences.
    """
    i = start - 1
    while i >= 0 and text[i] in " \t":
        i -= 1
    if i < 0 or text[i] == "\n":
        return True
    quote_at = i
    while i >= 0 and text[i] in _CLOSING:
        i -= 1
    if i < quote_at and (i < 0 or text[i].isspace()):
        return True  # a quote after a space opens quoted speech
    return i < 0 or text[i] in _SENTENCE_END


@functools.lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(w.lower() for w in STOP_WORDS) | _EXTRA_STOP


@dataclass(frozen=True)
class Term:
    key: str  # lower-cased form, the identity of the term
    kind: str  # "word", "phrase", "name", "number", or "opener" (capitalised at a sentence start)


# Chunk indexes kept for the chunks asked about most recently (a chunk is asked up to three times).
_INDEXED_CHUNKS = 64
# prepare_document keeps the terms of a document's first units up to this many (about 1.4 kB a
# unit); a longer document's later chunks find their terms again when they are asked about, so
# memory stays bounded (a 50 MB document has 600,000 units) at the cost of extracting them twice.
_KEEP_PREPARED_UNITS = 50_000


@dataclass
class _DocumentFrequencies:
    df: Counter  # term key -> number of the document's units holding it
    n_units: int


@dataclass
class _ChunkIndex:
    """Terms of every unit of one chunk, with document frequencies over the units."""

    unit_terms: list[dict[str, Term]]
    surface: dict[str, str]  # rare term key -> how a question shows it
    weight: dict[str, float]  # rare term key -> IDF weight x kind multiplier
    kind: dict[str, str]  # term key -> "name" if it was ever seen as a name, else its kind
    rare: list[frozenset[str]] = field(default_factory=list)  # per unit, its rare terms

    def __post_init__(self) -> None:
        self.rare = [frozenset(key for key in terms if key in self.weight) for terms in self.unit_terms]

    def rare_terms(self, unit: int) -> frozenset[str]:
        return self.rare[unit]


class OfflineBackend(Backend):
    """Answers the three generator questions from rare shared terms; see the module docstring."""

    name = "offline"
    prompt_version = PROMPT_VERSION

    def __init__(self, config: OfflineConfig | None = None, seed: int = 0) -> None:
        self.config = config or OfflineConfig()
        self.seed = seed
        self._stop = _stop_words()
        self._cache: OrderedDict[tuple[str, int], _ChunkIndex] = OrderedDict()
        # chunk id -> its units' terms, their surface forms, and the document's term frequencies
        self._prepared: dict[str, tuple[list[dict[str, Term]], dict[str, str], _DocumentFrequencies]] = {}

    def prepare_document(self, chunks: Sequence[Chunk]) -> None:
        """Count term frequencies over every unit of one document before its chunks are asked about.

        With ``idf_scope="chunk"`` this does nothing and each chunk is weighed on its own.
        """
        if self.config.idf_scope != "document":
            return
        frequencies = _DocumentFrequencies(Counter(), 0)
        kept_units = 0
        for chunk in chunks:
            surface: dict[str, str] = {}
            unit_terms = [self.unit_terms(text, surface) for text in chunk.sentences]
            for terms in unit_terms:
                frequencies.df.update(terms.keys())
            frequencies.n_units += len(unit_terms)
            kept_units += len(unit_terms)
            if kept_units <= _KEEP_PREPARED_UNITS:
                self._prepared[chunk.chunk_id] = (unit_terms, surface, frequencies)
            else:  # a very long document: its later chunks' terms are found again when asked for
                self._prepared[chunk.chunk_id] = (None, None, frequencies)

    def forget_document(self, chunks: Sequence[Chunk]) -> None:
        """Drop what ``prepare_document`` kept for chunks that were never asked about (a chunk too
        short for any anchor), so a long shard does not accumulate document statistics."""
        for chunk in chunks:
            self._prepared.pop(chunk.chunk_id, None)

    # -- term index ------------------------------------------------------------------------------
    def unit_terms(self, text: str, surface: dict[str, str] | None = None) -> dict[str, Term]:
        """The terms of one unit: content words, two-word phrases, capitalised names and numbers.

        A capitalised token counts as a name unless it opens a sentence; short acronyms, camel case
        and identifiers with digits (``FEC``, ``LTEnc``, ``RFC3453``) count as names too. Two
        adjacent content words form a phrase (``environmental protection``), a name if both are.
        ``surface`` (if given) collects the first form each term was seen in, away from a sentence start.
        """
        terms: dict[str, Term] = {}
        # key, shown form, end offset, is a name, opens a sentence without being a name
        previous: tuple[str, str, int, bool, bool] | None = None
        min_word_chars = self.config.min_word_chars
        for match in _TOKEN_RE.finditer(text):
            token = match.group()
            if token[0].isdigit():
                previous = None
                if len(_DIGITS.findall(token)) >= 2 and token not in terms:
                    terms[token] = Term(token, "number")
                continue
            lower = token.lower()
            # Two-letter tokens are noise ("La", "St", "de") unless they are acronyms ("IP", "UK");
            # contractions ("it's", "doesn't", "they've") are not terms.
            if (
                lower in self._stop
                or len(lower) < 2
                or len(token) == 2 and not token.isupper()
                or "'" in lower and lower.split("'")[0] in self._stop
                or lower.endswith(_CONTRACTIONS)
            ):
                previous = None
                continue
            capital = token[0].isupper()
            opens = capital and _opens_sentence(text, match.start())
            shouted = capital and len(token) > 8 and token.isupper()  # a heading in capitals, not an acronym
            is_name = not shouted and (
                token[1:] != token[1:].lower()  # acronyms and camel case: FEC, LTEnc
                or _DIGITS.search(token) is not None  # identifiers: RFC3453, ifIndex2
                or capital and not opens
            )
            shown = token if is_name or not opens and not shouted else lower
            if is_name:
                terms[lower] = Term(lower, "name")
            elif len(lower) >= min_word_chars and lower not in terms:
                # A capitalised sentence opener may be a name or not: the other occurrences decide.
                terms[lower] = Term(lower, "opener" if capital else "word")
            if surface is not None and not shouted and (is_name or not opens):
                surface.setdefault(lower, token)
            # Phrases end in a noun-like word and do not start with a verb form ("refused", "making").
            if (
                previous is not None
                and not lower.endswith(_NON_NOUN_ENDINGS)
                and not previous[0].endswith(("ed", "ing", "ly"))
                and lower not in _VERB_LIKE
                and previous[0] not in _VERB_LIKE
                and _PHRASE_GAP.fullmatch(text, previous[2], match.start())
            ):
                key = f"{previous[0]} {lower}"
                kind = "name" if previous[3] and is_name else "phrase"
                terms[key] = Term(key, kind)
                # A phrase seen only at a sentence start is shown lower-cased ("captain Ilse") unless
                # a later occurrence mid-sentence gives its real form ("Captain Ilse").
                if surface is not None and (key not in surface or surface[key].startswith("\0")):
                    form = f"{previous[1]} {shown}"
                    surface[key] = f"\0{form}" if previous[4] else form
            previous = (lower, shown, match.end(), is_name, opens and not is_name)
        return terms

    def index(self, chunk_id: str, units: Sequence[str]) -> _ChunkIndex:
        key = (chunk_id, len(units))
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        prepared = self._prepared.pop(chunk_id, None)
        if prepared is not None and prepared[0] is None:  # prepared without its terms: find them again
            surface = {}
            prepared = ([self.unit_terms(text, surface) for text in units], surface, prepared[2])
        if prepared is not None and len(prepared[0]) == len(units):
            unit_terms, surface, frequencies = prepared
            df, n = frequencies.df, frequencies.n_units
        else:
            unit_terms, surface, df = [], {}, Counter()
            for text in units:
                terms = self.unit_terms(text, surface)
                unit_terms.append(terms)
                df.update(terms.keys())
            n = len(units)
        # A term is a name only if the chunk never writes it in lower case ("Directory" vs "directory");
        # a capitalised sentence opener is a name if it is one elsewhere, else a word.
        kinds: dict[str, str] = {}
        priority = {"word": 3, "name": 2, "phrase": 2, "number": 2, "opener": 1}
        for terms in unit_terms:
            for term in terms.values():
                if priority[term.kind] > priority[kinds.get(term.key, "opener")] or term.key not in kinds:
                    kinds[term.key] = term.kind
        kinds = {key: "word" if kind == "opener" else kind for key, kind in kinds.items()}
        max_df = max(self.config.min_rare_df, int(self.config.max_df_fraction * n))
        multiplier = {
            "word": 1.0,
            "phrase": self.config.phrase_weight,
            "name": self.config.name_weight,
            "number": self.config.number_weight,
        }
        chunk_terms = {key for terms in unit_terms for key in terms}
        weight = {
            term: math.log((n + 1) / df[term]) * multiplier["phrase" if " " in term else kinds[term]]
            for term in sorted(chunk_terms)
            if df[term] <= max_df
        }
        # Names keep their capitals; a word is shown as written mid-sentence, else in lower case.
        shown = {term: surface.get(term, term).lstrip("\0") for term in weight}
        built = _ChunkIndex(unit_terms, shown, weight, kinds)
        self._cache[key] = built
        if len(self._cache) > _INDEXED_CHUNKS:
            self._cache.popitem(last=False)
        return built

    def question_rank(self, index: _ChunkIndex, term: str) -> tuple[int, float, str]:
        """Sort key of terms for a question: names, phrases, noun-like words, numbers, other words."""
        kind = index.kind[term]
        if kind == "word":
            rank = 4 if term.endswith(_NON_NOUN_ENDINGS) or term in _VERB_LIKE else 2
        else:
            rank = {"name": 0, "phrase": 1, "number": 3}[kind]
        return rank, -index.weight[term], term

    def link_score(self, index: _ChunkIndex, a: int, b: int) -> tuple[float, tuple[str, ...]]:
        """Summed weight of the rare terms units a and b share, and those terms (strongest first)."""
        shared = index.rare_terms(a) & index.rare_terms(b)
        ordered = tuple(sorted(shared, key=lambda t: (-index.weight[t], t)))
        return sum(index.weight[t] for t in ordered), ordered

    # -- the three answers -----------------------------------------------------------------------
    async def find_links(self, request: LinkRequest) -> list[LinkCandidate]:
        index = self.index(request.chunk_id, request.units)
        candidates = []
        for target in request.window:
            best: tuple[float, tuple[str, ...], int] | None = None
            for source in request.anchor:
                score, terms = self.link_score(index, source, target)
                if score > 0 and (best is None or score > best[0]):
                    best = (score, terms, source)
            if best is None or best[0] < self.config.min_link_score:
                continue
            score, terms, source = best
            ranked = _distinct(sorted(terms, key=lambda t: self.question_rank(index, t)))
            shown = ", ".join(index.surface[t] for t in ranked[:4])
            candidates.append(LinkCandidate(
                target=target,
                score=round(score, 4),
                reason=f"shares rare terms: {shown}",
                terms=terms,
                source=source,
            ))
        candidates.sort(key=lambda c: (-c.score, c.target))
        return candidates[: self.config.max_links_per_anchor]

    async def write_question(self, request: QuestionRequest) -> QuestionDraft:
        index = self.index(request.chunk_id, request.units)
        if request.method == "chunk":
            return self._passage_question(request, index)
        first, second = request.passages[0], request.passages[1]
        if request.link is not None and request.link.terms:
            shared = [t for t in request.link.terms if t in index.weight]
            source = request.link.source if request.link.source is not None else first[0]
            sides = ([source], [request.link.target])
        else:
            shared = []
            sides = (list(first), list(second))
        if not shared:
            return self._pair_question(request, index, first, second)
        shared = _distinct(sorted(shared, key=lambda t: self.question_rank(index, t)))
        shared = [t for t in shared if self.question_rank(index, t)[0] <= _SUBJECT_RANK]
        if not shared:
            raise Refusal("no_question_term", "the link shares only verb-like words")
        # Context terms, one per side, make the question need both; only names, phrases and nouns.
        # Each is absent from the whole other passage, not only from the unit at its end.
        a_only = self._side_term(
            index, sides[0], exclude=set(shared) | self._terms_of(index, second), max_rank=_CONTEXT_RANK
        )
        b_only = self._side_term(
            index, sides[1], exclude=set(shared) | self._terms_of(index, first) | {a_only or ""},
            max_rank=_CONTEXT_RANK,
        )
        lead = shared[0]
        names = [t for t in shared if index.kind[t] == "name"]
        numbers = [t for t in shared if index.kind[t] == "number"]
        s = index.surface
        variants: list[str] = []
        if a_only and b_only:
            if lead in names:
                variants.append(f"What role does {s[lead]} play with respect to {s[a_only]} and to {s[b_only]}?")
            elif lead in numbers:
                variants.append(f"What does {s[lead]} refer to, both in connection with {s[a_only]} and with {s[b_only]}?")
            variants += [
                f"How is {s[lead]} connected to both {s[a_only]} and {s[b_only]}?",
                f"What is said about {s[lead]} in relation to {s[a_only]}, and how does that bear on {s[b_only]}?",
            ]
        if len(shared) >= 2:
            second_term = shared[1]
            context = f" where {s[a_only]} is concerned" if a_only else ""
            variants.append(f"How do {s[lead]} and {s[second_term]} relate to each other{context}?")
        if not variants:
            variants.append(f"What is said about {s[lead]} in each place it comes up, and how do those mentions relate?")
        question = variants[self._pick(request.chunk_id, "link", len(variants))]
        terms = tuple(dict.fromkeys([*shared[:2], *(t for t in (a_only, b_only) if t)]))
        return QuestionDraft(question=question, terms=terms)

    async def pick_evidence(self, request: EvidenceRequest) -> list[int]:
        index = self.index(request.chunk_id, request.units)
        wanted = set(request.question.terms)
        if not wanted:
            raise Refusal("no_question_terms", "the question carries no terms to match evidence against")
        return [u for u in sorted(set(request.candidates)) if wanted & set(index.unit_terms[u])]

    # -- helpers ---------------------------------------------------------------------------------
    def _pick(self, chunk_id: str, purpose: str, n: int) -> int:
        digest = hashlib.sha256(f"{self.seed}:{purpose}:{chunk_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % n

    @staticmethod
    def _terms_of(index: _ChunkIndex, units: Sequence[int]) -> set[str]:
        found: set[str] = set()
        for unit in units:
            found |= set(index.unit_terms[unit])
        return found

    def _side_term(
        self, index: _ChunkIndex, units: Sequence[int], exclude: set[str], max_rank: int = _SUBJECT_RANK
    ) -> str | None:
        """The best question term of these units outside ``exclude`` (None if there is none)."""
        best: tuple[int, float, str] | None = None
        excluded_words = {word for term in exclude for word in term.split()}
        for unit in units:
            for term in index.rare_terms(unit):
                if term in exclude or excluded_words.intersection(term.split()):
                    continue
                candidate = self.question_rank(index, term)
                if candidate[0] > max_rank:
                    continue
                if best is None or candidate < best:
                    best = candidate
        return best[2] if best else None

    def _passage_question(self, request: QuestionRequest, index: _ChunkIndex) -> QuestionDraft:
        """Chunk method: two rare terms of one passage, from different units where possible."""
        passage = list(request.passages[0])
        first = self._side_term(index, passage, exclude=set())
        others = [u for u in passage if first not in index.unit_terms[u]] if first else []
        return self._two_term_question(request, index, passage, others or passage, "chunk")

    def _pair_question(
        self, request: QuestionRequest, index: _ChunkIndex, first: Sequence[int], second: Sequence[int]
    ) -> QuestionDraft:
        """Pair method (or a link without terms): the best question term of each passage."""
        return self._two_term_question(request, index, first, second, "pair")

    def _two_term_question(
        self, request: QuestionRequest, index: _ChunkIndex, first: Sequence[int], second: Sequence[int], purpose: str
    ) -> QuestionDraft:
        a_term = self._side_term(index, first, exclude=set())
        b_term = self._side_term(index, second, exclude={a_term}) if a_term else None
        if a_term is None or b_term is None:
            raise Refusal("no_rare_terms", "a passage has no rare term to ask about")
        templates = _TWO_TERM_TEMPLATES[purpose]
        template = templates[self._pick(request.chunk_id, purpose, len(templates))]
        return QuestionDraft(template.format(a=index.surface[a_term], b=index.surface[b_term]), (a_term, b_term))


def _distinct(terms: list[str]) -> list[str]:
    """Terms in order, without those that share a word with an earlier one ("protection" after
    "environmental protection")."""
    kept: list[str] = []
    words: set[str] = set()
    for term in terms:
        parts = set(term.split())
        if parts & words:
            continue
        kept.append(term)
        words |= parts
    return kept
