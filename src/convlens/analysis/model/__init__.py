"""The user's model: adapters, safe loading, layer identity, the ONNX graph and its runner, call verification."""
