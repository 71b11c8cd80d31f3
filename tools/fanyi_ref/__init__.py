"""PyTorch reference implementation of fanyi: model, model directory I/O, search."""

from .modeldir import Config, load_model_dir, save_model_dir  # noqa: F401
from .model import Transformer, build  # noqa: F401
from .search import Options, translate  # noqa: F401
