"""The regularization family: keep the model's size, store no data, and penalise changing what
mattered for old tasks (EWC, Online EWC, SI, MAS) or what the old model answered (LwF)."""
