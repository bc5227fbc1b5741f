"""A released LISA checkpoint folder's weight files and key names: which files hold the weights, and how
each checkpoint key maps onto a :class:`LisaModel` parameter (:data:`KEY_PREFIXES`).

Only metadata is read here (the index json or the safetensors headers); ``checkpoint.load_lisa`` loads weights.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file as load_safetensors

from mllm3d.shared.errors import BadInputError

#: checkpoint key prefix -> LisaModel parameter prefix (first match wins)
KEY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("model.embed_tokens.", "lm.model.embed_tokens."),
    ("model.layers.", "lm.model.layers."),
    ("model.norm.", "lm.model.norm."),
    ("lm_head.", "lm.lm_head."),
    ("model.mm_projector.", "mm_projector."),
    ("model.visual_model.", "sam."),
    ("model.text_hidden_fcs.", "text_hidden_fcs."),
)
#: keys that may be present and are deliberately not loaded (buffers of older transformers; the CLIP
#: tower, which is loaded from its own folder)
IGNORED_KEYS = (re.compile(r"\.rotary_emb\.inv_freq$"), re.compile(r"^model\.vision_tower\."))
#: wrappers some saving paths put in front of every key
WRAPPER_PREFIXES = ("base_model.model.", "module.")

INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")


def strip_wrappers(key: str) -> str:
    """A checkpoint key without the wrapper prefixes (:data:`WRAPPER_PREFIXES`) some saving paths add."""
    for wrapper in WRAPPER_PREFIXES:
        if key.startswith(wrapper):
            key = key[len(wrapper):]
    return key


def map_checkpoint_key(key: str) -> str | None:
    """LisaModel parameter name for a checkpoint key, or None when no rule matches."""
    key = strip_wrappers(key)
    for src, dst in KEY_PREFIXES:
        if key.startswith(src):
            return dst + key[len(src):]
    return None


def checkpoint_key_for(target: str) -> str:
    """The released-checkpoint key name of a LisaModel parameter (inverse of :func:`map_checkpoint_key`)."""
    for src, dst in KEY_PREFIXES:
        if target.startswith(dst):
            return src + target[len(dst):]
    return target


def is_ignored_key(key: str) -> bool:
    """True for keys deliberately not loaded (:data:`IGNORED_KEYS`), matched after stripping wrappers."""
    bare = strip_wrappers(key)
    return any(rx.search(bare) for rx in IGNORED_KEYS)


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


class CheckpointFiles:
    """The tensors of a checkpoint: which file holds each key, their shapes, and loading.

    ``path`` is an HF folder (index json + shards, or one unsharded file) or a single weight file.
    ``key_prefix`` is prepended to every key (e.g. ``model.visual_model.`` for an official SAM file).
    """

    def __init__(self, path: Path, key_prefix: str = "") -> None:
        path = Path(path)
        self.dir = path if path.is_dir() else path.parent
        self.is_folder = path.is_dir()
        self.prefix = key_prefix
        self.key_to_file: dict[str, Path] = {}
        self._bin_cache: dict[Path, dict[str, torch.Tensor]] = {}
        if path.is_file():
            if path.suffix not in WEIGHT_SUFFIXES:
                raise BadInputError(f"{path}: not a weight file (expected one of {list(WEIGHT_SUFFIXES)})")
            self.index_file: Path | None = None
            for key in self._file_keys(path):
                self.key_to_file[key_prefix + key] = path
            return
        index = next((self.dir / n for n in INDEX_FILES if (self.dir / n).is_file()), None)
        if index is not None:
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
                raise BadInputError(f"{index}: not a valid weight index json ({e})") from e
            for key, fname in weight_map.items():
                self.key_to_file[key_prefix + key] = self.dir / fname
            absent = sorted({str(p.name) for p in self.key_to_file.values() if not p.is_file()})
            if absent:
                raise BadInputError(f"{index}: lists shard file(s) that do not exist: {absent}")
            self.index_file = index
        else:
            single = next((self.dir / n for n in SINGLE_FILES if (self.dir / n).is_file()), None)
            if single is None:
                raise BadInputError(
                    f"{self.dir}: no weights found (expected one of {list(INDEX_FILES) + list(SINGLE_FILES)})"
                )
            self.index_file = None
            for key in self._file_keys(single):
                self.key_to_file[key_prefix + key] = single

    def restrict(self, keys) -> None:
        """Keep (and later load) only ``keys``."""
        keep = set(keys)
        self.key_to_file = {k: p for k, p in self.key_to_file.items() if k in keep}

    @property
    def files(self) -> list[Path]:
        return sorted(set(self.key_to_file.values()))

    def _read_bin(self, path: Path) -> dict[str, torch.Tensor]:
        if path not in self._bin_cache:
            try:
                try:
                    sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError:  # legacy (non-zip) format cannot be memory-mapped
                    sd = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:
                raise BadInputError(f"{path}: cannot read the weight file ({type(e).__name__}: {e})") from e
            if not isinstance(sd, dict):
                raise BadInputError(f"{path}: expected a state dict, got {type(sd).__name__}")
            self._bin_cache[path] = sd
        return self._bin_cache[path]

    def _file_keys(self, path: Path) -> list[str]:
        """Raw (un-prefixed) keys of one weight file."""
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                return list(f.keys())
        return list(self._read_bin(path))

    def shapes(self, keys: list[str] | None = None) -> dict[str, tuple[int, ...]]:
        """Tensor shapes for ``keys`` (default all) without loading safetensors data."""
        wanted = set(self.key_to_file if keys is None else keys)
        out: dict[str, tuple[int, ...]] = {}
        for path in self.files:
            mine = [k for k, p in self.key_to_file.items() if p == path and k in wanted]
            if not mine:
                continue
            n = len(self.prefix)
            if path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt") as f:
                    present = set(f.keys())
                    for k in mine:
                        if k[n:] not in present:
                            raise BadInputError(f"{path}: the index lists {k[n:]!r} but the shard does not contain it")
                        out[k] = tuple(f.get_slice(k[n:]).get_shape())
            else:
                sd = self._read_bin(path)
                for k in mine:
                    if k[n:] not in sd:
                        raise BadInputError(f"{path}: the index lists {k[n:]!r} but the shard does not contain it")
                    out[k] = tuple(sd[k[n:]].shape)
        return out

    def iter_files(self) -> Iterator[tuple[Path, dict[str, torch.Tensor]]]:
        """Yield (file, state dict) one file at a time (keeps peak memory to one shard)."""
        for path in self.files:
            if path.suffix == ".safetensors":
                try:
                    sd = load_safetensors(str(path))
                except Exception as e:
                    raise BadInputError(f"{path}: cannot read the weight file ({type(e).__name__}: {e})") from e
            else:
                sd = self._read_bin(path)
            yield path, {self.prefix + k: v for k, v in sd.items() if self.prefix + k in self.key_to_file}
            self._bin_cache.pop(path, None)

    def fingerprint(self, samples: int = 16, chunk: int = 1 << 16) -> str:
        """Short path-independent hash of config.json and the weight files (name, size and ``samples``
        evenly spaced ``chunk``-byte pieces of each: cheap on a 14 GB checkpoint, different weights differ)."""
        h = hashlib.sha1()
        cfg = self.dir / "config.json"
        if self.is_folder and cfg.is_file():
            h.update(cfg.read_bytes())
        for p in self.files:
            size = p.stat().st_size
            h.update(f"{p.name}:{size};".encode())
            with open(p, "rb") as f:
                for i in range(samples):
                    f.seek(max(0, (size - chunk) * i // max(1, samples - 1)))
                    h.update(f.read(chunk))
        return h.hexdigest()[:12]
