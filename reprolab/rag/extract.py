"""Plain text out of an uploaded txt, Markdown, HTML or PDF file, with a clear error for anything unusable."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import PurePosixPath

from reprolab.rag.errors import InputError, UnprocessableDocument, UnsupportedType

KINDS = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".pdf": "pdf"}
# Content types a client may declare for each kind; octet-stream / missing defer to the file name.
CONTENT_TYPES = {
    "text": {"text/plain"},
    "markdown": {"text/markdown", "text/x-markdown", "text/plain"},
    "html": {"text/html", "application/xhtml+xml"},
    "pdf": {"application/pdf"},
}
GENERIC_TYPES = {"", "application/octet-stream"}


def kind_of(filename: str, content_type: str | None = None) -> str:
    """The document kind from the file name, checked against the declared content type."""
    suffix = PurePosixPath(filename or "").suffix.lower()
    if suffix not in KINDS:
        raise UnsupportedType(
            f"file {filename!r}: unsupported type {suffix or '(no extension)'}; send one of {sorted(KINDS)}"
        )
    kind = KINDS[suffix]
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in GENERIC_TYPES and declared not in CONTENT_TYPES[kind]:
        raise UnsupportedType(f"file {filename!r} is declared as {declared!r}, which does not match a {kind} file")
    return kind


def decode_text(data: bytes, filename: str) -> str:
    """UTF-8 text, refusing binary content and invalid encodings with different messages."""
    head = data[:8192]
    if b"\x00" in head or head.startswith(b"%PDF") or _control_share(head) > 0.05:
        raise UnprocessableDocument(f"file {filename!r} looks binary, not text: upload it with its real extension")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(
            f"file {filename!r} is not valid UTF-8 (byte {e.start}): re-encode it as UTF-8"
        ) from None
    return text


def _control_share(data: bytes) -> float:
    if not data:
        return 0.0
    controls = sum(1 for b in data if b < 32 and b not in (9, 10, 12, 13))
    return controls / len(data)


class _TextOfHtml(HTMLParser):
    SKIP = {"script", "style", "noscript", "template", "head"}
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def pdf_to_text(data: bytes, filename: str) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, OSError) as e:
        raise UnprocessableDocument(f"file {filename!r} is not a readable PDF: {e}") from None
    return "\n\n".join(pages)


def normalise(text: str) -> str:
    """Collapse runs of blank space but keep paragraph breaks, so chunk offsets stay meaningful."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def extract_text(data: bytes, filename: str, content_type: str | None = None) -> str:
    """The document's text; raises InputError subclasses (4xx) for empty, binary, undecodable or textless files."""
    kind = kind_of(filename, content_type)
    if not data:
        raise InputError(f"file {filename!r} is empty (0 bytes)")
    if kind == "pdf":
        if not data.startswith(b"%PDF"):
            raise UnprocessableDocument(f"file {filename!r} is named .pdf but is not a PDF")
        text = pdf_to_text(data, filename)
        if not text.strip():
            raise UnprocessableDocument(
                f"PDF {filename!r} has no extractable text (scanned pages?): run OCR first or send the text"
            )
    else:
        text = decode_text(data, filename)
        if kind == "html":
            text = html_to_text(text)
    text = normalise(text)
    if not text:
        raise UnprocessableDocument(f"file {filename!r} holds no text after extraction")
    return text
