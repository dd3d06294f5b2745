"""Target models registered by pk-oracle (a small ViT for the CNN-vs-transformer question)."""
