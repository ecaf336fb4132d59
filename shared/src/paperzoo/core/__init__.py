"""paperzoo-core: the thin shared core of the paperzoo method packages.

Importing this package is cheap: it loads neither torch nor Lightning. Use the submodules:
``paperzoo.core.data``, ``.lightning``, ``.cli``, ``.checkpoint``, ``.results``, ``.runtime``,
``.jobs`` and ``.testing``.
"""

__version__ = "0.1.3"
__all__ = ["__version__"]
