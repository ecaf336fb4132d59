"""VAFL: vertical asynchronous federated learning with perturbed local embeddings
(Chen, Jin, Sun, Yin, ICML 2020 Workshop on Federated Learning, arXiv:2007.06081).

Importing this package is light; the parts (``model``, ``protocol``, ``privacy``, ``runtime``,
``baselines``, ``convex``, ``data``, ``plots``) load on first use::

    from paperzoo.vafl import FederationConfig, SimRuntime, build_federation, load_dataset
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

__getattr__, _lazy_dir, _lazy_names = lazy_loader.attach(__name__, submod_attrs={
    "model": ["LocalEmbedding", "ServerHead", "SumHead", "create_model", "list_models"],
    "protocol": ["Upload", "GradReply", "VaflClient", "VaflServer"],
    "privacy": ["EmbeddingBound", "GaussianPerturbation", "EmbeddingAccountant", "ClientDPSGD",
               "FeatureInversionAttack"],
    "runtime": ["FederationConfig", "build_federation", "SimRuntime", "SyncRuntime",
               "ThreadedRuntime"],
    "data": ["load_dataset"],
})
__all__ = ["__version__", *_lazy_names]


def __dir__() -> list[str]:
    return __all__
