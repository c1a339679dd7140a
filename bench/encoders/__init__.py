"""Text -> item embeddings, shared by every LLM-enhanced method.

``models`` loads a local language model and encodes texts; ``prompts`` writes items as the
originals' prompts; ``tables`` builds (and caches) one embedding per item, reads precomputed
embeddings, reduces them with PCA and aligns them to RecBole's item ids; ``cache`` is the
content-addressed store behind it.
"""
