"""Appendix A.1, Figure 7: FID against the number of blocks per bucket (all buckets equal).

Too few blocks and the latent space cannot cover the data; too many and training fails.
"""

from sweeps.spec import Budget, Sweep, Variant

SWEEP = Sweep(
    name="ablation_blocks",
    about="FID vs blocks per bucket, 1 to 80 (paper A.1, Figure 7), CIFAR-10 preset",
    x="blocks_per_bucket",
    metrics=("fid", "prd", "responsibility"),
    full=Variant(
        preset="cifar10",
        space={"blocks_per_bucket": (1, 2, 5, 10, 20, 40, 80)},
        budget=Budget(steps=100_000, fid_samples=10_000, evaluations=100, samples=3, checkpoint_every=5_000),
    ),
    quick=Variant(
        preset="digits",
        space={"blocks_per_bucket": (1, 3, 10, 30)},
        budget=Budget(steps=500, fid_samples=200, evaluations=8, checkpoint_every=250),
    ),
)
