"""LISA's tokenizer handling and the ``llava_v1`` prompt template.

The prompt is built exactly like LISA's ``chat.py``/validation code::

    "{system} USER: <im_start><image><im_end>\\n{instruction} ASSISTANT:" [+ " " + answer]

and tokenised like LLaVA's ``tokenizer_image_token``: the text is split at ``<image>``, each chunk is
tokenised on its own, the BOS of every chunk but the first is dropped, and the image features go in
between. The first chunk (system prompt + ``USER: <im_start>``) is query independent; so is the image:
together they form the prefix whose KV cache is shared by all queries of a view.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from mllm3d.shared.errors import BadInputError

SEG_TOKEN = "[SEG]"
IM_START_TOKEN = "<im_start>"
IM_END_TOKEN = "<im_end>"
IMAGE_PLACEHOLDER = "<image>"
LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


@dataclass(frozen=True)
class SpecialTokenIds:
    """Token ids that differ per checkpoint (read from its tokenizer, never hard-coded)."""

    seg: int
    eos: int | None
    bos: int | None
    pad: int


def load_tokenizer(checkpoint_dir: Path) -> PreTrainedTokenizerBase:
    """Load the checkpoint's tokenizer from its folder (offline)."""
    try:
        return AutoTokenizer.from_pretrained(str(checkpoint_dir), local_files_only=True)
    except Exception as e:  # transformers raises many types (OSError, ValueError, ImportError)
        raise BadInputError(
            f"{checkpoint_dir}: cannot load the tokenizer ({type(e).__name__}: {e}); expected tokenizer.json or "
            "a SentencePiece tokenizer.model with added_tokens.json (see docs/lisa.md)"
        ) from e


def special_token_ids(tokenizer: PreTrainedTokenizerBase, where: str) -> SpecialTokenIds:
    """Look up [SEG] (required) and BOS/EOS/PAD in the tokenizer; error names ``where``."""
    vocab = tokenizer.get_vocab()
    if SEG_TOKEN not in vocab:
        raise BadInputError(f"{where}: the tokenizer has no {SEG_TOKEN} token (not a LISA checkpoint?)")
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
    return SpecialTokenIds(
        seg=int(vocab[SEG_TOKEN]), eos=tokenizer.eos_token_id, bos=tokenizer.bos_token_id, pad=int(pad)
    )


def llava_v1_prompt(instruction: str, *, answer: str | None = None, use_im_start_end: bool = True,
                    system: str = LLAVA_V1_SYSTEM) -> str:
    """The full ``llava_v1`` conversation text with the ``<image>`` placeholder still in it."""
    image = f"{IM_START_TOKEN}{IMAGE_PLACEHOLDER}{IM_END_TOKEN}" if use_im_start_end else IMAGE_PLACEHOLDER
    text = f"{system} USER: {image}\n{instruction} ASSISTANT:"
    return text if answer is None else f"{text} {answer}"


@dataclass
class PromptTokens:
    """A prompt split at the image: ``prefix`` ids, (image features), ``suffix`` ids."""

    prefix: list[int]
    suffix: list[int]


def tokenize_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str, bos_id: int | None) -> PromptTokens:
    """Tokenise like LLaVA's ``tokenizer_image_token`` (chunks around a single ``<image>``), each chunk
    the way transformers 4.31 (LISA's release) tokenises it: see :func:`encode_like_lisa`."""
    chunks = prompt.split(IMAGE_PLACEHOLDER)
    if len(chunks) != 2:
        raise BadInputError(f"prompt must contain exactly one {IMAGE_PLACEHOLDER}: {prompt!r}")
    first = encode_like_lisa(tokenizer, chunks[0], bos_id)
    second = encode_like_lisa(tokenizer, chunks[1], bos_id)
    if bos_id is not None and second and second[0] == bos_id:
        second = second[1:]
    return PromptTokens(prefix=first, suffix=second)


def encode_like_lisa(tokenizer: PreTrainedTokenizerBase, text: str, bos_id: int | None) -> list[int]:
    """``tokenizer(text).input_ids`` as transformers 4.31's slow LlamaTokenizer computes it.

    4.31 splits the text at every added token (``<im_start>``, ``<im_end>``, ``[SEG]``, ...), strips the
    whitespace on both sides of each (special tokens such as ``</s>`` only where their ``lstrip``/``rstrip``
    flags say so), drops chunks left empty and SentencePiece-encodes every other chunk on its own (each gets
    its dummy ``'▁'`` prefix). transformers 5.x keeps that whitespace, which inserts ``'▁'`` tokens LISA
    never saw around its added tokens; the ids of ``../shared/fixtures/lisa_reference`` pin 4.31's.
    """
    added = tokenizer.get_added_vocab()
    pieces = _split_at_added_tokens(text, added, _strip_flags(tokenizer, added))
    ids: list[int] = [] if bos_id is None else [bos_id]
    for piece, is_added in pieces:
        if is_added:
            ids.append(int(added[piece]))
        else:
            ids.extend(tokenizer(piece, add_special_tokens=False).input_ids)
    return ids


def _strip_flags(tokenizer: PreTrainedTokenizerBase, added: dict[str, int]) -> dict[str, tuple[bool, bool]]:
    """Per added token, (strip on its left, strip on its right) as 4.31 applies them."""
    special = set(tokenizer.all_special_tokens)
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    flags: dict[str, tuple[bool, bool]] = {}
    for token, idx in added.items():
        extended = decoder.get(idx)
        if token in special and extended is not None:
            flags[token] = (bool(getattr(extended, "lstrip", False)), bool(getattr(extended, "rstrip", False)))
        else:  # a plain added token (LISA adds [SEG] etc. as strings): 4.31 strips both sides
            flags[token] = (True, True)
    return flags


def _split_at_added_tokens(
    text: str, added: dict[str, int], flags: dict[str, tuple[bool, bool]]
) -> list[tuple[str, bool]]:
    """``text`` as (piece, is_added_token) in order, whitespace stripped and empty pieces dropped."""
    if not added:
        return [(text, False)] if text else []
    pattern = re.compile("|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)))
    pieces: list[list] = []
    pos = 0
    for m in pattern.finditer(text):
        pieces.append([text[pos : m.start()], False])
        pieces.append([m.group(0), True])
        pos = m.end()
    pieces.append([text[pos:], False])
    for i, (piece, is_added) in enumerate(pieces):
        if not is_added:
            continue
        left, right = flags[piece]
        if left and i > 0:
            pieces[i - 1][0] = pieces[i - 1][0].rstrip()
        if right and i + 1 < len(pieces):
            pieces[i + 1][0] = pieces[i + 1][0].lstrip()
    return [(p, a) for p, a in pieces if p]
