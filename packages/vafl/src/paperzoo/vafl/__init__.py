"""VAFL: vertical asynchronous federated learning with perturbed local embeddings
(Chen, Jin, Sun, Yin, ICML 2020 Workshop on Federated Learning, arXiv:2007.06081).

Importing this package is light; the parts (``config``, ``model``, ``protocol``, ``privacy``,
``delays``, ``federation``, ``simulation``, ``threaded``, ``convex``, ``data``, ``pipeline``,
``validation``, ``plots``) load on first use::

    from paperzoo.vafl import FederationConfig, make_vertical_data, train_federation
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

__getattr__, _lazy_dir, _lazy_names = lazy_loader.attach(__name__, submod_attrs={
    "model": ["LocalEmbedding", "ServerHead", "SumHead", "create_model", "list_models"],
    "protocol": ["Upload", "GradReply", "VaflClient", "VaflServer"],
    "privacy": ["EmbeddingBound", "GaussianPerturbation", "EmbeddingAccountant", "ClientDPSGD",
               "FeatureInversionAttack"],
    "config": ["FederationConfig"],
    "delays": ["DelaySpec", "DropoutSchedule"],
    "federation": ["Federation", "RunHistory", "build_federation"],
    "simulation": ["SimRuntime", "SyncRuntime"],
    "threaded": ["ThreadedRuntime"],
    "data": ["VerticalData", "load_dataset", "make_vertical_data", "load_party_csvs"],
    "pipeline": ["train_federation", "train_centralised", "train_single_parties", "predict_federation"],
})
__all__ = ["__version__", *_lazy_names]


def __dir__() -> list[str]:
    return __all__
