"""tinyllm.compress: pruning, quantization and LoRA merge/separate (reads and writes bundles).

Structured pruning: ``importance`` (activation statistics), ``prune`` (plan and apply),
``vocab`` (BPE vocabulary trimming), ``heal`` (KD healing loop), ``recipe`` (the run that
writes the child bundle; ``tinyllm.api.prune``). Importing it never needs torch.
"""
