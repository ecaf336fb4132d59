"""Training past one process and past float32: two CPU ranks under Lightning's ``ddp`` (gloo)
through the console script, and ``--precision bf16-mixed``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from paperzoo.core import testing
from paperzoo.core.checkpoint import read_meta
from paperzoo.rsknet.cli import main
from paperzoo.rsknet.losses import AAMSoftmax
from paperzoo.rsknet.synth import make_corpus


def _tiny_train(corpus, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(corpus.train_root), "--model", "xvector_tiny", "--epochs", "2",
            "--batch_size", "4", "--crop_s", "0.8", "--trials", str(corpus.trials), "--device", "cpu",
            "--out", str(out), *extra]


def test_ddp_through_the_console_script_scores_every_trial(tmp_path):
    """Each rank embeds its share of the trial utterances; rank 0's val_eer must be the EER of
    the whole list under the saved weights (before the gather, rank 0 held half the utterances
    and wrote no val_eer at all)."""
    corpus = make_corpus(tmp_path / "corpus", "procedural", train_speakers=4, train_utts=4,
                         test_speakers=3, test_utts=2, seed=2)
    out = tmp_path / "ddp"
    done = testing.run_console_script("paperzoo-rsknet", _tiny_train(corpus, out, "--devices", "2", "--strategy", "ddp"),
                                      tmp_path, timeout_s=240, env={"PAPERZOO_PROGRESS": "0"})
    assert done.returncode == 0, done.stderr[-3000:]
    trained = json.loads((out / "metrics.json").read_text())
    meta = read_meta(out / "model.safetensors")
    assert trained["world_size"] == meta["world_size"] == 2 and meta["batch_size_per_rank"] == 4
    # 16 utterances, 8 per rank, 2 steps of 4 per epoch on each rank
    assert trained["steps"] == meta["steps"] == 4 and np.isfinite(trained["final_loss"])
    assert "val_eer" in trained, "rank 0 wrote no val_eer: its trial embeddings were not gathered"
    embedded, scored = tmp_path / "emb", tmp_path / "score"
    assert main(["embed", "--ckpt", str(out / "model.safetensors"), "--root", str(corpus.test_root),
                 "--out", str(embedded)]) == 0
    assert main(["score", "--trials", str(corpus.trials), "--emb", str(embedded / "embeddings.npz"),
                 "--out", str(scored)]) == 0
    single = json.loads((scored / "metrics.json").read_text())
    assert trained["val_eer"] == pytest.approx(single["eer"], abs=1e-4)
    assert trained["val_mindcf001"] == pytest.approx(single["mindcf_001"], abs=1e-6)


def test_bf16_mixed_training_keeps_finite_losses(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", "procedural", train_speakers=4, train_utts=4,
                         test_speakers=3, test_utts=2, seed=2)
    out = tmp_path / "bf16"
    assert main(_tiny_train(corpus, out, "--precision", "bf16-mixed")) == 0
    trained = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(trained["final_loss"]) and 0 <= trained["val_eer"] <= 100
    assert read_meta(out / "model.safetensors")["precision"] == "bf16-mixed"
    assert main(["embed", "--ckpt", str(out / "model.safetensors"), "--root", str(corpus.test_root),
                 "--out", str(tmp_path / "emb")]) == 0


def test_aam_softmax_gradients_stay_finite_under_bf16_autocast():
    """An embedding on its class direction: in bfloat16 the cosine clamp rounds to 1 and
    sqrt(1 - cos^2)'s gradient is infinite unless the logits are computed in float32."""
    torch.manual_seed(0)
    loss = AAMSoftmax(8, 4, margin=0.2)
    embeddings = (3 * loss.weight.detach()[[0, 1]]).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(embeddings, torch.tensor([0, 1]))
    value.backward()
    assert torch.isfinite(embeddings.grad).all() and torch.isfinite(loss.weight.grad).all()
    plain = AAMSoftmax(8, 4, margin=0.2)
    plain.load_state_dict(loss.state_dict())
    assert value.item() == pytest.approx(plain(embeddings, torch.tensor([0, 1])).item(), rel=1e-6)
