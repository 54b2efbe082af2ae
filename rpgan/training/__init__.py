"""Training: the train step, the losses, data parallelism on torch.distributed (replica.py),
checkpoints and the run's metrics. No Ray here (rpgan.distributed runs this on Ray Train)."""
