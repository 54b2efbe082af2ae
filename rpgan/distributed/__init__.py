"""Training across processes: the Ray session and resource policy, Ray Train, the rendezvous and
data parallelism. The only part of the core that imports Ray."""
