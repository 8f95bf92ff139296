"""Training stages: next-token pre-training, rollouts, rewards and the RL algorithms."""
