"""The parameter-efficient family: freeze every pretrained weight and train small LoRA adapters
(Hu et al. 2022) injected through PEFT into any ``nn.Module`` (the MLP, a Hugging Face causal LM,
a BERT-style encoder).

Strategies: ``lora`` (one adapter, a model wrapper every regulariser or replay method composes
with: ``lora+ewc``, ``lora+er``), ``lora-tasks`` (an adapter per task chosen by task id,
task-incremental) and ``olora`` (an adapter per task kept orthogonal to the earlier ones, all
applied at test time: task-agnostic). Shared pieces in ``adapters``. PEFT is imported only when a
strategy is set up, so the registry loads without it."""
