"""A third-party unlearnkit plugin in miniature: one unlearner, `example-head-reset`."""
