"""An example unlearnkit plugin: the `logit-margin` membership-inference attack."""

from unlearnkit_logit_margin.attack import LogitMargin, LogitMarginConfig

__all__ = ["LogitMargin", "LogitMarginConfig"]
