"""Training across processes on Ray: the Ray session and resource policy, Ray Train and its
rendezvous. The only part of the core that imports Ray."""
