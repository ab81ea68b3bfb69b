"""Mix stage: combine accepted synthetic records with real data into train/val/test."""
