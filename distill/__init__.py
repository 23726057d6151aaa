"""tinyllm.distill: teachers, verified data generation, trainers and the multi-task curriculum.

Trainers: ``sft`` (per-task LoRA or full), ``kd`` (logit KD / GKD), ``grpo`` (verifier
rewards), ``curriculum`` (three-stage multi-task), ``recipe`` (``tinyllm distill``).
"""
