"""fedsim: co-simulation of split federated LoRA fine-tuning of LLMs over wireless networks."""

__version__ = "0.1.0"
