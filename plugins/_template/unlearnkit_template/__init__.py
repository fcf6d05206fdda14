"""A template unlearnkit plugin: the `nearest-class` query sampler."""

from unlearnkit_template.sampler import NearestClass, NearestClassConfig

__all__ = ["NearestClass", "NearestClassConfig"]
