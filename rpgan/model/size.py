"""How many parameters a ModelConfig's generator and discriminator have, by arithmetic on the
config alone: ModelConfig.validate refuses a model too big to allocate before anything is built
(building even on the meta device takes a second for the CIFAR-10 preset). It mirrors
rpgan.model.networks and rpgan.model.eigengan layer by layer; tests/test_bad_input.py checks it against the
built models of every architecture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rpgan.config import ModelConfig


def parameter_counts(m: ModelConfig) -> tuple[int, int]:
    """Parameters of the generator and the discriminator `m` describes, computed without building
    them (rpgan.model.networks and rpgan.model.eigengan; tests compare the two)."""
    return _generator_parameters(m), _discriminator_parameters(m)


def _generator_parameters(m: ModelConfig) -> int:
    def conv(c_in: int, c_out: int, k: int) -> int:
        return c_in * c_out * k * k + c_out

    b, w, z, c = m.blocks, m.width, m.z_dim, m.channels
    if m.arch == "eigengan":
        n_up = m.n_upsamplings
        widths = [w * 2 ** max(n_up - 1 - i, 0) for i in range(m.n_buckets + 1)]
        total = z * 16 * widths[0] + 16 * widths[0] + 2 * widths[-1] + conv(widths[-1], c, 3)
        for i in range(m.n_buckets):
            c_in, c_out, size = widths[i], widths[i + 1], 4 * 2 ** min(i, n_up)
            d = c_in * size * size
            total += m.eigen_dims * d + m.eigen_dims + d  # subspace U, L, mu
            total += conv(c_in, c_in, 1) + 2 * conv(c_in, c_out, 3) + 2 * c_in + 2 * c_out + conv(c_out, c_out, 3)
        return total
    total = z if m.input == "learned" else 0
    if m.arch == "resnet":
        total += b[0] * (z * 16 * w + 16 * w) + b[-1] * conv(w, c, 3) + 2 * w
        for i in range(1, m.n_buckets - 1):
            skip = conv(w, w, 1) if i <= m.n_upsamplings else 0
            total += b[i] * (4 * w + 2 * conv(w, w, 3) + skip)
    elif m.arch == "dcgan":
        n_up = m.n_upsamplings
        widths = [w * 2 ** (n_up - 1 - i) for i in range(n_up)] + [c]
        total += b[0] * (z * 16 * widths[0] + 16 * widths[0] + 2 * widths[0])
        for i in range(1, m.n_buckets):
            norm = 2 * widths[i] if i < m.n_buckets - 1 else 0
            total += b[i] * (conv(widths[i - 1], widths[i], 4) + norm)
    else:  # fc
        dims = [z, *m.fc_widths, c * m.image_size**2]
        plain = {m.n_buckets - 1, *m.plain_buckets}
        for i in range(m.n_buckets):
            total += b[i] * (dims[i] * dims[i + 1] + dims[i + 1] + (0 if i in plain else 2 * dims[i + 1]))
    return total


def _discriminator_parameters(m: ModelConfig) -> int:
    def conv(c_in: int, c_out: int, k: int) -> int:
        return c_in * c_out * k * k + c_out

    w, res = m.d_width, m.image_size
    if m.d_arch == "resnet":
        total, c, level = conv(m.channels, w, 3) + conv(w, w, 3) + conv(m.channels, w, 1), w, 0
        res //= 2
        while res > 8:
            level += 1
            c_out = min(w * 2**level, 8 * w) if m.image_size > 32 else w
            total += conv(c, c_out, 3) + conv(c_out, c_out, 3) + conv(c, c_out, 1)
            c, res = c_out, res // 2
        return total + 2 * (2 * conv(c, c, 3)) + c + 1
    total, c = 0, m.channels
    while res > 4:
        total += conv(c, w, 3) + conv(w, w, 4)
        c, res, w = w, (res - 2) // 2 + 1, w * 2
    return total + c * res * res + 1
