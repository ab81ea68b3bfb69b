"""Token estimates without a tokenizer: for dry runs, TPM pacing and budgets before a call.

About 4 characters per token for Latin-script text and about one token per CJK character,
the usual rule of thumb for BPE vocabularies of current chat models; real counts from the
server's ``usage`` replace estimates wherever they exist.
"""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def estimate_tokens(text: str) -> int:
    cjk = len(_CJK.findall(text))
    return max(1, cjk + (len(text) - cjk + 3) // 4)


def estimate_messages(messages: list[dict[str, str]]) -> int:
    # ~4 tokens of role/format overhead per message in chat formats
    return sum(estimate_tokens(m["content"]) + 4 for m in messages)
