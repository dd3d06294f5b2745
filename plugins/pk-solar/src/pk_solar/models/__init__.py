"""pk-solar models and model transforms (each module imports torch or transformers only if it needs them).

- :mod:`.causal_lm`: the ``tiny-llama`` and ``dus-llama`` builders around a Hugging Face causal LM;
- :mod:`.dus`: the DUS layer map, config rewrite and in-memory up-scaling;
- :mod:`.dus_streaming` and :mod:`.safetensors_io`: streaming DUS of a safetensors checkpoint (``pk dus``; no torch);
- :mod:`.tiny_decoders`: tiny randomly initialised Llama/Qwen2 decoders for tests and benchmarks.
"""
