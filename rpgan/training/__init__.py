"""One process's training: the train step, the losses, checkpoints and the run's metrics."""
