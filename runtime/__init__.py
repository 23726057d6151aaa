"""tinyllm.runtime: ONNX export, the in-process engine, router, scheduler and server.

The runtime must import without torch: deployment needs only numpy, tokenizers and
onnxruntime. Nothing is implemented here yet; see the engines issue.
"""
