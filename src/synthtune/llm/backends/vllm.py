"""The ``vllm`` backend: offline batched generation with ``vllm.LLM`` on a CUDA GPU.

vLLM schedules the whole batch itself (continuous batching, paged attention), so requests
are handed over in one ``chat`` call. Each request gets its own sampling seed derived from
its sample index, so a resumed run reproduces the same samples. Without vllm installed or
without a GPU, creating the backend fails at once with what to do instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from synthtune import plugins
from synthtune.config import VLLMBackendConfig
from synthtune.errors import BackendError
from synthtune.llm.backends.base import GenerationRequest, GenerationResult


def _seed(sample: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{key}:{sample}".encode()).digest()[:4], "big")


class VLLMBackend:
    name = "vllm"

    def __init__(self, config: VLLMBackendConfig, path: str) -> None:
        import torch

        try:
            from vllm import LLM
        except ImportError:
            raise BackendError(
                "generate.backend.type vllm needs the vllm package and a CUDA GPU "
                "(pip install vllm); on CPU use type: transformers"
            ) from None
        if not torch.cuda.is_available():
            raise BackendError(
                "generate.backend.type vllm needs a CUDA GPU and none was found; "
                "use type: transformers on CPU"
            )
        self.config = config
        self.model = config.model
        self.llm = LLM(
            model=path,
            dtype=config.dtype,
            tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
        )

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        from vllm import SamplingParams

        cfg = self.config
        params = [
            SamplingParams(
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                max_tokens=cfg.max_tokens,
                stop=cfg.stop,
                seed=_seed(r.sample, r.key),
            )
            for r in requests
        ]
        outputs = self.llm.chat([r.messages for r in requests], params, use_tqdm=False)
        results = []
        for out in outputs:
            completion = out.outputs[0]
            text = completion.text.strip()
            results.append(
                GenerationResult(
                    text=text or None,
                    error=None if text else "empty reply",
                    tokens_in=len(out.prompt_token_ids or []),
                    tokens_out=len(completion.token_ids),
                )
            )
        return results


def _create(config: Any, resolve_model: Callable[[str], str]) -> VLLMBackend:
    return VLLMBackend(config, resolve_model(config.model))


plugins.register_backend("vllm", _create, config=VLLMBackendConfig)
