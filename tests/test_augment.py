"""EfficientZero's augmentation: the random shift is a per-sample crop of the replicate-padded frame, and shifting
the stored bytes before the float conversion gives the float-first result (to one rounding of the fused scale)."""

import torch
import torch.nn.functional as F

from xtra.augmentation import augment, random_shift


def test_random_shift_is_a_crop_of_the_padded_frame_at_the_drawn_offset():
    x = torch.randint(0, 256, (6, 3, 9, 7), dtype=torch.uint8)
    out = random_shift(x, 2, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    dx = torch.randint(0, 5, (6,), generator=g)
    dy = torch.randint(0, 5, (6,), generator=g)
    padded = F.pad(x.float(), (2, 2, 2, 2), mode="replicate")
    for i in range(6):
        expected = padded[i, :, dy[i] : dy[i] + 9, dx[i] : dx[i] + 7]
        assert torch.equal(out[i].float(), expected), i
    assert out.dtype == torch.uint8 and out.shape == x.shape


def test_augment_of_bytes_equals_the_float_first_formula():
    obs = torch.randint(0, 256, (4, 3, 12, 16, 16), dtype=torch.uint8)
    got = augment(obs, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    x = random_shift(obs.reshape(-1, 12, 16, 16).float() / 255.0, 4, g)
    noise = torch.randn(x.shape[0], 1, 1, 1, generator=g).clamp(-2, 2)
    # bytes × (factor / 255) in one multiplication against (bytes / 255) × factor: at most one rounding apart
    torch.testing.assert_close(got, (x * (1.0 + 0.05 * noise)).reshape(obs.shape), rtol=2.5e-7, atol=0.0)
    assert got.dtype == torch.float32 and 0.0 <= got.min() and got.max() <= 1.1
