"""Hand-computed tests for the reward-model, DPO-family and KTO losses (docs/algorithms.md: reward model, preference losses).

softplus(x) = log(1 + e^x) and -logsigmoid(z) = softplus(-z) are used in the derivations.
Tolerance is 1e-5 absolute, rtol 0.
"""

from __future__ import annotations

import math

import pytest
import torch

from rewardlab.algos import (
    PREFERENCE_LOSS_TYPES,
    bradley_terry_loss,
    kto_loss,
    kto_reference_point,
    preference_loss,
)

ATOL = 1e-5


def assert_close(actual, expected, atol: float = ATOL) -> None:
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ================================================================ Bradley-Terry


def test_bradley_terry_worked_example():
    # r_c - r_r = .8: -logsigmoid(.8) = log(1 + e^-.8) = log(1.4493290) = 0.3711007; acc 1
    loss, accuracy = bradley_terry_loss(t([1.2]), t([0.4]))
    assert_close(loss, 0.3711007)
    assert_close(accuracy, 1.0)


def test_bradley_terry_margin():
    # margin 1: -logsigmoid(.8 - 1) = log(1 + e^.2) = log(2.2214028) = 0.7981389
    loss, _ = bradley_terry_loss(t([1.2]), t([0.4]), margin=t([1.0]))
    assert_close(loss, 0.7981389)
    loss_float_margin, _ = bradley_terry_loss(t([1.2]), t([0.4]), margin=1.0)
    assert_close(loss_float_margin, 0.7981389)


def test_bradley_terry_tie_is_wrong_and_batch_mean():
    # pair 2 is a tie: loss log 2 = 0.6931472, counted wrong.
    # mean loss (0.3711007 + 0.6931472) / 2 = 0.5321239; accuracy 1/2
    loss, accuracy = bradley_terry_loss(t([1.2, 0.5]), t([0.4, 0.5]))
    assert_close(loss, 0.5321239)
    assert_close(accuracy, 0.5)
    assert not accuracy.requires_grad


def test_bradley_terry_centering():
    # eta .01 adds .01 * (1.2 + .4)^2 = .01 * 2.56 = .0256 -> 0.3711007 + 0.0256 = 0.3967007
    loss, _ = bradley_terry_loss(t([1.2]), t([0.4]), center_coef=0.01)
    assert_close(loss, 0.3967007)


def test_bradley_terry_gradient():
    # d/dr_c of -logsigmoid(r_c - r_r) = -sigmoid(-(r_c - r_r)) = -sigmoid(-.8) = -0.3100255
    chosen = t([1.2]).requires_grad_()
    rejected = t([0.4]).requires_grad_()
    bradley_terry_loss(chosen, rejected)[0].backward()
    assert_close(chosen.grad, [-0.3100255])
    assert_close(rejected.grad, [0.3100255])


# ================================================================ DPO family

# pi(w) -10, pi(l) -12, ref -11 for both: h = (-10 + 11) - (-12 + 11) = 2
DPO_ARGS = (t([-10.0]), t([-12.0]), t([-11.0]), t([-11.0]))


def test_dpo_sigmoid_worked_example():
    # -logsigmoid(.1 * 2) = log(1 + e^-.2) = 0.5981389; rewards .1 * (±1) = ±0.1
    losses, chosen_rewards, rejected_rewards = preference_loss(*DPO_ARGS, beta=0.1, loss_type="sigmoid")
    assert_close(losses, [0.5981389])
    assert_close(chosen_rewards, [0.1])
    assert_close(rejected_rewards, [-0.1])


def test_dpo_at_initialisation_is_log_two():
    # pi = ref -> h = 0 -> -logsigmoid(0) = ln 2 = 0.6931472
    logps = t([-5.0, -7.0])
    losses, _, _ = preference_loss(logps, logps + 1, logps, logps + 1, beta=0.1, loss_type="sigmoid")
    assert_close(losses, [math.log(2)] * 2)


def test_dpo_gradient():
    # d/dlogpi_w of -logsigmoid(beta h) = -beta sigmoid(-beta h) = -.1 * sigmoid(-.2) = -0.0450166
    chosen = t([-10.0]).requires_grad_()
    losses, chosen_rewards, _ = preference_loss(chosen, *DPO_ARGS[1:], beta=0.1, loss_type="sigmoid")
    losses.sum().backward()
    assert_close(chosen.grad, [-0.0450166])
    assert not chosen_rewards.requires_grad


