"""Export stage: the training mix in the formats other trainers read."""
