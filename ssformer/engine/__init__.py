"""Training and evaluation engine: configs, optimiser and schedule, loss, checkpoints, DDP, loops."""
