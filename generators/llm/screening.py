"""Screening model-written questions for text that speaks to the model instead of asking about the
document: an instruction a document planted, obeyed or passed on, in any language or disguise.

A question is first normalised as documents are (``linkscan.pipeline.clean``: controls, zero-width
and bidi characters out) and in NFKC, so fullwidth letters are letters. What is stored is that
normalised text. The checks then read a *skeleton* of it, which undoes the usual disguises:
look-alike letters from other scripts mapped to Latin, digits and symbols inside words read as the
letters they stand for (leetspeak), letters spaced or dotted apart joined. On the skeleton:

- chat-template and role markup (``<|im_start|>``, ``[INST]``, ``system:``) is never a question;
- a word that mixes Latin with Cyrillic or Greek letters is a disguise, not a name;
- a long base64 run is decoded and screened too;
- commands to the model (ignore the instructions, answer only with, you are now, pretend to be)
  in English, French, German, Spanish, Italian, Portuguese and Dutch, counted only in the
  imperative at the start of a clause, so "Why did the judge ignore the rules?" stays a question.
"""
from __future__ import annotations

import base64
import binascii
import re
import unicodedata

from linkscan.pipeline.clean import clean_text

# Letters of other scripts that look like Latin ones (the common confusables of Cyrillic and Greek).
_LOOKALIKES = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "γ": "y",
})
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s",
                       "!": "i", "|": "l", "+": "t"})
_TOKEN = re.compile(r"\S+")
_HAS_LETTER = re.compile(r"[^\W\d_]")
_SPACED_LETTERS = re.compile(r"\b(?:[^\W\d_][ .\-_*]){2,}[^\W\d_]\b")
_LATIN = re.compile(r"[a-z]", re.IGNORECASE)
_OTHER_SCRIPT = re.compile(r"[\u0370-\u03ff\u0400-\u052f]")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")

_MARKUP = re.compile(
    r"<\|[a-z_]{2,20}\|>|\[/?(?:INST|SYS)\]|<</?SYS>>|</?s>|<\|?(?:system|assistant|user)\|?>"
    r"|(?:^|[.;!?\n]\s*)(?:system|assistant|developer|user)\s*:|###\s*(?:instruction|system|response)",
    re.IGNORECASE,
)

# The start of a clause, where a command stands (in any of the languages below).
_CLAUSE = r"(?:^|[.;:!?,\"'«»()\-]\s*|\b(?:and|then|please|now|so|et|puis|und|dann|bitte|y|luego|e|poi|en)\s+)"
_COMMANDS = [
    # English
    _CLAUSE + r"(?:ignore|disregard|forget|override|overrule|bypass|skip|abandon|drop)\b.{0,40}"
    r"\b(?:instructions?|rules?|prompts?|directions?|guidelines?|guidance|constraints?|orders?|polic(?:y|ies)|"
    r"everything|anything|all)\b",
    _CLAUSE + r"(?:reply|respond|answer|say|print|output|write|type|return|repeat)\b.{0,25}"
    r"\b(?:only|just|nothing but|exactly)\b",
    r"\b(?:can|could|will|would) you (?:please )?(?:reply|respond|say|print|output|write)\b.{0,25}"
    r"\b(?:only|just|nothing but|exactly)\b",
    r"\b(?:system|developer|hidden|original|initial|secret) (?:prompt|message|instructions?)\b",
    r"\b(?:will|would|do|can) you (?:comply|obey)\b",
    r"\byou (?:are|will be|must be) now\b|\bfrom now on,? you\b|\bpretend (?:to be|you are)\b",
    _CLAUSE + r"(?:act|behave|roleplay|role-play)\s+(?:as|like)\s+(?:a|an|the|my)?\s*"
    r"(?:ai|assistant|chatbot|model|admin|administrator|hacker|unfiltered|jailbroken|dan|developer|system)\b",
    r"\b(?:let'?s|we will|we'll)\s+(?:role-?play|play a game)\b|\bstay in character\b",
    r"\b(?:jailbreak|jailbroken|pwned|developer mode|dan mode|do anything now)\b|\bhacked:",
    r"\bas an (?:ai|a\.i\.|language model|llm)\b",
    # French
    _CLAUSE + r"(?:ignorez|ignore|ignorer|oubliez|oublie|oublier|négligez)\b.{0,40}"
    r"\b(?:instructions?|consignes?|règles?|regles?|directives?|tout)\b",
    _CLAUSE + r"(?:répondez|réponds|repondez|reponds|écrivez|ecris|écris|dites|dis|affichez)\b.{0,30}"
    r"\b(?:seulement|uniquement|rien d'autre que)\b",
    r"\b(?:tu es|vous êtes|vous etes) (?:maintenant|désormais|desormais)\b|\b(?:invite|message) (?:système|systeme)\b",
    # German
    _CLAUSE + r"(?:ignoriere|ignorieren|ignorier|vergiss|vergessen|missachte)\b.{0,40}"
    r"\b(?:anweisungen|anweisung|regeln|befehle|vorgaben|alles)\b",
    _CLAUSE + r"(?:antworte|antworten|schreibe|schreib|sage|sag|gib)\b.{0,30}\b(?:nur|ausschließlich|ausschliesslich)\b",
    r"\b(?:du bist|sie sind) (?:jetzt|nun|ab sofort)\b|\bsystem(?:-)?(?:prompt|aufforderung|anweisung)\b",
    # Spanish
    _CLAUSE + r"(?:ignora|ignore|ignoren|olvida|olvide|olviden|omite)\b.{0,40}"
    r"\b(?:instrucciones|instrucción|instruccion|reglas|órdenes|ordenes|todo)\b",
    _CLAUSE + r"(?:responde|responda|contesta|conteste|escribe|escriba|di|diga)\b.{0,30}"
    r"\b(?:solo|sólo|solamente|únicamente|unicamente)\b",
    r"\b(?:ahora eres|ahora es usted|a partir de ahora,? (?:eres|tú))\b|\bmensaje del sistema\b",
    # Italian
    _CLAUSE + r"(?:ignora|ignorate|dimentica|dimenticate)\b.{0,40}\b(?:istruzioni|regole|tutto)\b",
    _CLAUSE + r"(?:rispondi|rispondete|scrivi|dì|di)\b.{0,30}\b(?:solo|soltanto|solamente)\b",
    r"\b(?:ora sei|adesso sei|da ora in poi,? sei)\b",
    # Portuguese
    _CLAUSE + r"(?:ignore|ignora|esqueça|esqueca|esqueçam)\b.{0,40}\b(?:instruções|instrucoes|regras|tudo)\b",
    _CLAUSE + r"(?:responda|responde|escreva|escreve|diga)\b.{0,30}\b(?:apenas|somente|só)\b",
    r"\b(?:agora você é|agora voce e|agora és)\b",
    # Dutch
    _CLAUSE + r"(?:negeer|vergeet)\b.{0,40}\b(?:instructies|regels|alles)\b",
    _CLAUSE + r"(?:antwoord|schrijf|zeg)\b.{0,30}\b(?:alleen|slechts)\b",
    r"\bje bent nu\b",
]
_SPEAKS_TO_MODEL = re.compile("|".join(f"(?:{pattern})" for pattern in _COMMANDS), re.IGNORECASE)
# Format characters (zero-width joiners, word joiners, soft hyphens) beyond what documents drop.
_FORMAT = re.compile("[\u00ad\u200b-\u200f\u2060-\u2064\u206a-\u206f\ufeff]")


