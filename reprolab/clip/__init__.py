"""CLIP: model construction by name, training loop, embedding API."""
