"""Stopword lists of the lexical analysis (the NLTK lists as bm25s 0.3.16 ships them, MIT), kept here so the
analysis does not depend on a BM25 package the project no longer imports."""

PORTUGUESE = frozenset({
    "a", "ao", "aos", "aquela", "aquelas", "aquele", "aqueles", "aquilo", "as", "até", "com", "como", "da", "das",
    "de", "dela", "delas", "dele", "deles", "depois", "do", "dos", "e", "ela", "elas", "ele", "eles", "em", "entre",
    "era", "eram", "essa", "essas", "esse", "esses", "esta", "estamos", "estar", "estas", "estava", "estavam",
    "este", "esteja", "estejam", "estejamos", "estes", "esteve", "estive", "estivemos", "estiver", "estivera",
    "estiveram", "estiverem", "estivermos", "estivesse", "estivessem", "estivéramos", "estivéssemos", "estou",
    "está", "estávamos", "estão", "eu", "foi", "fomos", "for", "fora", "foram", "forem", "formos", "fosse", "fossem",
    "fui", "fôramos", "fôssemos", "haja", "hajam", "hajamos", "havemos", "haver", "hei", "houve", "houvemos",
    "houver", "houvera", "houveram", "houverei", "houverem", "houveremos", "houveria", "houveriam", "houvermos",
    "houverá", "houverão", "houveríamos", "houvesse", "houvessem", "houvéramos", "houvéssemos", "há", "hão", "isso",
    "isto", "já", "lhe", "lhes", "mais", "mas", "me", "mesmo", "meu", "meus", "minha", "minhas", "muito", "na",
    "nas", "nem", "no", "nos", "nossa", "nossas", "nosso", "nossos", "num", "numa", "não", "nós", "o", "os", "ou",
    "para", "pela", "pelas", "pelo", "pelos", "por", "qual", "quando", "que", "quem", "se", "seja", "sejam",
    "sejamos", "sem", "ser", "serei", "seremos", "seria", "seriam", "será", "serão", "seríamos", "seu", "seus",
    "somos", "sou", "sua", "suas", "são", "só", "também", "te", "tem", "temos", "tenha", "tenham", "tenhamos",
    "tenho", "terei", "teremos", "teria", "teriam", "terá", "terão", "teríamos", "teu", "teus", "teve", "tinha",
    "tinham", "tive", "tivemos", "tiver", "tivera", "tiveram", "tiverem", "tivermos", "tivesse", "tivessem",
    "tivéramos", "tivéssemos", "tu", "tua", "tuas", "tém", "tínhamos", "um", "uma", "você", "vocês", "vos", "à",
    "às", "é", "éramos",
})

ENGLISH = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of",
    "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will",
    "with",
})

BY_LANGUAGE = {"portuguese": PORTUGUESE, "english": ENGLISH}

# What tells a question's language apart (reprolab.rag.sparse.Analyzer.other_language): the stopwords, plus
# the interrogatives and auxiliaries a question opens with, which the BM25 lists leave out.
LANGUAGE_MARKERS = {
    "portuguese": PORTUGUESE | {"qual", "quais", "quanto", "quantos", "quanta", "quantas", "onde", "porque"},
    "english": ENGLISH | {"what", "which", "how", "who", "where", "when", "why", "does", "do", "did", "can",
                          "have", "has", "many", "much"},
}
