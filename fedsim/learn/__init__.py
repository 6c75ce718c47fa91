"""Real split-LoRA federated training (FedsLLM Algorithm 1, spec §2; SplitFT, spec §10) with transformers +
peft.

Sub-packages: ``loading`` (known models, offline GGUF wheel, cache, tiny models), ``data`` (E2E, partitions,
batches), ``split`` (model families, client/server parts, LoRA, cut layouts), ``federated`` (clients, main
server, federated server, layer-wise aggregation, cut moves, adaptive cuts, the training system).
Modules: ``config`` (TrainConfig), ``setup`` (model and data for a config), ``train`` (split-federated and
centralized loops), ``evaluate``, ``checkpoint``, ``records`` (ConvergenceRecord), ``live_trainer`` (the
engine's live-mode Trainer).
"""
