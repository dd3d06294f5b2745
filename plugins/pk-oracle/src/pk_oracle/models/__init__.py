"""pk-oracle models: the registered target :mod:`.vit`, the FMR generators (:mod:`.generators`:
pixel, PCA, autoencoder, custom encode/decode) and the oracle zoo (:mod:`.oracles`)."""
