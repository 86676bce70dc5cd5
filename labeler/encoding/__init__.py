"""Models and their inputs: model specs, the open_clip and ONNX encoders, the export, the tokenizer, preprocessing and image decoding."""
