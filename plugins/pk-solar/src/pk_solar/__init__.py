"""pk-solar: SOLAR depth up-scaling (DUS) of decoder LMs (arXiv:2312.15166).

Light on purpose: the heavy modules (``data``, ``models``, ``trainers``, ``evaluators``) import
torch/transformers and are loaded only when a component or command is used.
"""

__version__ = "0.1.0"
