"""rlntp: reinforcement learning after next-token prediction, end to end (Tsilivis et al., 2025)."""

__version__ = "0.1.0"

from transformers.utils import logging as _hf_logging

_hf_logging.disable_progress_bar()  # our own bars show progress; theirs would interleave with them
