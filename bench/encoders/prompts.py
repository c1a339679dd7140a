"""Item prompts: the originals' templates, built from a prepared dataset's item-text table.

LLMEmb (methods.md §1.1): ``"<instruction> \\n " + "; ".join(f"{key} is {value}")`` over the
item's present attributes, values cut to 100 characters (Beauty, Fashion; Yelp uncut), ``;`` in
a value turned into ``.`` (Fashion) so that the attribute-level augmentation, which splits on
``;``, sees whole attributes. The instruction names the domain; a dataset config picks it with
``prompt_domain`` (beauty, poi, fashion, product; the default is product).

Items with no text at all get ``"title is unknown"``, the originals' word for a missing value,
so every item has a prompt; ``data stats`` reports how many items that concerns.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import pandas as pd

from bench.errors import BenchError, unknown_name

PROMPT_VERSION = 1


@dataclass(frozen=True)
class PromptTemplate:
    """How one domain's items are written as text."""

    domain: str
    instruction: str
    max_chars: int | None = 100  # per value; None keeps values whole
    semicolon_to_period: bool = False

    @property
    def id(self) -> str:
        blob = json.dumps({"v": PROMPT_VERSION, **asdict(self)}, sort_keys=True)
        return f"{self.domain}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


TEMPLATES: dict[str, PromptTemplate] = {
    "beauty": PromptTemplate("beauty", "The beauty item has the following attributes:"),
    "fashion": PromptTemplate("fashion", "The fashion item has the following attributes:",
                              semicolon_to_period=True),
    "poi": PromptTemplate("poi", "The point of interest has the following attributes:",
                          max_chars=None),
    "product": PromptTemplate("product", "The product has the following attributes:"),
}


def template_for(dataset_cfg: dict) -> PromptTemplate:
    domain = dataset_cfg.get("prompt_domain") or "product"
    if domain not in TEMPLATES:
        raise unknown_name("prompt domain", str(domain), TEMPLATES)
    return TEMPLATES[domain]


def _value(text: str, tpl: PromptTemplate) -> str:
    text = " ".join(str(text).split())
    if tpl.semicolon_to_period:
        text = text.replace(";", ".")
    else:
        text = text.replace(";", ",")  # keep ';' as the attribute separator only
    return text[: tpl.max_chars] if tpl.max_chars else text


def item_prompts(items: pd.DataFrame, fields: list[str], tpl: PromptTemplate) -> list[str]:
    """One prompt per row of ``items`` (the prepared item table), in row order."""
    absent = [f for f in fields if f not in items.columns]
    if absent:
        raise BenchError(f"item table has no field(s) {', '.join(absent)}; it has "
                         f"{', '.join(c for c in items.columns if c != 'item')}")
    prompts = []
    for row in items[fields].itertuples(index=False):
        attrs = [f"{f} is {_value(v, tpl)}" for f, v in zip(fields, row, strict=True) if str(v).strip()]
        prompts.append(f"{tpl.instruction} \n " + ("; ".join(attrs) or "title is unknown"))
    return prompts


# LLM-ESR's user prompt (methods.md §2.1): the names of the items in the training part of the
# sequence. The originals' Fashion and Beauty notebooks both say "fashions"; kept as released.
USER_NOUNS = {"poi": "point of interests", "fashion": "fashions", "beauty": "fashions",
              "product": "products"}
USER_PROMPT_VERSION = 1


def user_template_id(dataset_cfg: dict, name_field: str, max_chars: int) -> str:
    domain = dataset_cfg.get("prompt_domain") or "product"
    blob = json.dumps({"v": USER_PROMPT_VERSION, "noun": USER_NOUNS.get(domain, "products"),
                       "field": name_field, "chars": max_chars}, sort_keys=True)
    return f"user-{domain}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def user_prompts(histories: list[list[str]], names: dict[str, str], dataset_cfg: dict,
                 max_chars: int = 8000) -> list[str]:
    """One prompt per user from the item ids of their training part (oldest first):
    ``"The user has visited following <noun>: \\n<names joined by ', '> \\nplease conclude the
    user's perference."`` with the history cut to its last ``max_chars`` characters."""
    noun = USER_NOUNS.get(dataset_cfg.get("prompt_domain") or "product", "products")
    out = []
    for items in histories:
        history = ", ".join(" ".join(str(names.get(i, "")).split()) or "unknown" for i in items)
        out.append(f"The user has visited following {noun}: \n{history[-max_chars:]} \n"
                   "please conclude the user's perference.")
    return out
