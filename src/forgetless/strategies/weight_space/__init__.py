"""The weight-space family: train each task as plain fine-tuning, then edit the weights the task
ended with by arithmetic on whole weight vectors — interpolate toward the weights the stream
started from (WiSE-FT) or merge per-task task vectors (averaging, MagMax). No penalty, no
replay, no task id at test time; what they hold is a few copies of the trainable parameters."""
