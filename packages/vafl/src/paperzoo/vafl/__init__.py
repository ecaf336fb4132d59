"""VAFL: vertical asynchronous federated learning with perturbed local embeddings
(Chen, Jin, Sun, Yin, ICML 2020 Workshop on Federated Learning, arXiv:2007.06081).

Nothing heavy is imported here; the parts live in ``model``, ``protocol``, ``privacy``,
``runtime``, ``baselines``, ``convex``, ``data`` and ``plots``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
