"""Reading and writing checkpoints with the standard library and numpy only (no torch).

- read_safetensors(path): the safetensors layout (F32, F16, BF16, F64, I8) -> {name: ndarray}.
- read_torch_zip(path): a torch.save() file (the zip container of torch >= 1.6) -> {name: ndarray}.
  It unpickles with an allow-list: tensors rebuilt from their storages, OrderedDict, and
  nothing else, so a hostile file cannot run code.
- write_fanyi_weights(path, tensors, dtype): fanyi's weights in f32, f16 or int8 (the same
  per-row quantization as tools/fanyi_ref/modeldir.py, bit for bit).
"""

import collections
import json
import pickle
import struct
import zipfile

import numpy as np


class CheckpointError(Exception):
    """A checkpoint file that cannot be read; the message names the file and what is wrong."""


def _bf16_to_f32(raw):
    return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)


_ST_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I8": "i1", "I64": "<i8"}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise CheckpointError(f"{path}: too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise CheckpointError(f"{path}: header length {n} exceeds the file")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as e:
        raise CheckpointError(f"{path}: header is not JSON ({e})") from None
    base, out = 8 + n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[base + begin: base + end]
        if info["dtype"] == "BF16":
            arr = _bf16_to_f32(raw)
        elif info["dtype"] in _ST_DTYPES:
            arr = np.frombuffer(raw, dtype=_ST_DTYPES[info["dtype"]])
        else:
            raise CheckpointError(f"{path}: tensor '{name}': unsupported dtype {info['dtype']}")
        out[name] = arr.reshape(info["shape"])
    return out


_STORAGE_DTYPES = {"FloatStorage": "<f4", "HalfStorage": "<f2", "DoubleStorage": "<f8", "LongStorage": "<i8",
                   "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
                   "BoolStorage": "?", "BFloat16Storage": "bf16"}


def _rebuild_tensor(storage, offset, size, stride, *_):
    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * storage.itemsize for s in stride))
    return view.copy()


def _rebuild_parameter(data, *_):
    return data


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, f, archive, prefix, path):
        super().__init__(f)
        self.archive, self.prefix, self.path = archive, prefix, path

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise CheckpointError(f"{self.path}: refusing to load {module}.{name} (only tensors are read)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise CheckpointError(f"{self.path}: unexpected persistent id {pid!r}")
        storage_type, key = pid[1], pid[2]
        try:
            raw = self.archive.read(f"{self.prefix}/data/{key}")
        except KeyError:
            raise CheckpointError(f"{self.path}: storage {key} is missing") from None
        dtype = _STORAGE_DTYPES.get(storage_type)
        if dtype is None:
            raise CheckpointError(f"{self.path}: unsupported storage {storage_type}")
        return _bf16_to_f32(raw) if dtype == "bf16" else np.frombuffer(raw, dtype=dtype)


def read_torch_zip(path):
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a zip archive (a torch.save file older than torch 1.6 is not "
                              "supported; convert it with torch, or use the model's model.safetensors)")
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if not pkl:
            raise CheckpointError(f"{path}: no data.pkl inside")
        prefix = pkl[0][: -len("/data.pkl")]
        with archive.open(pkl[0]) as f:
            state = _AllowListUnpickler(f, archive, prefix, path).load()
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return {k: v for k, v in state.items() if isinstance(v, np.ndarray)}


def quantize_rows(w):
    """Symmetric per-row int8, as fanyi_ref.modeldir.quantize_rows: w ~= q * scale[row]."""
    w = w.astype(np.float32)
    scale = np.maximum(np.abs(w).max(axis=1), np.float32(1e-12)) / np.float32(127.0)
    q = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def encode_weights(tensors, dtype):
    """f32 arrays -> what fanyi stores for dtype: matrices as F16 or I8 (+ '.scale'), vectors F32."""
    out = {}
    for name, t in tensors.items():
        t = np.asarray(t, dtype=np.float32)
        if dtype == "f32" or t.ndim != 2:
            out[name] = t
        elif dtype == "f16":
            out[name] = t.astype(np.float16)
        elif dtype == "int8":
            out[name], out[name + ".scale"] = quantize_rows(t)
        else:
            raise ValueError(f"unknown dtype {dtype}")
    return out


_NP_TO_ST = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int8): "I8"}


def write_fanyi_weights(path, tensors, dtype):
    """Writes the safetensors layout (sorted names, data 8-byte aligned) with fanyi's metadata."""
    header, blobs, offset = {}, [], 0
    for name in sorted(encoded := encode_weights(tensors, dtype)):
        t = np.ascontiguousarray(encoded[name])
        raw = t.astype(t.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _NP_TO_ST[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        pad = (-len(raw)) % 8
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    header["__metadata__"] = {"format": "fanyi", "dtype": dtype}
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((-len(hjson)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def sinusoid_halves(n_pos, d):
    """Marian's position table (sin half, cos half), in float64 then rounded, as fanyi computes it."""
    pos = np.arange(n_pos, dtype=np.float64)[:, None]
    angle = pos / np.power(10000.0, 2.0 * np.arange(d // 2, dtype=np.float64) / d)
    pe = np.zeros((n_pos, d), dtype=np.float64)
    pe[:, : d // 2] = np.sin(angle)
    pe[:, d // 2: 2 * (d // 2)] = np.cos(angle)
    return pe.astype(np.float32)
