"""tinyllm.distill: teachers, verified data generation, trainers and the multi-task curriculum.

Nothing is implemented here yet; see the distillation issue.
"""
