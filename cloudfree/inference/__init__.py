"""Running models: engines (torch, onnxruntime), tiling and blending, scaling, checkpoints,
bundled models, ONNX export."""
