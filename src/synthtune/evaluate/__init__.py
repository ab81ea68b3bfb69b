"""Evaluate stage: prove the tuned model is better than the base on held-out real data."""
