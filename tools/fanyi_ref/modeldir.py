"""The fanyi model directory: config.json plus weights in the safetensors layout.

This module is the Python side of the format described in man/fanyi-model.5.
It reads and writes model directories without the `safetensors` package:
the layout is small (8-byte little-endian header length, JSON header, raw
little-endian tensor data) and writing it by hand keeps the dependency list at
torch alone.
"""

import json
import os
import struct
from dataclasses import asdict, dataclass, field, fields
from typing import Dict, List, Optional

import torch

FORMAT_NAME = "fanyi"
FORMAT_VERSION = 1

ACTIVATIONS = ("relu", "gelu", "swish")
POSITION_KINDS = ("sinusoidal-interleaved", "sinusoidal-halves", "learned")
NORM_KINDS = ("post", "pre")


@dataclass
class Config:
    """Architecture, special ids, tokenizer files and decoding defaults."""

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 256
    n_heads: int = 4
    d_ff: int = 1024
    encoder_layers: int = 3
    decoder_layers: int = 3
    max_positions: int = 256
    activation: str = "relu"
    norm: str = "post"
    encoder_final_norm: bool = False
    decoder_final_norm: bool = False
    scale_embeddings: bool = True
    positions: str = "sinusoidal-interleaved"
    shared_embeddings: bool = False
    tied_output: bool = True
    logits_bias: bool = False
    layernorm_eps: float = 1e-5
    pad_id: int = 0
    eos_id: int = 2
    unk_id: int = 1
    decoder_start_id: int = 0
    forbidden_ids: List[int] = field(default_factory=list)
    source_eos: bool = True
    # Tokenizer files, relative to the model directory (empty: ids only).
    source_spm: str = ""
    target_spm: str = ""
    vocab: str = ""
    target_vocab: str = ""  # maps target pieces when set (else vocab does)
    weights: str = "model.safetensors"
    beam_size: int = 5
    max_length: int = 256
    max_length_ratio: float = 0.0
    length_penalty: float = 1.0
    forced_eos: bool = False  # EOS is the only choice after max_length tokens
    early_stopping: bool = False  # beam search stops a sentence at beam_size finished hypotheses
    no_repeat_ngram_size: int = 0  # default repetition guards (off)
    repetition_penalty: float = 1.0

    def validate(self):
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be a multiple of n_heads")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}")
        if self.positions not in POSITION_KINDS:
            raise ValueError(f"positions must be one of {POSITION_KINDS}")
        if self.norm not in NORM_KINDS:
            raise ValueError(f"norm must be one of {NORM_KINDS}")
        if self.positions == "sinusoidal-halves" and self.d_model % 2:
            raise ValueError("sinusoidal positions need an even d_model")
        if self.shared_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError("shared embeddings need equal vocabulary sizes")
        return self

    def to_json(self) -> dict:
        d = asdict(self)
        d = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **d}
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Config":
        if d.get("format") != FORMAT_NAME:
            raise ValueError("config.json: 'format' must be \"fanyi\"")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        return cls(**kwargs).validate()


# --- safetensors ----------------------------------------------------------

_DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "I8": (torch.int8, 1)}
_TORCH_TO_NAME = {v[0]: k for k, v in _DTYPES.items()}
# Read, never written: checkpoints converted from elsewhere may hold these.
_READ_ONLY_DTYPES = {"BF16": (torch.bfloat16, 2), "F64": (torch.float64, 8)}


def write_safetensors(path: str, tensors: Dict[str, torch.Tensor], metadata: Optional[dict] = None):
    """Writes tensors in the safetensors layout, data 8-byte aligned."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        if t.dtype not in _TORCH_TO_NAME:
            raise ValueError(f"{name}: unsupported dtype {t.dtype}")
        raw = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _TORCH_TO_NAME[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        pad = (-len(raw)) % 8
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((-len(hjson)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def read_safetensors(path: str) -> Dict[str, torch.Tensor]:
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, _ = {**_DTYPES, **_READ_ONLY_DTYPES}[info["dtype"]]
        begin, end = info["data_offsets"]
        buf = bytearray(data[base + begin: base + end])
        t = torch.frombuffer(buf, dtype=dtype) if end > begin else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out


# --- quantization ---------------------------------------------------------

def quantize_rows(w: torch.Tensor):
    """Symmetric per-row int8: w ~= q * scale[row]."""
    w = w.float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale[:, None]


def encode_state(state: Dict[str, torch.Tensor], dtype: str) -> Dict[str, torch.Tensor]:
    """Turns an f32 state dict into the tensors stored for dtype f32/f16/int8.

    int8 stores every 2-D matrix as I8 with an F32 companion `<name>.scale`
    (one scale per row); vectors (biases, norms) stay F32.
    """
    out = {}
    for name, t in state.items():
        t = t.detach().float()
        if dtype == "f32" or t.dim() != 2:
            out[name] = t
        elif dtype == "f16":
            out[name] = t.half()
        elif dtype == "int8":
            q, s = quantize_rows(t)
            out[name] = q
            out[name + ".scale"] = s
        else:
            raise ValueError(f"unknown dtype {dtype}")
    return out


def decode_state(tensors: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Inverse of encode_state: f32 tensors as the engine computes with them."""
    out = {}
    for name, t in tensors.items():
        if name.endswith(".scale"):
            continue
        if t.dtype == torch.int8:
            out[name] = dequantize_rows(t, tensors[name + ".scale"])
        else:
            out[name] = t.float()
    return out


def quantized_matrices(tensors: Dict[str, torch.Tensor]) -> Dict[str, tuple]:
    """The I8 matrices of a weights file: name -> (int8 tensor, f32 per-row scales)."""
    return {name: (t, tensors[name + ".scale"]) for name, t in tensors.items()
            if t.dtype == torch.int8 and name + ".scale" in tensors}


def save_model_dir(path: str, config: Config, state: Dict[str, torch.Tensor], dtype: str = "f32",
                   extra_files: Optional[Dict[str, str]] = None):
    """Writes config.json and the weights; extra_files maps name -> source path to copy."""
    os.makedirs(path, exist_ok=True)
    config.validate()
    write_safetensors(os.path.join(path, config.weights), encode_state(state, dtype),
                      {"format": FORMAT_NAME, "dtype": dtype})
    for name, src in (extra_files or {}).items():
        with open(src, "rb") as fi, open(os.path.join(path, name), "wb") as fo:
            fo.write(fi.read())
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config.to_json(), f, indent=2)
        f.write("\n")


def load_model_dir(path: str, with_quantized: bool = False):
    """Returns (Config, f32 state dict), and with_quantized also the I8 matrices
    (name -> (int8, scales)), which the engine multiplies with int8 semantics."""
    with open(os.path.join(path, "config.json")) as f:
        config = Config.from_json(json.load(f))
    tensors = read_safetensors(os.path.join(path, config.weights))
    if with_quantized:
        return config, decode_state(tensors), quantized_matrices(tensors)
    return config, decode_state(tensors)
