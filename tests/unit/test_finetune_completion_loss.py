"""The CPU trainer's loss runs the LM head on the labelled positions only, and is still the same loss."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from components.finetune.training import completion_loss, labelled_positions, trainer_class  # noqa: E402


def _model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    return LlamaForCausalLM(cfg)


def _batch():
    """Two right-padded completion-only rows: prompts of 9 and 5 tokens, answers of 3 and 4."""
    ids = torch.randint(1, 97, (2, 12), generator=torch.Generator().manual_seed(1))
    labels = torch.full_like(ids, -100)
    labels[0, 9:12] = ids[0, 9:12]
    labels[1, 5:9] = ids[1, 5:9]
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_only_positions_before_a_label_are_kept() -> None:
    kept = labelled_positions(_batch()["labels"]).tolist()
    assert kept == [4, 5, 6, 7, 8, 9, 10]  # logits at t predict token t + 1; 0-3 and 11 are never read


def test_same_loss_and_gradients_as_the_full_logits_loss() -> None:
    model = _model()
    batch = _batch()
    full = model(**batch).loss  # transformers' own shifted cross-entropy over all positions
    full.backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    loss, out = completion_loss(model, batch)
    loss.backward()
    assert out.logits.shape[1] == 7  # not 12: the head ran on the kept positions
    assert torch.allclose(loss, full, atol=1e-6)
    for p, g in zip(model.parameters(), want, strict=True):
        assert torch.allclose(p.grad, g, atol=1e-6)


def test_the_trainers_token_count_normalises_under_accumulation() -> None:
    model = _model()
    batch = _batch()
    own, _ = completion_loss(model, batch)
    halved, _ = completion_loss(model, batch, num_items_in_batch=torch.tensor(14))  # 7 here + 7 elsewhere
    assert torch.allclose(halved, own / 2, atol=1e-6)


def test_cpu_gets_the_subclass_cuda_keeps_trl() -> None:
    from trl import SFTTrainer

    assert trainer_class("cuda") is SFTTrainer
    cpu = trainer_class("cpu")
    assert issubclass(cpu, SFTTrainer) and cpu.compute_loss is not SFTTrainer.compute_loss
