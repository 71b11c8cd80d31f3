"""The fanyi Transformer in PyTorch: the reference the C engine is tested against.

Every architectural switch of the C engine is a field of Config, and the
parameter names of this module are the tensor names of the model file, so a
state_dict() is a fanyi model as it is.
"""

import math
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .modeldir import Config

_ACT = {"relu": F.relu, "gelu": F.gelu, "swish": F.silu}


def sinusoidal_table(n_pos: int, d: int, layout: str) -> torch.Tensor:
    """Position table, computed in float64 like the C engine, then rounded to f32."""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    half = torch.arange(d // 2, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, 2.0 * half / d)
    pe = torch.zeros(n_pos, d, dtype=torch.float64)
    if layout == "sinusoidal-interleaved":  # the paper: sin at even, cos at odd columns
        pe[:, 0:2 * (d // 2):2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle)[:, : d // 2]
    else:  # fairseq/Marian: the sin half, then the cos half
        pe[:, : d // 2] = torch.sin(angle)
        pe[:, d // 2: 2 * (d // 2)] = torch.cos(angle)
    return pe.float()


def q8_linear(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias=None) -> torch.Tensor:
    """A linear layer with int8 weights, exactly as the C engine computes it (src/gemm.h):
    each row of x is quantized to [-63, 63] with x * (63 / max|x|) rounded half to even,
    the integer products are summed exactly, then scaled by (max|x| / 63) and the row scale."""
    mx = x.abs().amax(dim=-1, keepdim=True)
    safe = torch.where(mx > 0, mx, torch.ones_like(mx))
    inv = torch.where(mx > 0, 63.0 / safe, torch.zeros_like(mx))
    sx = torch.where(mx > 0, safe / 63.0, torch.ones_like(mx))
    xq = torch.round(x * inv).clamp(-63, 63)
    acc = torch.matmul(xq.double(), q.double().t())  # exact: integers far below 2**53
    y = (acc.float() * sx) * scale
    return y + bias if bias is not None else y


class Attention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.dropout = dropout

    def split(self, x):  # [B, T, d] -> [B, h, T, dh]
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def attend(self, q, k, v, mask):
        """q [B,h,Tq,dh], k/v [B,h,Tk,dh]; mask broadcastable to [B,h,Tq,Tk], True = blocked."""
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        p = torch.softmax(scores, dim=-1)
        if self.training and self.dropout > 0:
            p = F.dropout(p, self.dropout)
        out = torch.matmul(p, v)
        b, h, t, dh = out.shape
        return self.o(out.transpose(1, 2).reshape(b, t, h * dh))

    def forward(self, x, mem, mask):
        return self.attend(self.split(self.q(x)), self.split(self.k(mem)), self.split(self.v(mem)), mask)


class FeedForward(nn.Module):
    def __init__(self, d: int, d_ff: int, activation: str, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(d, d_ff)
        self.fc2 = nn.Linear(d_ff, d)
        self.act = _ACT[activation]
        self.dropout = dropout

    def forward(self, x):
        h = self.act(self.fc1(x))
        if self.training and self.dropout > 0:
            h = F.dropout(h, self.dropout)
        return self.fc2(h)


class Layer(nn.Module):
    """One encoder layer (cross=False) or decoder layer (cross=True)."""

    def __init__(self, cfg: Config, cross: bool, dropout: float, attn_dropout: float, act_dropout: float):
        super().__init__()
        d, eps = cfg.d_model, cfg.layernorm_eps
        self.pre_norm = cfg.norm == "pre"
        self.self_attn = Attention(d, cfg.n_heads, attn_dropout)
        self.self_attn_norm = nn.LayerNorm(d, eps=eps)
        if cross:
            self.cross_attn = Attention(d, cfg.n_heads, attn_dropout)
            self.cross_attn_norm = nn.LayerNorm(d, eps=eps)
        self.ffn = FeedForward(d, cfg.d_ff, cfg.activation, act_dropout)
        self.ffn_norm = nn.LayerNorm(d, eps=eps)
        self.dropout = dropout

    def residual(self, x, norm, fn):
        if self.pre_norm:
            y = fn(norm(x))
        else:
            y = fn(x)
        if self.training and self.dropout > 0:
            y = F.dropout(y, self.dropout)
        return x + y if self.pre_norm else norm(x + y)


class Transformer(nn.Module):
    def __init__(self, cfg: Config, dropout: float = 0.0, attn_dropout: float = 0.0, act_dropout: float = 0.0):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        d = cfg.d_model
        self.src_embed = nn.Embedding(cfg.src_vocab_size, d)
        if not cfg.shared_embeddings:
            self.tgt_embed = nn.Embedding(cfg.tgt_vocab_size, d)
        if not cfg.tied_output:
            self.output = nn.Linear(d, cfg.tgt_vocab_size, bias=False)
        if cfg.logits_bias:
            self.logits_bias = nn.Parameter(torch.zeros(cfg.tgt_vocab_size))
        self.encoder = nn.Module()
        self.decoder = nn.Module()
        self.encoder.layers = nn.ModuleList(
            [Layer(cfg, False, dropout, attn_dropout, act_dropout) for _ in range(cfg.encoder_layers)])
        self.decoder.layers = nn.ModuleList(
            [Layer(cfg, True, dropout, attn_dropout, act_dropout) for _ in range(cfg.decoder_layers)])
        if cfg.encoder_final_norm:
            self.encoder.final_norm = nn.LayerNorm(d, eps=cfg.layernorm_eps)
        if cfg.decoder_final_norm:
            self.decoder.final_norm = nn.LayerNorm(d, eps=cfg.layernorm_eps)
        if cfg.positions == "learned":
            self.encoder.pos = nn.Embedding(cfg.max_positions, d)
            self.decoder.pos = nn.Embedding(cfg.max_positions, d)
        else:
            self.register_buffer("pos_table", sinusoidal_table(cfg.max_positions, d, cfg.positions),
                                 persistent=False)
        self.dropout = dropout
        self.embed_scale = math.sqrt(d) if cfg.scale_embeddings else 1.0
        self.reset_parameters()

    def reset_parameters(self):
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = self.cfg.d_model ** -0.5 if "embed" in name else None
                if std is not None:
                    nn.init.normal_(p, 0.0, std)
                else:
                    nn.init.xavier_uniform_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        with torch.no_grad():
            self.src_embed.weight[self.cfg.pad_id].zero_()

    # -- pieces ------------------------------------------------------------

    @property
    def target_embedding(self) -> nn.Embedding:
        return self.src_embed if self.cfg.shared_embeddings else self.tgt_embed

    def positions(self, side: nn.Module, start: int, length: int) -> torch.Tensor:
        if self.cfg.positions == "learned":
            return side.pos.weight[start:start + length]
        return self.pos_table[start:start + length]

    def embed(self, table: nn.Embedding, side: nn.Module, ids: torch.Tensor, start: int = 0):
        x = table(ids) * self.embed_scale + self.positions(side, start, ids.shape[1])
        if self.training and self.dropout > 0:
            x = F.dropout(x, self.dropout)
        return x

    def output_weight_name(self) -> str:
        if not self.cfg.tied_output:
            return "output.weight"
        return "src_embed.weight" if self.cfg.shared_embeddings else "tgt_embed.weight"

    def use_int8(self, quantized: Dict[str, tuple]):
        """Makes every linear layer whose weight is stored as I8 compute with int8 semantics."""
        self.q8 = {name: (q, s) for name, (q, s) in quantized.items()}
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and name + ".weight" in self.q8:
                q, scale = self.q8[name + ".weight"]
                module.forward = (lambda x, q=q, scale=scale, m=module: q8_linear(x, q, scale, m.bias))
        return self

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        q8 = getattr(self, "q8", {}).get(self.output_weight_name())
        if q8 is not None:
            out = q8_linear(h, q8[0], q8[1])
            return out + self.logits_bias if self.cfg.logits_bias else out
        w = self.target_embedding.weight if self.cfg.tied_output else self.output.weight
        out = F.linear(h, w)
        if self.cfg.logits_bias:
            out = out + self.logits_bias
        return out

    def check_length(self, n: int, what: str):
        if n > self.cfg.max_positions:
            raise ValueError(f"{what} length {n} exceeds max_positions {self.cfg.max_positions}")

    # -- full passes ---------------------------------------------------------

    def encode(self, src: torch.Tensor):
        """src [B, S] padded with pad_id -> (memory [B, S, d], key mask [B, 1, 1, S])."""
        self.check_length(src.shape[1], "source")
        mask = (src == self.cfg.pad_id)[:, None, None, :]
        x = self.embed(self.src_embed, self.encoder, src)
        for layer in self.encoder.layers:
            x = layer.residual(x, layer.self_attn_norm, lambda h: layer.self_attn(h, h, mask))
            x = layer.residual(x, layer.ffn_norm, layer.ffn)
        if self.cfg.encoder_final_norm:
            x = self.encoder.final_norm(x)
        return x, mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor):
        """Teacher-forced decoder: tgt_in [B, T] -> logits [B, T, V]."""
        t = tgt_in.shape[1]
        self.check_length(t, "target")
        causal = torch.ones(t, t, dtype=torch.bool, device=tgt_in.device).triu(1)
        x = self.embed(self.target_embedding, self.decoder, tgt_in)
        for layer in self.decoder.layers:
            x = layer.residual(x, layer.self_attn_norm, lambda h: layer.self_attn(h, h, causal))
            x = layer.residual(x, layer.cross_attn_norm, lambda h: layer.cross_attn(h, memory, src_mask))
            x = layer.residual(x, layer.ffn_norm, layer.ffn)
        if self.cfg.decoder_final_norm:
            x = self.decoder.final_norm(x)
        return self.logits(x)

    def forward(self, src, tgt_in):
        memory, mask = self.encode(src)
        return self.decode(tgt_in, memory, mask)

    # -- incremental decoding ------------------------------------------------

    def start_cache(self, memory: torch.Tensor, src_mask: torch.Tensor) -> Dict:
        """Cross-attention keys/values, computed once per sentence."""
        cross = []
        for layer in self.decoder.layers:
            a = layer.cross_attn
            cross.append((a.split(a.k(memory)), a.split(a.v(memory))))
        return {"cross": cross, "self": [None] * len(self.decoder.layers), "mask": src_mask, "step": 0}

    @staticmethod
    def reorder_cache(cache: Dict, index: torch.Tensor) -> Dict:
        """Keeps rows `index` of every cached tensor (beams that survive, in order)."""
        return {
            "cross": [(k.index_select(0, index), v.index_select(0, index)) for k, v in cache["cross"]],
            "self": [None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))
                     for kv in cache["self"]],
            "mask": cache["mask"].index_select(0, index),
            "step": cache["step"],
        }

    def decode_step(self, tokens: torch.Tensor, cache: Dict) -> torch.Tensor:
        """tokens [N] at position cache['step'] -> log-probs [N, V]; extends the cache."""
        step = cache["step"]
        self.check_length(step + 1, "target")
        x = self.embed(self.target_embedding, self.decoder, tokens[:, None], start=step)
        for i, layer in enumerate(self.decoder.layers):
            def self_attn(h, layer=layer, i=i):
                a = layer.self_attn
                k, v = a.split(a.k(h)), a.split(a.v(h))
                if cache["self"][i] is not None:
                    k = torch.cat([cache["self"][i][0], k], dim=2)
                    v = torch.cat([cache["self"][i][1], v], dim=2)
                cache["self"][i] = (k, v)
                return a.attend(a.split(a.q(h)), k, v, None)

            def cross_attn(h, layer=layer, i=i):
                a = layer.cross_attn
                k, v = cache["cross"][i]
                return a.attend(a.split(a.q(h)), k, v, cache["mask"])

            x = layer.residual(x, layer.self_attn_norm, self_attn)
            x = layer.residual(x, layer.cross_attn_norm, cross_attn)
            x = layer.residual(x, layer.ffn_norm, layer.ffn)
        if self.cfg.decoder_final_norm:
            x = self.decoder.final_norm(x)
        cache["step"] = step + 1
        logits = self.logits(x[:, 0])
        logits[:, self.cfg.pad_id] = float("-inf")  # never produced, so not normalized over
        return torch.log_softmax(logits, dim=-1)


def build(cfg: Config, state: Optional[Dict[str, torch.Tensor]] = None, quantized: Optional[Dict] = None,
          **dropouts) -> Transformer:
    """The model for cfg, with state loaded; quantized (I8 matrices from
    load_model_dir(..., with_quantized=True)) switches those layers to int8 semantics."""
    model = Transformer(cfg, **dropouts)
    if state is not None:
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    if quantized:
        model.use_int8(quantized)
    return model


def pad_batch(seqs: List[List[int]], pad_id: int) -> torch.Tensor:
    n = max(1, max((len(s) for s in seqs), default=1))
    out = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out