def test_cdpo_label_smoothing():
    # eps .1: .9 * log(1 + e^-.2) + .1 * log(1 + e^.2) = .9 * 0.5981389 + .1 * 0.7981389 = 0.6181389
    losses, _, _ = preference_loss(*DPO_ARGS, beta=0.1, loss_type="cdpo", label_smoothing=0.1)
    assert_close(losses, [0.6181389])
    # "sigmoid" with label smoothing is the same loss
    smoothed, _, _ = preference_loss(*DPO_ARGS, beta=0.1, loss_type="sigmoid", label_smoothing=0.1)
    assert torch.equal(smoothed, losses)


def test_ipo_worked_example():
    # (h - 1/(2 tau))^2 = (2 - 1/(2 * .1))^2 = (2 - 5)^2 = 9 (summed log-probs as given)
    losses, chosen_rewards, _ = preference_loss(*DPO_ARGS, beta=0.1, loss_type="ipo")
    assert_close(losses, [9.0])
    assert_close(chosen_rewards, [0.1])


def test_simpo_worked_example():
    # average log-probs -8/10 = -.8 and -5.5/5 = -1.1, beta 2.5, gamma 1.375:
    # z = 2.5 * -.8 - 2.5 * -1.1 - 1.375 = -2 + 2.75 - 1.375 = -.625
    # -logsigmoid(-.625) = log(1 + e^.625) = log(2.8682459) = 1.0537007
    # rewards beta * avg logp = -2.0 and -2.75. The reference is ignored (None allowed).
    losses, chosen_rewards, rejected_rewards = preference_loss(
        t([-8.0]),
        t([-5.5]),
        None,
        None,
        beta=2.5,
        loss_type="simpo",
        chosen_lengths=torch.tensor([10]),
        rejected_lengths=torch.tensor([5]),
        gamma=1.375,
    )
    assert_close(losses, [1.0537007])
    assert_close(chosen_rewards, [-2.0])
    assert_close(rejected_rewards, [-2.75])
    # gamma defaults to 1.375
    default_gamma, _, _ = preference_loss(
        t([-8.0]),
        t([-5.5]),
        None,
        None,
        beta=2.5,
        loss_type="simpo",
        chosen_lengths=torch.tensor([10]),
        rejected_lengths=torch.tensor([5]),
    )
    assert torch.equal(default_gamma, losses)


def test_unknown_loss_type_lists_valid_ones():
    assert PREFERENCE_LOSS_TYPES == ("sigmoid", "ipo", "cdpo", "simpo", "hinge", "apo_zero", "apo_down", "sft")
    with pytest.raises(ValueError, match="sigmoid, ipo, cdpo, simpo, hinge, apo_zero, apo_down, sft"):
        preference_loss(*DPO_ARGS, beta=0.1, loss_type="exo_pair")
    with pytest.raises(ValueError, match="valid: sigmoid"):
        preference_loss(*DPO_ARGS, beta=0.1, loss_type=["sigmoid", "exo_pair"])


def test_preference_loss_rejects_misused_options():
    with pytest.raises(ValueError, match="chosen_lengths and rejected_lengths"):
        preference_loss(*DPO_ARGS, beta=2.5, loss_type="simpo")
    with pytest.raises(ValueError, match="unexpected options"):
        preference_loss(*DPO_ARGS, beta=0.1, loss_type="sigmoid", gamma=1.0)
    with pytest.raises(ValueError, match="ipo"):
        preference_loss(*DPO_ARGS, beta=0.1, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="reference log-probs"):
        preference_loss(t([-1.0]), t([-2.0]), None, None, beta=0.1, loss_type="sigmoid")


# ---------------------------------------------------------------- hinge, APO, the chosen NLL, weighted sums
# DPO_ARGS again: r_w = logpi_w - logref_w = -10 + 11 = 1, r_l = -12 + 11 = -1, h = r_w - r_l = 2.
# sigmoid(.1) = 1 / (1 + e^-.1) = 1 / 1.9048374 = 0.5249792, sigmoid(-.1) = 0.4750208,
# sigmoid(.2) = 1 / (1 + e^-.2) = 1 / 1.8187308 = 0.5498340.


