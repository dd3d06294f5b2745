"""Data: block streams (``bundle``: ``StreamBundle``, row helpers, batching) and the
streaming datasets' builders (``datasets``)."""

from pk_iurs.data.bundle import ROW_KEYS, TASK, StreamBundle, batches, concat_rows, num_rows
from pk_iurs.data.datasets import (
    build_stream_diginetica,
    build_stream_ml100k,
    build_stream_synthetic,
    make_stream,
    synthetic_stream,
)

__all__ = ["ROW_KEYS", "TASK", "StreamBundle", "batches", "build_stream_diginetica", "build_stream_ml100k",
           "build_stream_synthetic", "concat_rows", "make_stream", "num_rows", "synthetic_stream"]
