"""Built-in language models (decoder-only causal LMs a prefix-LM fusion conditions on images)."""
