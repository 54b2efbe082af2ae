"""Which layers the latent space needs: randomise each bucket alone, or all buckets but one.

A bucket that is not randomised holds a single block, so it is a plain layer shared by every
path. Comparing FID (and the remaining buckets' responsibility) with the all-random baseline
shows which buckets the variety of the samples comes from.
"""

from sweeps.spec import Budget, Sweep, Variant

SWEEP = Sweep(
    name="random_buckets",
    about="only bucket B random, or all but B (the rest hold 1 block), vs all random; CIFAR-10 preset",
    x="random_buckets",
    metrics=("fid", "prd", "responsibility"),
    full=Variant(
        preset="cifar10",  # 5 buckets x 40 blocks
        space={"random_buckets": ("all", "1", "2", "3", "4", "5",
                                  "all-but-1", "all-but-2", "all-but-3", "all-but-4", "all-but-5")},
        budget=Budget(steps=100_000, fid_samples=10_000, evaluations=100, samples=3, checkpoint_every=5_000),
    ),
    quick=Variant(
        preset="digits",  # 4 buckets x 10 blocks
        space={"random_buckets": ("all", "1", "2", "3", "4", "all-but-1", "all-but-2", "all-but-3", "all-but-4")},
        budget=Budget(steps=500, fid_samples=200, evaluations=8, checkpoint_every=250),
    ),
)
