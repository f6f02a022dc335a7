"""Export of the 3D encoder alone: the plugin-free ONNX graph, its manifest, a TensorRT engine.

`export/to_trt.py` is the command. Imports `seg3d` only, never `training`: the exported model cannot
depend on the 2D encoder or the fusion branches (a test enforces it).
"""
