"""Greedy and beam search over the reference model, the C engine's semantics exactly.

Beam search (as in Marian): every sentence starts with one hypothesis and a
beam of `beam_size`. At each step the `beam` best (hypothesis, token)
extensions by cumulative log-probability are kept, ties going to the lower
(hypothesis, token) index; an extension ending in EOS is finished and shrinks
the beam by one. A sentence is done when its beam is empty; at the length
limit the hypotheses still alive are finished as they are. A finished
hypothesis scores sum(log p) / length ** length_penalty, length counting EOS.
Token ids in `forbidden` (always including pad) are never produced.
"""

import math
from dataclasses import dataclass, field
from typing import List

import torch

from .model import Transformer, pad_batch


@dataclass
class Options:
    beam_size: int = 1
    nbest: int = 1
    max_length: int = 256
    max_length_ratio: float = 0.0
    length_penalty: float = 1.0


@dataclass
class Hypothesis:
    tokens: List[int]
    score: float  # normalized by the length penalty
    logprob: float  # raw sum of log-probabilities


@dataclass
class _Sentence:
    beam: int  # live hypotheses allowed now
    finished: List[Hypothesis] = field(default_factory=list)


def length_limit(cfg, opts: Options, src_len: int) -> int:
    limit = min(opts.max_length, cfg.max_positions)
    if opts.max_length_ratio > 0:
        limit = min(limit, max(1, math.ceil(opts.max_length_ratio * src_len)))
    return max(1, limit)


def normalized(logprob: float, length: int, penalty: float) -> float:
    return logprob / (max(1, length) ** penalty) if penalty else logprob


def source_ids(cfg, ids: List[int]) -> List[int]:
    ids = list(ids)[: cfg.max_positions - (1 if cfg.source_eos else 0)]
    return ids + [cfg.eos_id] if cfg.source_eos else ids


@torch.inference_mode()
def translate(model: Transformer, sources: List[List[int]], opts: Options) -> List[List[Hypothesis]]:
    """Translates a batch of id sequences (without EOS); returns the n-best list of each."""
    cfg = model.cfg
    model.eval()
    srcs = [source_ids(cfg, s) for s in sources]
    results: List[List[Hypothesis]] = [[] for _ in srcs]
    # An empty sentence translates to nothing, without running the model.
    active = [i for i, s in enumerate(sources) if len(s) > 0]
    if not active:
        return results
    memory, mask = model.encode(pad_batch([srcs[i] for i in active], cfg.pad_id))
    cache = model.start_cache(memory, mask)
    forbidden = sorted(set(cfg.forbidden_ids) | {cfg.pad_id})
    forbidden_t = torch.tensor(forbidden, dtype=torch.long)

    states = {i: _Sentence(beam=opts.beam_size) for i in active}
    limits = {i: length_limit(cfg, opts, len(srcs[i])) for i in active}
    # Live hypotheses, one row each of the decoder batch.
    owner = list(active)  # sentence index of each row
    tokens = [[] for _ in active]
    logprobs = [0.0 for _ in active]
    last = torch.full((len(active),), cfg.decoder_start_id, dtype=torch.long)

    while owner:
        lp = model.decode_step(last, cache)
        lp[:, forbidden_t] = float("-inf")
        total = lp + torch.tensor(logprobs, dtype=lp.dtype)[:, None]
        new_rows, new_owner, new_tokens, new_logprobs, new_last = [], [], [], [], []
        row = 0
        while row < len(owner):
            sent = owner[row]
            end = row
            while end < len(owner) and owner[end] == sent:
                end += 1
            st = states[sent]
            k = st.beam
            cand = total[row:end].reshape(-1)
            # Stable ordering: best score first, lower flat index on ties.
            order = _topk_stable(cand, k)
            step_len = len(tokens[row]) + 1
            for j in order:
                hyp, tok = divmod(int(j), lp.shape[1])
                score = cand[j].item()
                if score == float("-inf"):
                    continue
                seq = tokens[row + hyp] + [tok]
                if tok == cfg.eos_id:
                    st.finished.append(Hypothesis(seq[:-1], normalized(score, step_len, opts.length_penalty), score))
                    st.beam -= 1
                elif step_len >= limits[sent]:
                    st.finished.append(Hypothesis(seq, normalized(score, step_len, opts.length_penalty), score))
                    st.beam -= 1
                else:
                    new_rows.append(row + hyp)
                    new_owner.append(sent)
                    new_tokens.append(seq)
                    new_logprobs.append(score)
                    new_last.append(tok)
            row = end
        if not new_rows:
            break
        cache = model.reorder_cache(cache, torch.tensor(new_rows, dtype=torch.long))
        owner, tokens, logprobs = new_owner, new_tokens, new_logprobs
        last = torch.tensor(new_last, dtype=torch.long)

    for i in active:
        fin = sorted(enumerate(states[i].finished), key=lambda e: (-e[1].score, e[0]))
        results[i] = [h for _, h in fin[: opts.nbest]]
    return results


def _topk_stable(cand: torch.Tensor, k: int) -> List[int]:
    """Top-k indices, best first, lower index on ties, without sorting everything."""
    vals, idx = torch.topk(cand, min(cand.numel(), k + 8))
    threshold = vals[-1].item()
    pool = torch.nonzero(cand >= threshold).reshape(-1).tolist()
    pool.sort(key=lambda j: (-cand[j].item(), j))
    return pool[:k]


@torch.inference_mode()
def teacher_forced_logprobs(model: Transformer, src: List[int], tgt: List[int]) -> torch.Tensor:
    """Log-probs [len(tgt)+1, V] of every step of decoding `tgt` then EOS, through the cache."""
    cfg = model.cfg
    model.eval()
    memory, mask = model.encode(pad_batch([source_ids(cfg, src)], cfg.pad_id))
    cache = model.start_cache(memory, mask)
    rows = []
    prev = cfg.decoder_start_id
    for tok in list(tgt) + [None]:
        rows.append(model.decode_step(torch.tensor([prev]), cache)[0])
        prev = tok
    return torch.stack(rows)
