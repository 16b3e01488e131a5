"""Data: upstream sources, the versioned raw snapshot, validation into a corpus, stable splits."""
