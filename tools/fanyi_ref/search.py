"""Greedy and beam search over the reference model, the C engine's semantics exactly.

Beam search is Hugging Face's generate() with num_beams = beam_size: each
sentence starts from one hypothesis; every step ranks the 2 * beam best
(hypothesis, token) extensions by cumulative log-probability (ties to the
lower (hypothesis, token) index). In rank order, an EOS among the first `beam`
enters the sentence's finished list (at most `beam`; a better one replaces the
worst, the earliest entered among equal worst), any other token continues,
until `beam` continue. A sentence stops once its list is full and the worst
finished score is at least the best candidate's log-probability normalized at
the current length (at once with early_stopping). At the length limit a model
with forced_eos must end in EOS, which costs nothing; otherwise the live
hypotheses are finished as they are. A finished hypothesis scores
sum(log p) / length ** length_penalty, length counting EOS. Log-probabilities
are normalized over every id but pad; pad and `forbidden_ids` never appear.
Results are best first, the later entered first among equal scores. The
repetition guards are Hugging Face's RepetitionPenaltyLogitsProcessor and
NoRepeatNGramLogitsProcessor as its beam search applies them: to the
log-probabilities of each hypothesis's sequence (decoder start token
included), without renormalizing.
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
    no_repeat_ngram: int = 0  # Hugging Face's no_repeat_ngram_size
    repetition_penalty: float = 1.0

    @classmethod
    def from_config(cls, cfg, **overrides) -> "Options":
        """The model config's decoding defaults, as fanyi applies them when no option overrides them."""
        fields = dict(beam_size=cfg.beam_size, max_length=cfg.max_length, max_length_ratio=cfg.max_length_ratio,
                      length_penalty=cfg.length_penalty, no_repeat_ngram=cfg.no_repeat_ngram_size,
                      repetition_penalty=cfg.repetition_penalty)
        fields.update(overrides)
        return cls(**fields)


@dataclass
class Hypothesis:
    tokens: List[int]
    score: float  # normalized by the length penalty
    logprob: float  # raw sum of log-probabilities


@dataclass
class _Sentence:
    finished: list = field(default_factory=list)  # [score, order, Hypothesis]
    inserted: int = 0

    def consider(self, hyp: Hypothesis, beam: int):
        """Hugging Face's BeamHypotheses.add."""
        if len(self.finished) == beam:
            worst = min(self.finished, key=lambda e: (e[0], e[1]))
            if not hyp.score > worst[0]:
                return
            self.finished.remove(worst)
        self.finished.append([hyp.score, self.inserted, hyp])
        self.inserted += 1

    def done(self, beam: int, best_total: float, length: int, penalty: float, early_stopping: bool) -> bool:
        if len(self.finished) < beam:
            return False
        return early_stopping or min(e[0] for e in self.finished) >= normalized(best_total, length, penalty)


def length_limit(cfg, opts: Options, src_len: int) -> int:
    """Target tokens allowed, EOS excluded."""
    limit = min(opts.max_length, cfg.max_positions - (1 if cfg.forced_eos else 0))
    if opts.max_length_ratio > 0:
        limit = min(limit, max(1, math.ceil(opts.max_length_ratio * src_len)))
    return max(1, limit)


def normalized(logprob: float, length: int, penalty: float) -> float:
    return logprob / (float(max(1, length)) ** penalty) if penalty else logprob


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

    beam = opts.beam_size
    states = {i: _Sentence() for i in active}
    steps = {i: length_limit(cfg, opts, len(srcs[i])) + (1 if cfg.forced_eos else 0) for i in active}
    # Live hypotheses, one row each of the decoder batch.
    owner = list(active)  # sentence index of each row
    tokens = [[] for _ in active]
    logprobs = [0.0 for _ in active]
    last = torch.full((len(active),), cfg.decoder_start_id, dtype=torch.long)

    while owner:
        lp = model.decode_step(last, cache).clone()
        for r in range(len(owner)):
            seq = [cfg.decoder_start_id] + tokens[r]
            if opts.repetition_penalty != 1.0:
                repetition_penalty(lp[r], seq, opts.repetition_penalty)
            if opts.no_repeat_ngram > 0:
                no_repeat_ngram(lp[r], seq, opts.no_repeat_ngram)
        lp[:, forbidden_t] = float("-inf")
        t = len(tokens[0])  # tokens generated so far, the same for every row
        new_rows, new_owner, new_tokens, new_logprobs, new_last = [], [], [], [], []
        row = 0
        while row < len(owner):
            sent = owner[row]
            end = row
            while end < len(owner) and owner[end] == sent:
                end += 1
            st = states[sent]
            row_lp = torch.tensor(logprobs[row:end], dtype=lp.dtype)[:, None]
            if cfg.forced_eos and t + 1 == steps[sent]:
                step_lp = torch.full_like(lp[row:end], float("-inf"))
                step_lp[:, cfg.eos_id] = 0.0
            else:
                step_lp = lp[row:end]
            cand = (step_lp + row_lp).reshape(-1)
            order = [j for j in _topk_stable(cand, 2 * beam) if cand[j].item() != float("-inf")]
            live = []
            for rank, j in enumerate(order):
                if len(live) == beam:
                    break
                hyp, tok = divmod(int(j), lp.shape[1])
                total = cand[j].item()
                if tok == cfg.eos_id:
                    if rank < beam:
                        st.consider(Hypothesis(tokens[row + hyp], normalized(total, t + 1, opts.length_penalty),
                                               total), beam)
                else:
                    live.append((row + hyp, tokens[row + hyp] + [tok], total, tok))
            if order and st.done(beam, cand[order[0]].item(), t + 1, opts.length_penalty, cfg.early_stopping):
                live = []
            elif t + 1 >= steps[sent]:
                for _, seq, total, _ in live:
                    st.consider(Hypothesis(seq, normalized(total, t + 1, opts.length_penalty), total), beam)
                live = []
            for parent, seq, total, tok in live:
                new_rows.append(parent)
                new_owner.append(sent)
                new_tokens.append(seq)
                new_logprobs.append(total)
                new_last.append(tok)
            row = end
        if not new_rows:
            break
        cache = model.reorder_cache(cache, torch.tensor(new_rows, dtype=torch.long))
        owner, tokens, logprobs = new_owner, new_tokens, new_logprobs
        last = torch.tensor(new_last, dtype=torch.long)

    for i in active:
        fin = sorted(states[i].finished, key=lambda e: (-e[0], -e[1]))
        results[i] = [e[2] for e in fin[: opts.nbest]]
    return results


def repetition_penalty(lp: torch.Tensor, seq: List[int], penalty: float):
    """HF's RepetitionPenaltyLogitsProcessor on one row: every id in seq, once."""
    ids = torch.tensor(sorted(set(seq)), dtype=torch.long)
    score = lp[ids]
    lp[ids] = torch.where(score < 0, score * penalty, score / penalty)


def no_repeat_ngram(lp: torch.Tensor, seq: List[int], n: int):
    """HF's NoRepeatNGramLogitsProcessor on one row: ban what would complete an n-gram of seq again."""
    if len(seq) + 1 < n:
        return
    prefix = tuple(seq[len(seq) + 1 - n:])
    for i in range(len(seq) - n + 1):
        if tuple(seq[i:i + n - 1]) == prefix:
            lp[seq[i + n - 1]] = float("-inf")


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
