"""Nearest neighbours by cosine similarity, all pairs, chunked so memory stays bounded.

LLM-ESR retrieves, for every user, the users whose LM embeddings are most similar. The search is
all-pairs over users (30k users on Yelp = 9e8 similarities), so it runs as matrix products over
row chunks, keeping only each chunk's top k: memory is ``chunk x n``, never ``n x n``.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm


@torch.inference_mode()
def top_k_cosine(vectors: np.ndarray, k: int, chunk: int = 2048, progress: bool = False,
                 device: torch.device | str = "cpu") -> np.ndarray:
    """(n, k) indices of each row's ``k`` most cosine-similar *other* rows, most similar first.

    A row is never its own neighbour, even when another row is identical to it (the originals
    drop the first column assuming it is the row itself, which fails for duplicate prompts).
    Within the k, equal similarities are ordered by the smaller index.
    """
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float32), device=device)
    n = x.size(0)
    if not 1 <= k < n:
        raise ValueError(f"k={k} neighbours need between 2 and n={n} rows; lower k")
    x = torch.nn.functional.normalize(x, dim=1)
    out = np.empty((n, k), dtype=np.int64)
    starts = range(0, n, chunk)
    for start in tqdm(starts, desc="similar users", unit="chunk", disable=not progress):
        rows = torch.arange(start, min(start + chunk, n), device=x.device)
        sims = x[rows] @ x.T
        sims[torch.arange(len(rows)), rows] = -torch.inf  # never yourself
        vals, idx = sims.topk(k, dim=1)
        vals, idx = vals.cpu().numpy(), idx.cpu().numpy()
        order = np.lexsort((idx, -vals), axis=1)  # equal similarity: the smaller index first
        out[start: start + len(rows)] = np.take_along_axis(idx, order, axis=1)
    return out
