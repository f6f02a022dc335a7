"""Export of the 3D encoder alone (ONNX, TensorRT, manifest).

Imports `seg3d` only, never `training`: the exported model cannot depend on the 2D encoder or the
fusion branches (a test enforces it). `export/to_trt.py` arrives with the Export issue.
"""
