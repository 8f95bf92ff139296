"""rlntp: reinforcement learning after next-token prediction, end to end (Tsilivis et al., 2025)."""

__version__ = "0.1.0"
