"""The networks: the RPGAN generator (buckets of blocks), its routing and paths, EigenGAN, and the
surgery of sections 4.3-4.4 (adding blocks, merging buckets). No training, no Ray."""
