"""The lexical side of hybrid search, as sparse vectors that Qdrant scores (no corpus state in this process).

Two analyses of one text, each a named sparse vector of the documents collection:
- "words": PyStemmer stems of the non-stopword words;
- "chargrams": character n-grams of those words, which still match where the source glued words together
  ("oClub Salesdá", an artefact of stripped links in the sample) or misspelt them.
Terms are hashed to 32-bit indices; a value is the term's frequency in the text (BM25's saturation without
length normalisation), and Qdrant's IDF modifier weighs each term by its document frequency in the collection
at query time, so a document ingested counts in the very next query's IDF.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from reprolab.errors import ConfigError
from reprolab.rag.stopwords import BY_LANGUAGE, LANGUAGE_MARKERS

WORDS = "words"
CHARGRAMS = "chargrams"
SPARSE_CHANNELS = (WORDS, CHARGRAMS)
WORD = re.compile(r"\w\w+", re.UNICODE)
# Interrogatives say what kind of answer is wanted, not where it is: dropped from questions before matching.
QUESTION_WORDS = frozenset({
    "qual", "quais", "quanto", "quantos", "quanta", "quantas", "quem", "onde", "quando", "como", "porque",
    "principal", "principais", "atualmente", "what", "which", "how", "who", "where", "when", "why",
})
K1 = 1.2  # BM25's term-frequency saturation


@dataclass(frozen=True)
class Sparse:
    indices: list[int]
    values: list[float]


def term_index(term: str) -> int:
    """A stable 32-bit index per term (crc32: the same in every process and Python version)."""
    return zlib.crc32(term.encode("utf-8"))


def _sparse(terms: list[str], saturate: bool) -> Sparse:
    counts = Counter(term_index(t) for t in terms)
    indices = sorted(counts)
    if saturate:
        values = [counts[i] * (K1 + 1) / (counts[i] + K1) for i in indices]
    else:  # a question's repeated word asks no more than once
        values = [1.0] * len(indices)
    return Sparse(indices, values)


class Analyzer:
    """Portuguese (or another PyStemmer language) analysis shared by indexing, querying and grounding."""

    def __init__(self, language: str = "portuguese", ngram: int = 4):
        import Stemmer

        if language not in BY_LANGUAGE:
            raise ConfigError(f"no stopword list for language {language!r}; use one of {sorted(BY_LANGUAGE)}")
        self.language = language
        self.ngram = ngram
        self.stemmer = Stemmer.Stemmer(language)
        self.stopwords = BY_LANGUAGE[language]

    def words(self, text: str, question: bool = False) -> list[str]:
        drop = self.stopwords | QUESTION_WORDS if question else self.stopwords
        return [w for w in WORD.findall(text.lower()) if w not in drop]

    def stems(self, text: str, question: bool = False) -> list[str]:
        return self.stemmer.stemWords(self.words(text, question))

    def terms(self, text: str, question: bool = False) -> set[str]:
        """Stemmed content terms of a text (grounding counts whole terms)."""
        return set(self.stems(text, question))

    def other_language(self, text: str) -> bool:
        """More of the text's words mark another language than mark this one (words common to both count for
        neither): its stems cannot be counted against the documents' (an English question, Portuguese documents)."""
        words = re.findall(r"\w+", text.lower())
        own = LANGUAGE_MARKERS.get(self.language, self.stopwords)
        for lang, markers in LANGUAGE_MARKERS.items():
            if lang != self.language and sum(w in markers and w not in own for w in words) > \
                    sum(w in own and w not in markers for w in words):
                return True
        return False

    def chargrams(self, text: str, question: bool = False) -> list[str]:
        n = self.ngram
        return [w[i : i + n] for w in self.words(text, question) for i in range(max(1, len(w) - n + 1))]

    def encode(self, text: str, question: bool = False) -> dict[str, Sparse]:
        """The sparse vector of each channel; an empty one (no content words) matches nothing."""
        saturate = not question
        return {WORDS: _sparse(self.stems(text, question), saturate),
                CHARGRAMS: _sparse(self.chargrams(text, question), saturate)}


@lru_cache(maxsize=4)
def analyzer_for(language: str, ngram: int) -> Analyzer:
    return Analyzer(language, ngram)
