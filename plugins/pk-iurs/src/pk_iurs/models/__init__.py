"""Models: pk-iurs trains pk-seqrec's SASRec and GRU4Rec; ``growth`` grows their item
tables as new items arrive (old rows bit-identical)."""

from pk_iurs.models.growth import item_count, resize_rows, set_item_count

__all__ = ["item_count", "resize_rows", "set_item_count"]
