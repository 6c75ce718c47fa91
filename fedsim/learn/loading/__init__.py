"""Loading pre-trained models offline: the known models, the PyPI GGUF wheel, the cache, tiny test models."""
