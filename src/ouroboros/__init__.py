"""ouroboros: the self-consuming loop of diffusion models, stage by stage.

Each module is one concept of the loop (data, models, train, sample, features, select,
metrics, ...). Heavy dependencies (torch, diffusers, transformers) are imported inside the
functions that need them, so the CPU-only stages (select, evaluate) start fast.
"""

__version__ = "0.1.0"
