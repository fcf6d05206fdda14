"""What runs a model: training, evaluation, the stop rule, checkpoints, imported weights,
torch.distributed and progress."""
