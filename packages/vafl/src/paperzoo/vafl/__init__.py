"""VAFL: vertical asynchronous federated learning with perturbed local embeddings
(Chen, Jin, Sun, Yin, ICML 2020 Workshop on Federated Learning, arXiv:2007.06081).

Importing this package is light; the parts (``model``, ``protocol``, ``privacy``, ``runtime``,
``baselines``, ``convex``, ``data``, ``plots``) load on first use::

    from paperzoo.vafl import FederationConfig, SimRuntime, build_federation, load_dataset
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "LocalEmbedding": "model",
    "ServerHead": "model",
    "SumHead": "model",
    "create_model": "model",
    "list_models": "model",
    "Upload": "protocol",
    "GradReply": "protocol",
    "VaflClient": "protocol",
    "VaflServer": "protocol",
    "EmbeddingBound": "privacy",
    "GaussianPerturbation": "privacy",
    "EmbeddingAccountant": "privacy",
    "ClientDPSGD": "privacy",
    "FeatureInversionAttack": "privacy",
    "FederationConfig": "runtime",
    "build_federation": "runtime",
    "SimRuntime": "runtime",
    "SyncRuntime": "runtime",
    "ThreadedRuntime": "runtime",
    "load_dataset": "data",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
