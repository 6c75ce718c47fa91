"""Real split-LoRA federated training (FedsLLM Algorithm 1, spec §2) with transformers + peft.

Modules: ``config`` (TrainConfig), ``split`` (client/server parts of any GPT-2/Llama-style causal LM),
``lora`` (peft wiring), ``batches`` (resumable per-client batch streams), ``fedsplit`` (clients, main
server, federated server), ``train`` (split-federated and centralized loops), ``checkpoint``, ``records``
(ConvergenceRecord), ``live`` (the engine's live-mode Trainer). Data/model loading: ``models``, ``data``,
``partition``, ``evaluate``.
"""
