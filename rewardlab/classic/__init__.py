"""Classic reinforcement learning on Gymnasium: Q-learning, DQN, REINFORCE, A2C, PPO, SAC.

Independent of the language-model stack. Each algorithm is one file that reads top to bottom
(`q_learning.py`, `dqn.py`, `reinforce.py`, `a2c.py`, `ppo.py`, `sac.py`), over a few shared modules:
envs (construction, observation encoding, episode stats), networks, policies (act/save/load),
returns (GAE, returns-to-go), rollouts, replay, runs (run directory, checkpoints, resume), evaluate.

    from rewardlab.classic import ppo
    policy, history = ppo.train(ppo.PPOConfig(env_id="CartPole-v1", total_steps=200_000))
    policy.act(obs)   # greedy action for one Gymnasium observation

Command line: `rewardlab classic <algo> --env ENV_ID [key=value ...]` and `rewardlab classic eval RUN_DIR`
(or `python -m rewardlab.classic.cli ...`). docs/classic.md has the details and measured results.
"""

ALGORITHMS = ("q_learning", "dqn", "reinforce", "a2c", "ppo", "sac")
