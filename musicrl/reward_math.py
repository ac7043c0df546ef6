"""Re-export: the reward arithmetic lives in evaluation.reward_math (rewards and metrics are one implementation)."""

from evaluation.reward_math import *  # noqa: F401,F403
