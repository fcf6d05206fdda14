"""The contract every plugin depends on: the interfaces, the hooks, the registry and plugin
loading, configuration (attrs/cattrs, validators), errors and the task views.

It imports nothing else of unlearnkit: data, models, the engine and the tools are built on it.
"""

__version__ = "0.1.0"
