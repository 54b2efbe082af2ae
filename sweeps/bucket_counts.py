"""Generator depth at a fixed number of blocks: 4 to 7 buckets where the image size allows.

A 32x32 SN-ResNet needs 5 buckets (linear, three up-blocks, conv); deeper generators add
same-resolution residual buckets. The total of 200 blocks (Table 1's 5 x 40) is spread evenly,
so a deeper generator has fewer blocks per bucket but more paths.
"""

from sweeps.spec import Budget, Sweep, Variant

SWEEP = Sweep(
    name="bucket_counts",
    about="FID and responsibility vs generator depth (5-7 buckets) at 200 blocks in all, CIFAR-10 preset",
    x="n_buckets",
    metrics=("fid", "prd", "responsibility"),
    full=Variant(
        preset="cifar10",
        space={"n_buckets": (5, 6, 7), "total_blocks": (200,)},
        budget=Budget(steps=100_000, fid_samples=10_000, evaluations=100, samples=3, checkpoint_every=5_000),
    ),
    quick=Variant(
        preset="digits",  # 16x16: 4 buckets at least
        space={"n_buckets": (4, 5, 6, 7), "total_blocks": (40,)},
        budget=Budget(steps=500, fid_samples=200, evaluations=8, checkpoint_every=250),
    ),
)
