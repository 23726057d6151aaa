"""tinyllm.compress: pruning, quantization and LoRA merge/separate (reads and writes bundles).

Nothing is implemented here yet; see the compression issue. Importing it never needs torch.
"""
