"""Featurisers (offline and timm from a local weights file) and the CRF backends."""

import pytest
import torch

from paperzoo.comad.crf import CRFParams, LocalCRF, NoCRF, create_crf
from paperzoo.comad.features import ColourTexture, DinoViTS8, TimmViT, create_featuriser, rgb_to_lab


def test_colour_texture_shape_norm_and_no_weights():
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    f = ColourTexture()
    out = f(images)
    assert out.shape == (2, f.dim, 8, 8)
    assert torch.allclose(out.norm(dim=1), torch.ones(2, 8, 8), atol=1e-5)
    assert len(list(f.parameters())) == 0
    with pytest.raises(ValueError, match="multiple of the patch stride"):
        f(torch.rand(1, 3, 60, 60))


def test_rgb_to_lab_matches_scikit_image():
    from skimage.color import rgb2lab

    images = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    expected = rgb2lab(images[0].permute(1, 2, 0).numpy())
    assert torch.allclose(
        rgb_to_lab(images)[0].permute(1, 2, 0), torch.from_numpy(expected).float(), atol=0.05
    )


def _tiny_vit_kwargs():
    return dict(depth=1, embed_dim=24, num_heads=2)


def test_timm_vit_loads_a_local_weights_file(tmp_path):
    import timm

    from paperzoo.core.checkpoint import save_weights

    source = timm.create_model(
        "vit_small_patch8_224.dino",
        pretrained=False,
        num_classes=0,
        img_size=32,
        **_tiny_vit_kwargs(),
    )
    path = save_weights(source, tmp_path / "tiny_vit.safetensors")
    featuriser = TimmViT("vit_small_patch8_224.dino", path, img_size=32, **_tiny_vit_kwargs())
    out = featuriser(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 24, 4, 4)
    for key, value in source.state_dict().items():
        assert torch.equal(featuriser.model.state_dict()[key], value)


def test_dino_refuses_a_weights_file_of_another_model(tmp_path):
    import timm

    from paperzoo.core.checkpoint import save_weights

    other = timm.create_model(
        "vit_small_patch8_224.dino",
        pretrained=False,
        num_classes=0,
        img_size=32,
        **_tiny_vit_kwargs(),
    )
    path = save_weights(other, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match=r"other\.safetensors.*(shape|missing key)"):
        DinoViTS8(path, img_size=224)


def test_weights_are_required_and_names_are_checked():
    with pytest.raises(ValueError, match="local weights file"):
        DinoViTS8(None)
    with pytest.raises(ValueError, match="local weights file"):
        create_featuriser("timm_cnn", weights=None)
    with pytest.raises(ValueError, match="colour_texture"):
        create_featuriser("sift")


def test_crf_outputs_probabilities_and_removes_a_speck_inside_a_flat_region():
    images = torch.zeros(1, 3, 64, 64)
    images[..., :, 32:] = 1.0  # two flat halves
    maps = torch.zeros(1, 2, 64, 64)
    maps[:, 0, :, :32] = 1.0
    maps[:, 1, :, 32:] = 1.0
    maps[:, :, 20:24, 44:48] = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)  # a wrong 4x4 speck
    q = LocalCRF(CRFParams(temperature=0.5), radius=3, downsample=2)(maps, images)
    assert q.shape == maps.shape and torch.allclose(q.sum(1), torch.ones(1, 64, 64), atol=1e-5)
    plain = NoCRF(CRFParams(temperature=0.5))(maps, images)
    assert q[0, 1, 21:23, 45:47].mean() > plain[0, 1, 21:23, 45:47].mean() + 0.2
    assert torch.equal(
        q, LocalCRF(CRFParams(temperature=0.5), radius=3, downsample=2)(maps, images)
    )
    with pytest.raises(ValueError, match="unknown crf 'grabcut'; choose from local, dense, none"):
        create_crf("grabcut")
    with pytest.raises(ValueError, match="one size"):
        LocalCRF()(maps, images[..., :32])


def test_timm_cnn_loads_a_full_model_file_for_patchcore(tmp_path):
    import timm

    from paperzoo.comad.features import TimmCNN
    from paperzoo.core.checkpoint import save_weights

    source = timm.create_model("resnet18", pretrained=False)
    path = save_weights(source, tmp_path / "resnet18.safetensors")
    featuriser = TimmCNN("resnet18", layers=(2, 3), weights=path)
    out = featuriser(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 128 + 256, 8, 8) and featuriser.stride == 8
    with pytest.raises(ValueError, match=r"resnet18\.safetensors"):
        TimmCNN("resnet34", layers=(2, 3), weights=path)
