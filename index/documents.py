"""Source documents: reading UTF-8 text files into `Document` objects.

A document's id is its file stem; its title is a front-matter ``title:`` when the file starts with a
``---`` block, else its first sentence. ``text`` is always the file's exact contents, so character
offsets computed anywhere downstream index the original text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from index.errors import BadDocument

DOC_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_FRONT_MATTER_RE = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_TITLE_MAX_CHARS = 160


@dataclass(frozen=True, slots=True)
class Document:
    """One source article. ``body_start`` is where the text after any front matter begins."""

    doc_id: str
    title: str
    text: str
    body_start: int = 0


def parse_document(doc_id: str, text: str) -> Document:
    """Build a `Document` from raw text, taking the title from front matter or the first sentence.

    Example: parse_document("a", "---\\ntitle: Hi\\n---\\nBody.") -> title "Hi", body_start 20.
    """
    if not DOC_ID_RE.match(doc_id):
        raise BadDocument(
            f"document id {doc_id!r} is not allowed: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if "\x00" in text:
        raise BadDocument(f"document {doc_id!r} contains NUL bytes; is it a text file?")
    title = ""
    body_start = 0
    match = _FRONT_MATTER_RE.match(text)
    if match:
        body_start = match.end()
        for line in match.group(1).splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "title" and value.strip():
                title = value.strip().strip("\"'")
    if not title:
        title = _first_sentence(text[body_start:])
    return Document(doc_id=doc_id, title=title or doc_id, text=text, body_start=body_start)


def _first_sentence(body: str) -> str:
    # Local import: chunking imports nothing from here, and keeping this lazy avoids a cycle later.
    from index.chunking import split_sentences

    spans = split_sentences(body)
    if not spans:
        return ""
    start, end = spans[0]
    title = " ".join(body[start:end].split())
    if len(title) > _TITLE_MAX_CHARS:
        title = title[: _TITLE_MAX_CHARS - 1].rstrip() + "…"
    return title


def load_documents(source_dir: Path) -> list[Document]:
    """Read every ``*.txt`` file of ``source_dir`` (sorted by name) as a UTF-8 document."""
    if not source_dir.is_dir():
        raise BadDocument(f"source directory {str(source_dir)!r} does not exist or is not a directory")
    docs = []
    for path in sorted(source_dir.glob("*.txt")):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise BadDocument(f"{path.name} is not valid UTF-8 (byte {exc.start}); re-save it as UTF-8") from exc
        docs.append(parse_document(path.stem, text))
    if not docs:
        raise BadDocument(f"no *.txt documents found in {str(source_dir)!r}")
    return docs


def corpus_checksum(docs: Iterable[Document]) -> str:
    """A sha256 over ids and exact texts, independent of the order documents are given in."""
    digest = hashlib.sha256()
    for doc in sorted(docs, key=lambda d: d.doc_id):
        for part in (doc.doc_id, doc.text):
            data = part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
    return digest.hexdigest()


def write_source(source_dir: Path, doc: Document) -> Path:
    """Write ``doc.text`` to ``<source_dir>/<doc_id>.txt`` atomically (temp file, fsync, rename)."""
    import os
    import tempfile

    source_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".txt", dir=source_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(doc.text)
            fh.flush()
            os.fsync(fh.fileno())
        final = source_dir / f"{doc.doc_id}.txt"
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def with_title(doc_id: str, title: str | None, text: str) -> Document:
    """A document from an API upload: an explicit title is kept as front matter in the text itself,
    so the file on disk, the index and citation offsets all agree."""
    if title and title.strip():
        clean = " ".join(title.split()).replace("---", "—")
        return parse_document(doc_id, f"---\ntitle: {clean}\n---\n{text}")
    return parse_document(doc_id, text)
