"""fanyi for Python: neural machine translation on the CPU, through libfanyi (ctypes, standard library only).

    import fanyi
    with fanyi.Model("en-de") as model:          # an installed model's name, or a model directory
        for t in model.translate(["A dog runs.", "Two men talk."], beam=5, nbest=2):
            print(t.text, t.score, [h.text for h in t.nbest])

Model(path, threads=0) loads a model and keeps an execution context (worker
threads and working memory) for its calls; translate() takes a list of strings
and the options of fanyi(1) (beam, nbest, max_length, max_length_ratio,
length_penalty, no_repeat_ngram, repetition_penalty, target_lang,
split_sentences); None keeps the model's default. Errors raise fanyi.Error with
the library's message and code. The library is found through $FANYI_LIBRARY,
beside an installed module, in a build tree, or on the system's library path.
"""

import ctypes
import ctypes.util
import os
from dataclasses import dataclass, field
from typing import List, Optional

__all__ = ["Model", "Translation", "Hypothesis", "Error"]

_LIBDIR = None  # set by `make install` to the directory libfanyi.so.0 was installed to

ERR_USAGE, ERR_MODEL, ERR_INPUT, ERR_MEMORY, ERR_IO = 1, 2, 3, 4, 5
WARN_INVALID_UTF8, WARN_TRUNCATED, WARN_SPLIT = 1, 2, 4


