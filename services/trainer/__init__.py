"""The AlphaGRPO trainer (in progress): GRPO maths (``grpo.py``) and the flow-matching SDE policy step
(``flow_sde.py``) as pure, tested tensor functions; the policy, rollouts and training loop follow."""
