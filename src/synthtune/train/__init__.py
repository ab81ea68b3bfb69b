"""Train stage: fine-tune the base model on the mix (LoRA and full fine-tuning for now)."""
