"""RAG errors; the services map each to its HTTP status (`status`, in services/runtime.py `install`)."""

from reprolab.errors import ReprolabError


class InputError(ReprolabError):
    """The request content cannot be used (empty, wrong type, not decodable): a 4xx."""

    status = 400


class PayloadTooLarge(InputError):
    status = 413


class UnsupportedType(InputError):
    status = 415


class UnprocessableDocument(InputError):
    """The file has the right type but no usable text (a PDF of scanned pages, a binary file)."""

    status = 422


class DocumentNotFound(ReprolabError):
    status = 404


class StoreUnavailable(ReprolabError):
    """Qdrant cannot be reached: the services answer 503 and change nothing."""

    status = 503


class FeatureUnavailable(ReprolabError):
    """A part of the service that needs a model which is not configured (image search without CLIP)."""

    status = 503


class IndexMismatch(ReprolabError):
    """The collection was built by another embedder or dimension than the one served: refused at start, a 503
    if it is first seen later (Qdrant came up after the service)."""

    status = 503


class GeneratorUnavailable(ReprolabError):
    """The answer generator (the Mistral API) failed or timed out: a 503 naming it, never a 500."""

    status = 503
