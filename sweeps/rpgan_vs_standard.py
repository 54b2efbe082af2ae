"""Tables 1-2: RPGAN against the standard GAN of the same architecture (one block per bucket,
a Gaussian z; the same discriminator, steps, batch and learning rate), FID and PRD over seeds.

The paper finds RPGAN's FID comparable to the standard GAN's. Run it on another preset and
data set with --preset and --data (the paper's anime and LSUN folders, or `cifar10-cpu`).
"""

from sweeps.spec import Budget, Sweep, Variant

SWEEP = Sweep(
    name="rpgan_vs_standard",
    about="RPGAN vs the standard GAN of the same architecture, 3 seeds each (Tables 1-2), CIFAR-10 preset",
    x="generator",
    metrics=("fid", "prd"),
    full=Variant(
        preset="cifar10",
        space={"generator": ("rpgan", "standard")},
        budget=Budget(steps=100_000, fid_samples=10_000, evaluations=1, samples=3, checkpoint_every=5_000),
    ),
    quick=Variant(
        preset="digits",
        space={"generator": ("rpgan", "standard")},
        budget=Budget(steps=1_500, fid_samples=500, evaluations=1, samples=3, checkpoint_every=500),
    ),
)
