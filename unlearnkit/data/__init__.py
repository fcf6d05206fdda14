"""Datasets (MNIST-1D, the torchvision sets, `npz:`/`folder:` files), unlearning tasks, shadow
populations and the training recipe."""
