"""ImageEncoder: shapes, input checks, patch order of the MIM targets, and loading a local backbone."""

from __future__ import annotations

import pytest
import torch

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder


@pytest.fixture(scope="module")
def encoder() -> ImageEncoder:
    torch.manual_seed(0)
    return ImageEncoder().eval()


def test_shapes_for_uint8_and_float(encoder):
    cfg = encoder.config
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    frame = encoder(images)
    assert frame.tokens.shape == (2, cfg.tokens_per_frame, cfg.token_dim)
    assert frame.patches.shape == (2, cfg.num_patches, cfg.token_dim) == (2, 64, 128)
    same = encoder(images.float() / 255.0)
    torch.testing.assert_close(frame.tokens, same.tokens)


def test_compression_ratio_is_a_config_value():
    enc = ImageEncoder(EncoderConfig(tokens_per_frame=4, token_dim=64, widths=(16, 32, 64)))
    frame = enc(torch.rand(1, 3, 64, 64))
    assert frame.tokens.shape == (1, 4, 64)
    assert frame.patches.shape == (1, 64, 64)


@pytest.mark.parametrize(
    "kwargs",
    [{"image_size": 60}, {"tokens_per_frame": 65}, {"token_dim": 130}, {"widths": ()}, {"dropout": 1.0}],
)
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ConfigError):
        EncoderConfig(**kwargs)


@pytest.mark.parametrize(
    "images",
    [
        torch.rand(2, 3, 32, 32),
        torch.rand(2, 1, 64, 64),
        torch.rand(3, 64, 64),
        torch.zeros(1, 3, 64, 64, dtype=torch.int32),
        torch.full((1, 3, 64, 64), float("nan")),
    ],
)
def test_bad_images_are_refused(encoder, images):
    with pytest.raises(InvalidInputError):
        encoder(images)


def test_patch_pixels_follow_the_patch_token_order(encoder):
    g, p = encoder.config.grid, encoder.config.patch_size
    images = torch.zeros(1, 3, 64, 64)
    row, col = 2, 5
    images[0, :, row * p : (row + 1) * p, col * p : (col + 1) * p] = torch.rand(3, p, p)
    pixels = encoder.patch_pixels(images)
    assert pixels.shape == (1, g * g, encoder.config.patch_pixel_dim)
    busy = pixels[0].abs().sum(-1).nonzero().flatten().tolist()
    assert busy == [row * g + col]


def test_load_backbone_from_a_local_file(tmp_path, encoder):
    path = tmp_path / "backbone.pt"
    torch.save(encoder.backbone.state_dict(), path)
    other = ImageEncoder().eval()
    other.load_backbone(path)
    for a, b in zip(
        other.backbone.state_dict().values(), encoder.backbone.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b)


def test_mismatched_or_missing_backbone_is_refused(tmp_path, encoder):
    path = tmp_path / "small.pt"
    torch.save(ImageEncoder(EncoderConfig(widths=(16, 32, 64))).backbone.state_dict(), path)
    with pytest.raises(InvalidInputError, match="wrong shapes"):
        encoder.load_backbone(path)
    with pytest.raises(InvalidInputError, match="does not exist"):
        encoder.load_backbone(tmp_path / "absent.pt")