def test_hinge_worked_example_and_gradient():
    # relu(1 - beta h) = relu(1 - .1 * 2) = 0.8; rewards beta r = +-0.1
    chosen = t([-10.0]).requires_grad_()
    losses, chosen_rewards, rejected_rewards = preference_loss(chosen, *DPO_ARGS[1:], beta=0.1, loss_type="hinge")
    assert_close(losses, [0.8])
    assert_close(chosen_rewards, [0.1])
    assert_close(rejected_rewards, [-0.1])
    # d/dlogpi_w relu(1 - beta h) = -beta = -0.1 while 1 - beta h > 0
    losses.sum().backward()
    assert_close(chosen.grad, [-0.1])
    # beta 1: relu(1 - 1 * 2) = relu(-1) = 0, a satisfied margin adds nothing
    assert_close(preference_loss(*DPO_ARGS, beta=1.0, loss_type="hinge")[0], [0.0])


def test_apo_zero_worked_example_and_gradient():
    # (1 - sigmoid(beta r_w)) + sigmoid(beta r_l) = (1 - sigmoid(.1)) + sigmoid(-.1) = 0.4750208 + 0.4750208 = 0.9500416
    chosen = t([-10.0]).requires_grad_()
    losses, chosen_rewards, _ = preference_loss(chosen, *DPO_ARGS[1:], beta=0.1, loss_type="apo_zero")
    assert_close(losses, [0.9500416])
    assert_close(chosen_rewards, [0.1])
    # d/dlogpi_w (1 - sigmoid(beta r_w)) = -beta s (1 - s), s = sigmoid(.1):
    #   -.1 * 0.5249792 * 0.4750208 = -.1 * 0.2493760 = -0.0249376 (chosen pushed up, alone of APO-down)
    losses.sum().backward()
    assert_close(chosen.grad, [-0.0249376])


def test_apo_down_worked_example_and_gradient():
    # sigmoid(beta r_w) + (1 - sigmoid(beta h)) = sigmoid(.1) + 1 - sigmoid(.2) = 0.5249792 + 0.4501660 = 0.9751452
    chosen = t([-10.0]).requires_grad_()
    losses, _, rejected_rewards = preference_loss(chosen, *DPO_ARGS[1:], beta=0.1, loss_type="apo_down")
    assert_close(losses, [0.9751452])
    assert_close(rejected_rewards, [-0.1])
    # d/dlogpi_w = beta s1 (1 - s1) - beta s2 (1 - s2), s1 = sigmoid(.1), s2 = sigmoid(.2):
    #   .1 * 0.2493760 - .1 * 0.5498340 * 0.4501660 = 0.0249376 - .1 * 0.2475166 = 0.0249376 - 0.0247517 = 0.0001859
    #   (chosen pushed down, barely: lowering both replies, the rejected one more)
    losses.sum().backward()
    assert_close(chosen.grad, [0.0001859])


# Two pairs: chosen log-probs -10 and -6 over 4 and 2 tokens; each pair has h = 2 as in DPO_ARGS.
TWO = (t([-10.0, -6.0]), t([-12.0, -8.0]), t([-11.0, -7.0]), t([-11.0, -7.0]))
LENGTHS = torch.tensor([4, 2])


def test_sft_is_the_token_mean_nll_of_the_chosen_replies_over_the_batch():
    # -(sum logpi_w) / (sum |y_w|) = (10 + 6) / (4 + 2) = 16 / 6 = 2.6666667; each row holds its share
    #   -logpi_w,i * B / sum |y_w| = 10 * 2 / 6 = 3.3333333 and 6 * 2 / 6 = 2.0, whose mean is 2.6666667
    #   (a per-row mean would give (10/4 + 6/2) / 2 = 2.75 instead). No reference needed.
    chosen = TWO[0].clone().requires_grad_()
    losses, _, _ = preference_loss(chosen, TWO[1], None, None, beta=0.1, loss_type="sft", chosen_lengths=LENGTHS)
    assert_close(losses, [3.3333333, 2.0])
    assert_close(losses.mean(), 2.6666667)
    # d/dlogpi_w,i of the mean = -1 / sum |y_w| = -1/6 = -0.1666667 for every row
    losses.mean().backward()
    assert_close(chosen.grad, [-0.1666667, -0.1666667])
    with pytest.raises(ValueError, match="needs chosen_lengths"):
        preference_loss(*TWO, beta=0.1, loss_type="sft")


