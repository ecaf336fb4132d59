"""The reduced validation (spec section 5): tray, one seed, 30 training images: ComAD on the
count, colour and ratio defects reaches 0.8 AUROC and beats PatchCore. And the README example."""

from paperzoo.comad.synth import SplitSizes
from paperzoo.comad.validation import run_category


def test_reduced_validation_on_tray(tmp_path):
    outcome = run_category(
        "tray", 0, tmp_path, SplitSizes(30, 8, 12, 15, 3), model="offline", image_size=224
    )
    m = outcome.metrics
    assert m["comad_v2_logical"] >= 0.8, m
    assert m["comad_v2_logical"] > m["patchcore_v2_logical"], m
    assert 0.0 <= m["seg_miou"] <= 1.0


def test_readme_python_example(tray_root):
    # the README's example, on the session's generated tray category
    from paperzoo.comad import create_model, load_images
    from paperzoo.comad.data import LocoCategory

    loco = LocoCategory(tray_root, "tray")
    train = loco.train().images  # uint8 (N, H, W, 3): any array of good images works
    model = create_model("tiny").fit(train, validation=loco.val().images)
    result = model.score(loco.test().images)
    print(result.fused[:3], result.logical.explain(0)["dominant_measure"])
    assert len(result.fused) == len(loco.test())
    assert load_images(tray_root / "tray" / "test" / "good").images.shape[1:] == (112, 112, 3)


def test_v2_scores_every_logical_subtype_but_misplacement():
    from paperzoo.comad.validation import _v2_subset

    kinds = ["good", "logical", "logical", "logical", "logical", "structural"]
    groups = ["good", "count", "swap", "relation", "misplacement", "structural"]
    assert _v2_subset(kinds, groups).tolist() == [True, True, True, True, False, False]
