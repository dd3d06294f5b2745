"""pk-solar: SOLAR depth up-scaling (DUS) of decoder LMs (arXiv:2312.15166).

Light on purpose: the heavy modules (``dus``, ``streaming``, ``models``, ``trainer``) import
torch/transformers and are loaded only when a component or command is used.
"""

__version__ = "0.1.0"
