"""Does the evidence hold the kind of answer the question asks for? A check of the quoted sentences.

Term coverage says a passage is about the question's subject; it cannot tell "the fee for sales above R$ 10"
(in the document) from "the fee for sales below R$ 10" (not in it). Two checks of the sentences the answer would
quote catch such near misses, each decided by the question's own words:
- a question asking for a quantity ("quantos", "quanto custa", "qual é a taxa") needs a number in them (digits,
  a number word, or "grátis": a price of nothing is an answer);
- a number the question names (a year, an amount) must appear in them.
The patterns are per analysis language, as the stopwords are. A question in another language than the analysis'
is not checked (its words are not these). Chosen on the labelled set's tune half (docs/rag.md "Refusal").
"""

from __future__ import annotations

import re
import unicodedata

# Matched against lower-cased text without accents.
QUANTITY_QUESTION = {
    "portuguese": re.compile(
        r"\bquant[oa]s?\b"
        r"|\b(?:qual|quais)\s+(?:(?:e|sao|foi|era|foram|eram)\s+)?(?:o|a|os|as)\s+"
        r"(?:valor|preco|custo|taxa|percentual|porcentagem|numero)\b"),
    "english": re.compile(
        r"\bhow\s+(?:many|much)\b"
        r"|\bwhat\s+(?:is|are|was|were)\s+the\s+(?:price|cost|fee|rate|percentage|number|value)\b"),
}
# "um"/"uma" and "a"/"one" are left out: they are articles far more often than numbers.
NUMBER_EVIDENCE = {
    "portuguese": re.compile(
        r"\d|\b(?:dois|duas|tres|quatro|cinco|seis|sete|oito|nove|dez|onze|doze|vinte|trinta|cem|cento|mil"
        r"|milhao|milhoes|bilhao|bilhoes|dezenas|centenas|milhares|dobro|metade|gratis|gratuit[ao]s?|zero)\b"),
    "english": re.compile(
        r"\d|\b(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|hundreds?|thousands?"
        r"|millions?|billions?|dozens?|double|half|free|zero)\b"),
}
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def fold(text: str) -> str:
    """Lower case without accents: "Preço" and "preco" match alike."""
    return unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode("ascii")


def answer_type_gap(question: str, evidence: str, language: str) -> str | None:
    """Why `evidence` cannot hold the answer `question` asks for, or None when nothing is missing."""
    for number in NUMBER.findall(question):
        if not re.search(rf"(?<![\d.,]){re.escape(number)}(?!\d)", evidence):
            return f"the question names {number}, which the quoted sentences do not"
    wants, holds = QUANTITY_QUESTION.get(language), NUMBER_EVIDENCE.get(language)
    if wants is not None and wants.search(fold(question)) and not holds.search(fold(evidence)):
        return "the question asks for a quantity and the quoted sentences hold no number"
    return None