def test_a_list_of_loss_types_sums_their_batch_means_with_loss_weights():
    # sigmoid: -logsigmoid(.1 * 2) = 0.5981389 for both pairs; sft: 2.6666667 (above).
    # weights .8, .2: .8 * 0.5981389 + .2 * 2.6666667 = 0.4785111 + 0.5333333 = 1.0118445
    losses, chosen_rewards, _ = preference_loss(*TWO, beta=0.1, loss_type=["sigmoid", "sft"],
                                                loss_weights=[0.8, 0.2], chosen_lengths=LENGTHS)
    assert_close(losses.mean(), 1.0118445)
    assert_close(chosen_rewards, [0.1, 0.1])
    # no weights: 1.0 each -> 0.5981389 + 2.6666667 = 3.2648056; hinge + apo_zero: 0.8 + 0.9500416 = 1.7500416
    unweighted, _, _ = preference_loss(*TWO, beta=0.1, loss_type=["sigmoid", "sft"], chosen_lengths=LENGTHS)
    assert_close(unweighted.mean(), 3.2648056)
    assert_close(preference_loss(*DPO_ARGS, beta=0.1, loss_type=["hinge", "apo_zero"])[0], [1.7500416])
    with pytest.raises(ValueError, match="loss_weights has 1 entries for 2 loss types"):
        preference_loss(*TWO, beta=0.1, loss_type=["sigmoid", "hinge"], loss_weights=[1.0])
    with pytest.raises(ValueError, match="names a loss type twice"):
        preference_loss(*TWO, beta=0.1, loss_type=["sigmoid", "sigmoid"])


def test_rpo_alpha_adds_the_chosen_nll_to_the_preference_loss():
    # RPO: sigmoid + alpha * NLL, alpha .5: 0.5981389 + .5 * 2.6666667 = 0.5981389 + 1.3333333 = 1.9314722,
    # the same as loss_type [sigmoid, sft] with loss_weights [1, .5]
    losses, _, _ = preference_loss(*TWO, beta=0.1, loss_type="sigmoid", rpo_alpha=0.5, chosen_lengths=LENGTHS)
    assert_close(losses.mean(), 1.9314722)
    as_list, _, _ = preference_loss(*TWO, beta=0.1, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5],
                                    chosen_lengths=LENGTHS)
    assert_close(losses, as_list)
    with pytest.raises(ValueError, match="needs chosen_lengths"):
        preference_loss(*TWO, beta=0.1, loss_type="sigmoid", rpo_alpha=0.5)
    with pytest.raises(ValueError, match="label_smoothing has no meaning for the hinge, apo_zero loss"):
        preference_loss(*DPO_ARGS, beta=0.1, loss_type=["hinge", "apo_zero"], label_smoothing=0.1)


def test_dpo_config_takes_trl_loss_lists_and_checks_them():
    from rewardlab.config import ConfigError, load_config

    cfg = load_config("dpo", overrides=["loss_type=[sigmoid, sft]", "loss_weights=[0.8, 0.2]", "rpo_alpha=0.5"])
    assert (cfg.loss_type, cfg.loss_weights, cfg.rpo_alpha, cfg.loss_types) == (["sigmoid", "sft"], [0.8, 0.2], 0.5,
                                                                               ("sigmoid", "sft"))
    assert load_config("dpo", overrides={"loss_type": ["hinge"]}).loss_type == "hinge"  # a one-item list is its item
    for overrides, message in [({"loss_type": ["kto", "sigmoid"]}, "kto .* is used alone"),
                               ({"loss_type": ["sigmoid", "hinge"], "loss_weights": [1.0]}, "one weight per loss type"),
                               ({"loss_type": "apo_up"}, "loss_type='apo_up' is not valid"),
                               ({"loss_type": "hinge", "label_smoothing": 0.1}, "label_smoothing applies to"),
                               ({"loss_type": "kto", "rpo_alpha": 1.0}, "kto has no chosen replies"),
                               ({"loss_weights": [-1.0]}, "loss_weights must be finite numbers >= 0")]:
        with pytest.raises(ConfigError, match=message):
            load_config("dpo", overrides=overrides)


