"""Knowledge QA: text extraction, chunking, embedding, Qdrant storage, hybrid retrieval, cited answers."""
