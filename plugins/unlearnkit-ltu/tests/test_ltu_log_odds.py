"""How LTU turns a bank attack into membership log-odds for its BCE."""

from __future__ import annotations


import math

import torch

from unlearnkit_ltu.unlearner import LOGIT_EPS, log_odds


class _ProbaOnly:
    differentiable = True

    def predict_proba(self, logits, labels):
        return torch.sigmoid(logits[:, 0] - logits[:, 1])


class _WithLogit(_ProbaOnly):
    def membership_logit(self, logits, labels):
        return logits[:, 0] - logits[:, 1]


def test_log_odds_inverts_predict_proba_and_keeps_the_graph():
    logits = torch.tensor([[2.0, -1.0], [0.0, 0.5]], requires_grad=True)
    z = log_odds(_ProbaOnly())(logits, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(z, torch.tensor([3.0, -0.5]))
    z.sum().backward()
    torch.testing.assert_close(logits.grad, torch.tensor([[1.0, -1.0], [1.0, -1.0]]))


def test_log_odds_stays_finite_when_the_attack_is_certain():
    logits = torch.tensor([[200.0, -200.0], [-200.0, 200.0]])
    z = log_odds(_ProbaOnly())(logits, torch.zeros(2, dtype=torch.long))
    bound = math.log((1 - LOGIT_EPS) / LOGIT_EPS)
    torch.testing.assert_close(z, torch.tensor([bound, -bound]), atol=0.02, rtol=0)


def test_log_odds_prefers_the_attacks_own_membership_logit():
    attack = _WithLogit()
    logits = torch.tensor([[200.0, -200.0]])
    assert log_odds(attack)(logits, torch.zeros(1, dtype=torch.long)).item() == 400.0