def test_new_loss_types_through_the_trainer_match_the_formulas(tmp_path):
    """step_loss (padded batch, chosen and rejected in one forward, reference on the fly) against the formulas
    on log-probs from unpadded forwards: [hinge, apo_zero, apo_down, sft] weighted, plus rpo_alpha."""
    import torch.nn.functional as F

    from rewardlab.config import load_config
    from rewardlab.models import build_char_tokenizer, build_tiny_model
    from rewardlab.trainers.preference import FrozenReference, step_loss
    from rewardlab.trainers.preference_inputs import encode_records

    tiny = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 2}
    tok = build_char_tokenizer()
    policy, reference = build_tiny_model(tok, seed=0, **tiny), build_tiny_model(tok, seed=1, **tiny)
    reference.save_pretrained(tmp_path / "ref")
    tok.save_pretrained(tmp_path / "ref")
    pairs = [{"prompt": "ab:", "chosen": "ba", "rejected": "abzz"}, {"prompt": "qdk:", "chosen": "dkq", "rejected": "q"}]
    weights = [0.5, 1.0, 2.0, 0.25]
    cfg = load_config("dpo", overrides={"loss_type": ["hinge", "apo_zero", "apo_down", "sft"], "loss_weights": weights,
                                        "rpo_alpha": 0.3, "beta": 0.7, "ref_model": str(tmp_path / "ref"),
                                        "model_config": tiny})
    loss, metrics = step_loss(cfg, policy, encode_records(pairs, tok, max_length=64), [0, 1], tok.pad_token_id,
                              FrozenReference(policy, cfg))

    def logp(model, prompt, completion):  # log p(completion + EOS | prompt), one unpadded forward
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        ids = prompt_ids + tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        logits = model(torch.tensor([ids])).logits[0]
        return torch.log_softmax(logits[:-1].float(), -1).gather(-1, torch.tensor(ids[1:])[:, None])[len(prompt_ids) - 1:].sum()

    b = 0.7
    pw = torch.stack([logp(policy, p["prompt"], p["chosen"]) for p in pairs])
    pl = torch.stack([logp(policy, p["prompt"], p["rejected"]) for p in pairs])
    rw = pw - torch.stack([logp(reference, p["prompt"], p["chosen"]) for p in pairs])
    rl = pl - torch.stack([logp(reference, p["prompt"], p["rejected"]) for p in pairs])
    nll = -pw.sum() / sum(len(p["chosen"]) + 1 for p in pairs)  # chosen tokens count their EOS
    expected = (weights[0] * F.relu(1 - b * (rw - rl)).mean()
                + weights[1] * (1 - torch.sigmoid(b * rw) + torch.sigmoid(b * rl)).mean()
                + weights[2] * (torch.sigmoid(b * rw) + 1 - torch.sigmoid(b * (rw - rl))).mean()
                + weights[3] * nll + 0.3 * nll)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)
    assert metrics["nll_loss"] == pytest.approx(float(nll.detach()), abs=1e-5)


# ================================================================ KTO


def test_kto_worked_example():
    # r = logpi - logref = 1.0, z0 .3, beta .1:
    # desirable:   1 - sigmoid(.1 * (1 - .3)) = 1 - sigmoid(.07) = 0.4825071
    # undesirable: 1 - sigmoid(.1 * (.3 - 1)) = sigmoid(.07) = 0.5174929, times weight 1.33 = 0.6882655
    policy = t([-4.0, -4.0]).requires_grad_()
    z0 = torch.tensor(0.3, requires_grad=True)
    losses, rewards = kto_loss(policy, t([-5.0, -5.0]), torch.tensor([True, False]), z0, beta=0.1)
    assert_close(losses, [0.4825071, 0.5174929])
    assert_close(rewards, [0.1, 0.1])
    weighted, _ = kto_loss(
        policy, t([-5.0, -5.0]), torch.tensor([True, False]), z0, beta=0.1, undesirable_weight=1.33
    )
    assert_close(weighted, [0.4825071, 0.6882655])
    # z0 is a baseline: no gradient flows into it
    losses.sum().backward()
    assert z0.grad is None
    # desirable: d/dlogpi (1 - sigmoid(beta (r - z0))) = -beta s (1 - s), s = sigmoid(.07) = 0.5174929
    #   -> -.1 * 0.5174929 * 0.4825071 = -0.0249694; undesirable: +0.0249694
    assert_close(policy.grad, [-0.0249694, 0.0249694])


def test_kto_reference_point():
    # mean([-1 + 1.5, -2 + 1.7]) = mean(.5, -.3) = .1; a negative mean clamps to 0
    policy = t([-1.0, -2.0]).requires_grad_()
    z0 = kto_reference_point(policy, t([-1.5, -1.7]))
    assert_close(z0, 0.1)
    assert not z0.requires_grad and z0.dim() == 0
    assert_close(kto_reference_point(t([-2.0, -2.0]), t([-1.0, -1.0])), 0.0)
