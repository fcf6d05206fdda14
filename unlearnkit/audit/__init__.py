"""`unlearnkit audit`: the model populations per-example audits read, and the audit's outputs."""