def normalise_question(text: str) -> str:
    """A question as stored: cleaned as documents are, in NFKC, format characters out, one line."""
    text = clean_text(text, unicode_form="NFKC", gutenberg=False)
    return " ".join(_FORMAT.sub("", text).split())


def skeleton(text: str) -> str:
    """``text`` with the usual disguises undone (for screening only, never stored)."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_LOOKALIKES)
    text = _SPACED_LETTERS.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group(0)), text)

    def unleet(match: re.Match) -> str:
        token = match.group(0)
        core = token.strip(".,;:!?\"'()")
        # Only tokens that mix letters with digits or symbols: "1gn0r3", "h4ck3d", not "1921".
        if _HAS_LETTER.search(core) and re.search(r"[0-9@$!|+]", core):
            return token.replace(core, core.translate(_LEET))
        return token

    return _TOKEN.sub(unleet, text)


def _mixed_script_word(text: str) -> str | None:
    for word in re.findall(r"[^\W\d_]+", text):
        if _LATIN.search(word) and _OTHER_SCRIPT.search(word):
            return word
    return None


def _decoded_base64(text: str) -> list[str]:
    """Readable text hidden as base64 runs in ``text``."""
    found = []
    for run in _BASE64.findall(text):
        if not (re.search(r"[a-z]", run) and re.search(r"[A-Z]", run) or re.search(r"[0-9+/]", run)):
            continue
        try:
            raw = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        decoded = raw.decode("utf-8", errors="ignore")
        if len(decoded) >= 8 and sum(ch.isprintable() for ch in decoded) >= 0.9 * len(decoded):
            found.append(decoded)
    return found


def speaks_to_model(question: str) -> str | None:
    """The reason a (normalised) question is no question about a document, or None:
    ``chat_markup``, ``obfuscated`` (a word mixing scripts, or text hidden as base64) or
    ``follows_injection`` (a command to the model)."""
    if _MARKUP.search(question):
        return "chat_markup"
    if _mixed_script_word(question):
        return "obfuscated"
    hidden = _decoded_base64(question)
    if hidden:
        return "obfuscated"
    if _SPEAKS_TO_MODEL.search(question) or _SPEAKS_TO_MODEL.search(skeleton(question)):
        return "follows_injection"
    return None
