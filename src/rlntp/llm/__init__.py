"""The LLM path: GSM8K/MATH mixtures, SFT and GRPO on the Hugging Face stack (paper §5.2)."""
