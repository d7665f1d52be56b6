"""Caption metrics: a pure-Python PTB-style tokenizer, BLEU-1..4 and CIDEr-D through
pycocoevalcap's scorers, and the two reference-free baselines every captioning score is
shown beside.

coco-caption runs Stanford's Java PTBTokenizer before its scorers. vlbench never starts
Java, so :func:`ptb_tokenize` reimplements the parts of it that matter for English
captions (rules below); the scorers themselves are pycocoevalcap's own ``Bleu(4)`` and
``Cider()``. Scores are therefore "PTB-approx (no Java)": equal to the official ones on
any caption our rules tokenize as Stanford does, which covers lower-case words,
sentence punctuation, contractions, hyphens and decimals.

Units: every score is reported x100 (BLEU in [0, 100], CIDEr-D as the COCO leaderboard
prints it, e.g. 112.3 for pycocoevalcap's 1.123).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

UNITS = "x100 (BLEU-n and CIDEr-D as the COCO leaderboard prints them)"
TOKENIZER = "PTB-approx (pure Python, no Java)"
BLEU_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4")
MAIN = "CIDEr-D"

# The tokens coco-caption's PTBTokenizer wrapper drops after tokenizing (its PUNCTUATIONS).
PTB_PUNCTUATION = frozenset(
    {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
)
# Clitics Stanford's tokenizer splits off a word ("don't" -> "do n't", "it's" -> "it 's").
_CLITICS = ("n't", "'s", "'m", "'d", "'re", "'ve", "'ll")
_CLITIC = re.compile(rf"^(.+?)({'|'.join(_CLITICS)})$")
# Words whose final period is part of the token in PTB (abbreviations and initialisms).
_ABBREVIATIONS = frozenset(
    {"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "vs.", "etc.", "co.", "inc.", "ltd.", "no.", "ft.", "mt."}
)
_INITIALISM = re.compile(r"^(?:[a-z]\.){2,}$")  # u.s., a.m.
_NUMBER = re.compile(r"^[+-]?(?:\d[\d,]*)?\.?\d+$")  # 3.5, 1,000, .5
# Characters that split a word the way Stanford splits them (brackets and quotes, which it
# then turns into -LRB- / `` etc. that the wrapper drops) -- removed outright here.
_DROP_CHARS = re.compile(r"[\"()\[\]{}]")
_SEPARATORS = re.compile(r"(\.\.\.+|--+|[?!;])")  # always standalone punctuation


def ptb_tokenize(text: str) -> str:
    """Lower-cased, space-joined PTB-style tokens of ``text`` with coco-caption's
    punctuation removed; what the scorers and the decoder's vocabulary see.

    Rules (Stanford PTBTokenizer ``-lowerCase`` as coco-caption calls it, then the
    wrapper's punctuation filter):

    * lower-case; any whitespace separates tokens;
    * double quotes, brackets and braces, ``...``, ``--``, ``? ! ; :`` and commas are
      dropped wherever they stand, except a comma or colon between digits ("1,000",
      "10:30") which stays inside the number;
    * a final period leaves the word and is dropped, except in numbers ("3.5", ".5"),
      initialisms ("u.s.") and the common abbreviations ("mr.", "st.", ...);
    * single quotes around a word are dropped ("'hello'" -> "hello"); a possessive
      plural's quote is dropped ("dogs'" -> "dogs");
    * contractions split as PTB does: "don't" -> "do n't", "can't" -> "ca n't",
      "it's" -> "it 's", "we'll" -> "we 'll"; "cannot" -> "can not";
    * hyphenated words stay whole ("half-covered"); a standalone "-" or "--" is dropped;
    * other symbols ("&", "%", "$", "/") stay as they are in the word.
    """
    text = _DROP_CHARS.sub(" ", text.lower().replace("``", " ").replace("''", " "))
    text = _SEPARATORS.sub(" ", text)
    text = re.sub(r"(?<!\d)[,:]|[,:](?!\d)", " ", text)  # a comma or colon not inside a number
    tokens: list[str] = []
    for word in text.split():
        tokens.extend(_split_word(word))
    return " ".join(t for t in tokens if t not in PTB_PUNCTUATION)


def _split_word(word: str) -> list[str]:
    if word in _CLITICS:  # a clitic already standing alone ("the dog 's ball")
        return [word]
    word = word.lstrip("'`")
    while word.endswith(".") and not (_NUMBER.match(word) or _INITIALISM.match(word) or word in _ABBREVIATIONS):
        word = word[:-1]
    if word.endswith("'") and not word.endswith("n'"):  # closing quote or plural possessive
        word = word.rstrip("'`")
    if not word:
        return []
    if word == "cannot":
        return ["can", "not"]
    match = _CLITIC.match(word)
    return [match.group(1), match.group(2)] if match else [word]


# ---------------------------------------------------------------- scores


@dataclass(frozen=True)
class CaptionScores:
    """``corpus``: BLEU-1..4 and CIDEr-D of the whole set, x100. ``per_image``: for
    ``"BLEU-4"`` and ``"CIDEr-D"``, image id -> that image's score x100 (pycocoevalcap's
    per-image lists; CIDEr-D per image uses the IDF of the whole evaluated set, and the
    corpus CIDEr-D is exactly their mean, so a bootstrap over images resamples these).
    """

    corpus: dict[str, float]
    per_image: dict[str, dict[Hashable, float]]
    units: str = UNITS
    tokenizer: str = TOKENIZER


def caption_scores(candidates: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]) -> CaptionScores:
    """Score one candidate caption per image against that image's references.

    Both sides go through :func:`ptb_tokenize`; ``Bleu(4)`` (reference length 'closest',
    as coco-caption) and ``Cider()`` (CIDEr-D: sigma 6, clipping, IDF over this set's
    references) then score the tokens. CIDEr-D needs at least two images for a non-zero
    IDF (``log(#images)``); on one image it is 0 by definition.
    """
    _check(candidates, references)
    ids = list(candidates)
    res = {i: [ptb_tokenize(candidates[i])] for i in ids}
    gts = {i: [ptb_tokenize(r) for r in references[i]] for i in ids}
    return scores_on_tokens(res, gts)


def scores_on_tokens(res: Mapping[Hashable, list[str]], gts: Mapping[Hashable, list[str]]) -> CaptionScores:
    """:func:`caption_scores` on already-tokenized, space-joined strings (pycocoevalcap's
    own ``{id: [str]}`` input), for callers with their own tokenization."""
    ids = list(gts)  # the order both scorers iterate in, so per-image lists line up with it
    bleu, bleu_per_image = Bleu(4).compute_score(dict(gts), dict(res), verbose=0)
    cider, cider_per_image = Cider().compute_score(dict(gts), dict(res))
    corpus = {key: 100.0 * float(value) for key, value in zip(BLEU_KEYS, bleu, strict=True)}
    corpus[MAIN] = 100.0 * float(cider)
    per_image = {
        "BLEU-4": {i: 100.0 * float(v) for i, v in zip(ids, bleu_per_image[3], strict=True)},
        MAIN: {i: 100.0 * float(v) for i, v in zip(ids, cider_per_image, strict=True)},
    }
    return CaptionScores(corpus=corpus, per_image=per_image)


def _check(candidates: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]) -> None:
    if not candidates:
        raise ValueError("caption scores need at least one image; got no candidates")
    missing = [i for i in candidates if i not in references]
    extra = [i for i in references if i not in candidates]
    if missing or extra:
        raise ValueError(
            f"candidates and references must cover the same images: {len(missing)} candidate id(s) without "
            f"references (e.g. {missing[:3]}), {len(extra)} reference id(s) without a candidate (e.g. {extra[:3]})"
        )
    for i, refs in references.items():
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"image {i!r}: references must be a non-empty list of strings, got {refs!r}")
        if not isinstance(candidates[i], str):
            raise ValueError(f"image {i!r}: the candidate must be one string, got {candidates[i]!r}")


# ---------------------------------------------------------------- baselines


def most_frequent_caption(train_captions: Sequence[Sequence[str]], image_ids: Sequence[Hashable]) -> dict[Hashable, str]:
    """The train split's most frequent caption (after :func:`ptb_tokenize`; ties go to the
    alphabetically first) as the candidate for every image in ``image_ids``: what a model
    that ignores the image and memorises the commonest caption scores."""
    counts = Counter(ptb_tokenize(c) for captions in train_captions for c in captions)
    if not counts:
        raise ValueError("the most-frequent-caption baseline needs at least one train caption")
    best = min(counts.items(), key=lambda item: (-item[1], item[0]))[0]
    return {i: best for i in image_ids}


def nearest_train_caption(
    query_embeddings: torch.Tensor | np.ndarray,
    train_embeddings: torch.Tensor | np.ndarray,
    train_captions: Sequence[Sequence[str]],
    image_ids: Sequence[Hashable],
    k: int = 1,
    chunk: int = 1024,
) -> dict[Hashable, str]:
    """For each query image, a caption of its nearest train images by cosine similarity of
    the given embeddings (e.g. the run's pooled image features).

    With ``k = 1`` the nearest train image's first caption. With ``k > 1`` the consensus
    caption among the k neighbours' captions (Devlin et al. 2015's idea): the one with
    the highest mean unigram F1 against the others; ties go to the nearer image, then to
    caption order. Deterministic; no training.
    """
    queries = _unit_rows(query_embeddings)
    train = _unit_rows(train_embeddings)
    if len(queries) != len(image_ids):
        raise ValueError(f"{len(queries)} query embeddings for {len(image_ids)} image ids")
    if len(train) != len(train_captions) or len(train) == 0:
        raise ValueError(f"{len(train)} train embeddings for {len(train_captions)} train caption lists (need equal, >= 1)")
    if queries.shape[1] != train.shape[1]:
        raise ValueError(f"query embeddings are {queries.shape[1]}-d but train embeddings are {train.shape[1]}-d")
    if not 1 <= k <= len(train):
        raise ValueError(f"k must be from 1 to the number of train images ({len(train)}), got {k}")
    out: dict[Hashable, str] = {}
    for start in range(0, len(queries), chunk):
        nearest = (queries[start : start + chunk] @ train.T).topk(k, dim=1).indices.tolist()
        for image_id, neighbours in zip(image_ids[start : start + chunk], nearest, strict=True):
            pool = [c for n in neighbours for c in train_captions[n]]
            out[image_id] = pool[0] if k == 1 else _consensus(pool)
    return out


def _unit_rows(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-d [images, dim] array, got shape {tuple(x.shape)}")
    return torch.nn.functional.normalize(x, dim=1)


def _consensus(pool: Sequence[str]) -> str:
    bags = [Counter(ptb_tokenize(c).split()) for c in pool]

    def unigram_f1(a: Counter, b: Counter) -> float:
        overlap = sum((a & b).values())
        total = sum(a.values()) + sum(b.values())
        return 2 * overlap / total if total else 0.0

    def mean_agreement(j: int) -> float:
        others = [unigram_f1(bags[j], bags[m]) for m in range(len(pool)) if m != j]
        return math.fsum(others) / len(others) if others else 0.0

    return pool[max(range(len(pool)), key=lambda j: (mean_agreement(j), -j))]