class Error(Exception):
    """A failure reported by libfanyi: .code is a FANYI_ERR_* value, the message names what is wrong."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class _Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 1024)]


class _Options(ctypes.Structure):  # fanyi_options, field for field
    _fields_ = [("beam_size", ctypes.c_int), ("nbest", ctypes.c_int), ("max_length", ctypes.c_int),
                ("max_length_ratio", ctypes.c_float), ("length_penalty", ctypes.c_float),
                ("threads", ctypes.c_int), ("split_sentences", ctypes.c_int), ("no_repeat_ngram", ctypes.c_int),
                ("repetition_penalty", ctypes.c_float), ("target_lang", ctypes.c_char_p)]


class _Hyp(ctypes.Structure):
    _fields_ = [("ids", ctypes.POINTER(ctypes.c_int)), ("n_ids", ctypes.c_int), ("score", ctypes.c_float),
                ("logprob", ctypes.c_float), ("text", ctypes.c_char_p)]


class _Result(ctypes.Structure):
    _fields_ = [("hyps", ctypes.POINTER(_Hyp)), ("n_hyps", ctypes.c_int), ("warnings", ctypes.c_int)]


def _candidates():
    env = os.environ.get("FANYI_LIBRARY")
    if env:
        yield env
    if _LIBDIR:
        yield os.path.join(_LIBDIR, "libfanyi.so.0")
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "..", "build", "release", "libfanyi.so.0.1.0")
    found = ctypes.util.find_library("fanyi")
    if found:
        yield found


def _load_library():
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path}: {e}")
            continue
        return _declare(lib)
    raise ImportError("fanyi: cannot find libfanyi (set FANYI_LIBRARY, run `make lib`, or `make install`); tried: "
                      + "; ".join(tried or ["nothing"]))


def _declare(lib):
    P, I, E = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_Error)
    sigs = {
        "fanyi_load": (P, [ctypes.c_char_p, E]),
        "fanyi_free": (None, [P]),
        "fanyi_options_default": (None, [ctypes.POINTER(_Options)]),
        "fanyi_check_options": (I, [P, ctypes.POINTER(_Options), E]),
        "fanyi_context_new": (P, [I, E]),
        "fanyi_context_free": (None, [P]),
        "fanyi_context_translate_text": (I, [P, P, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_size_t), I,
                                             ctypes.POINTER(_Options), ctypes.POINTER(ctypes.POINTER(_Result)), E]),
        "fanyi_results_free": (None, [ctypes.POINTER(_Result), I]),
        "fanyi_target_langs": (I, [P, ctypes.POINTER(ctypes.c_char_p), I]),
        "fanyi_has_tokenizer": (I, [P]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


_lib = _load_library()


@dataclass
class Hypothesis:
    text: str
    score: float  # log-probability / length ** length_penalty
    logprob: float
    ids: List[int]


@dataclass
class Translation:
    text: str  # the best hypothesis ("" for an empty line)
    score: float
    nbest: List[Hypothesis] = field(default_factory=list)
    warnings: int = 0  # WARN_* bits: invalid UTF-8 replaced, line truncated or split


def _model_path(name):
    """A directory as given, else an installed model's name (the user's models, then the system's)."""
    if os.sep in name or os.path.isdir(name):
        return name
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    places = [os.path.join(data, "fanyi", "models")]
    if _LIBDIR:
        places.append(os.path.join(_LIBDIR, "..", "share", "fanyi", "models"))
    places += ["/usr/local/share/fanyi/models", "/usr/share/fanyi/models",
               os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")]
    for place in places:
        if os.path.isfile(os.path.join(place, name, "config.json")):
            return os.path.join(place, name)
    return name


def _raise(err):
    raise Error(err.code, err.message.decode("utf-8", "replace"))


class Model:
    """A loaded model and the execution context its calls share (one call at a time)."""

    def __init__(self, path: str, threads: int = 0):
        err = _Error()
        self._model = _lib.fanyi_load(_model_path(path).encode(), ctypes.byref(err))
        if not self._model:
            _raise(err)
        self._ctx = _lib.fanyi_context_new(threads, ctypes.byref(err))
        if not self._ctx:
            _lib.fanyi_free(self._model)
            self._model = None
            _raise(err)

    def target_langs(self) -> List[str]:
        """The language codes of a multi-target model (">>fra<<", ...); [] for a single target."""
        n = _lib.fanyi_target_langs(self._model, None, 0)
        langs = (ctypes.c_char_p * max(n, 1))()
        _lib.fanyi_target_langs(self._model, langs, n)
        return [langs[i].decode() for i in range(n)]

    def translate(self, lines: List[str], beam: Optional[int] = None, nbest: Optional[int] = None,
                  max_length: Optional[int] = None, max_length_ratio: Optional[float] = None,
                  length_penalty: Optional[float] = None, no_repeat_ngram: Optional[int] = None,
                  repetition_penalty: Optional[float] = None, target_lang: Optional[str] = None,
                  split_sentences: bool = False) -> List[Translation]:
        if self._model is None:
            raise Error(ERR_USAGE, "the model is closed")
        if isinstance(lines, str):
            raise TypeError("translate() takes a list of strings")
        opts = _Options()
        _lib.fanyi_options_default(ctypes.byref(opts))
        for name, value in (("beam_size", beam), ("nbest", nbest), ("max_length", max_length),
                            ("max_length_ratio", max_length_ratio), ("length_penalty", length_penalty),
                            ("repetition_penalty", repetition_penalty)):
            if value is not None:
                setattr(opts, name, value)
        if no_repeat_ngram is not None:
            opts.no_repeat_ngram = no_repeat_ngram if no_repeat_ngram > 0 else -1  # 0: off
        opts.split_sentences = int(bool(split_sentences))
        opts.target_lang = target_lang.encode() if target_lang is not None else None
        data = [line.encode("utf-8", "surrogateescape") for line in lines]
        n = len(data)
        texts = (ctypes.c_char_p * max(n, 1))(*data)
        lens = (ctypes.c_size_t * max(n, 1))(*[len(d) for d in data])
        results = ctypes.POINTER(_Result)()
        err = _Error()
        if _lib.fanyi_context_translate_text(self._ctx, self._model, texts, lens, n, ctypes.byref(opts),
                                             ctypes.byref(results), ctypes.byref(err)):
            _raise(err)
        try:
            out = []
            for i in range(n):
                r = results[i]
                hyps = [Hypothesis(h.text.decode("utf-8", "replace") if h.text else "", h.score, h.logprob,
                                   h.ids[:h.n_ids]) for h in (r.hyps[j] for j in range(r.n_hyps))]
                best = hyps[0] if hyps else Hypothesis("", 0.0, 0.0, [])
                out.append(Translation(best.text, best.score, hyps, r.warnings))
            return out
        finally:
            _lib.fanyi_results_free(results, n)

    def close(self):
        if self._ctx:
            _lib.fanyi_context_free(self._ctx)
            self._ctx = None
        if self._model:
            _lib.fanyi_free(self._model)
            self._model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()
