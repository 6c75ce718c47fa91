"""Splitting a causal LM at a block: model families, client and server parts, LoRA wiring, cut layouts."""
