"""Talking to language models: backends, the engine (cache, accounting, budgets), structured
replies. Shared by every stage that asks a model something (generate, the judge tier)."""
