"""`unlearnkit bench`: plans and presets, the runner, the model cache, the results folder, the
grid and sequential tables, locks and provenance."""
