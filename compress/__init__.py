"""tinyllm.compress: pruning, quantization and LoRA merge/separate (reads and writes bundles).

Structured pruning: ``importance`` (activation statistics), ``prune`` (plan and apply),
``vocab`` (BPE vocabulary trimming), ``heal`` (KD healing loop), ``pruneoptions`` (its
options, a leaf the API reads defaults from), ``recipe`` (the run that writes the child
bundle; ``tinyllm.api.prune``). Quantization: ``gptq`` (the tensor
functions), ``hessian`` (calibration), ``mlgptq`` (every linear of a decoder),
``quantize`` (the run that writes the quantized bundle), ``incremental`` (adding a task),
``compression`` (one ``tinyllm compress`` run: prune, quantize, evaluate, report).
Importing it never needs torch.
"""
