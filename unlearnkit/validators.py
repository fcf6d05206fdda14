"""attrs validators for component config classes; their messages name the field and quote the bad value.

    @uk.config_class
    class MyConfig:
        k: int = attrs.field(default=4, validator=uk.validators.positive)
        mode: str = attrs.field(default="fast", validator=uk.validators.one_of("fast", "exact"))

The config loader turns a failure into `$.<component>.<field>: must be > 0, got -1`.
"""

from unlearnkit.core.validators import FieldError, in_range, non_negative, one_of, positive

__all__ = ["FieldError", "in_range", "non_negative", "one_of", "positive"]
