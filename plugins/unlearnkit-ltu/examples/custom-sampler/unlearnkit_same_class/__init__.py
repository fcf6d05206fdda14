"""Example unlearnkit plugin: the `same-class` LTU query sampler."""

from unlearnkit_same_class.sampler import SameClass, SameClassConfig

__all__ = ["SameClass", "SameClassConfig"]
