"""The preset registry: shapes, class counts, finite gradients, round-trips (timm style)."""

from __future__ import annotations

import pytest
import torch

from paperzoo.core import testing
from paperzoo.rco.losses import model_output
from paperzoo.rco.model import MODELS, create_model, list_models, preset_defaults

INPUTS = {
    "mlp_tiny": (2, 1, 8, 8), "tiny": (2, 1, 8, 8), "mlp_teacher": (2, 1, 8, 8),
    "mlp_student": (2, 1, 8, 8), "cnn_tiny": (2, 1, 8, 8),
    "mobilenetv2_t6_w05": (2, 3, 32, 32), "paper": (2, 3, 32, 32),
    "resnet18": (2, 3, 32, 32), "resnet50": (2, 3, 32, 32),
}
SMALL = ["mlp_tiny", "mlp_teacher", "mlp_student", "cnn_tiny", "mobilenetv2_t6_w05", "resnet18"]


def test_registry_lists_every_preset():
    assert sorted(INPUTS) == list_models()


@pytest.mark.parametrize("name", list_models())
def test_output_shape_and_head(name):
    classes = 7
    model = create_model(name, num_classes=classes).eval()
    with torch.no_grad():
        features, logits = model_output(model, torch.randn(INPUTS[name]))
    assert logits.shape == (2, classes)
    assert features.shape[:2] == (2, model.num_features)


@pytest.mark.parametrize("name", SMALL)
def test_every_parameter_gets_a_finite_gradient(name):
    torch.manual_seed(0)
    testing.check_finite_gradients(create_model(name), torch.randn(INPUTS[name]))


def test_paper_sizes():
    student = create_model("mlp_student")
    assert sum(p.numel() for p in student.parameters()) == 64 * 12 + 12 + 12 * 10 + 10  # ~0.9k
    teacher = create_model("mlp_teacher")
    assert [m.out_features for m in teacher.modules() if isinstance(m, torch.nn.Linear)] == [256, 256, 10]
    mobilenet = create_model("paper")
    assert mobilenet.num_features == 1280 and mobilenet.features[0].stride == (2, 2)
    assert mobilenet.features[0].out_channels == 16  # 32 x W with W = 0.5
    resnet = create_model("resnet18", cifar_stem=True)
    assert resnet.conv1.kernel_size == (3, 3) and isinstance(resnet.maxpool, torch.nn.Identity)


def test_unknown_preset_and_option():
    with pytest.raises(ValueError, match="unknown model 'vgg99'; choose from .*mlp_student"):
        create_model("vgg99")
    with pytest.raises(ValueError, match=r"takes no \['depth'\]; valid: .*hidden"):
        create_model("mlp_student", depth=3)


def test_registry_presets_and_explicit_overrides():
    """Presets are data; explicit arguments beat them, never the reverse."""
    assert preset_defaults("mlp_student") == {"in_features": 64, "hidden": (12,), "num_classes": 10,
                                              "dropout": 0.0}
    assert MODELS.preset("tiny") == MODELS.preset("mlp_tiny")
    assert MODELS.preset("paper") == MODELS.preset("mobilenetv2_t6_w05")
    wide = create_model("mlp_student", hidden=(20,), num_classes=3)
    assert [m.out_features for m in wide.modules() if isinstance(m, torch.nn.Linear)] == [20, 3]
    assert create_model("resnet18", cifar_stem=False, num_classes=5).conv1.kernel_size == (7, 7)


def test_checkpoint_roundtrip_and_overfit(tmp_path):
    torch.manual_seed(0)
    testing.check_checkpoint_roundtrip(create_model("cnn_tiny"), tmp_path)
    model = create_model("mlp_tiny")
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    testing.check_overfit(model, lambda m: torch.nn.functional.cross_entropy(m(x), y), steps=80)
