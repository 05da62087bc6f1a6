"""Knowledge distillation: the KD loss, the trainer, checkpoints, the teacher-logit cache, evaluation, export."""
