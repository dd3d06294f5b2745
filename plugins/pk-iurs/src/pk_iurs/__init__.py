"""pk-iurs: incremental-update recommender training and the streaming evaluation protocol."""
