"""The segmentation service (FastAPI + uvicorn): ``POST /segment``.

Imports `seg3d` (the same preprocessing export used), never `training` (a test enforces it). The
service arrives with the Serving issue.
"""
