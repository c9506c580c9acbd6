"""dabench: benchmarking data attribution methods for diffusion models.

The logic of the Snakemake workflow; every stage is a function here that pytest imports directly.
"""

__version__ = "0.1.0"
