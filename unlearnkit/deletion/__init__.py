"""Deletion requests on checkpoints: the forget sets they record, and the deletion report."""
