"""Quality stage: dedup, fluency (perplexity) and logic (rules) tiers, review sampling."""
