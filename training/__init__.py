"""Training of the full 2DDATA model (2D image encoder, 3D encoder, Local Object Branch).

The only package allowed to hold the 2D encoder and the fusion/LOB branches. It builds on
`seg3d` (encoder and preprocessing); `export` and `serve` must never import it (a test enforces it).
The data pipeline, the model modes and the training scripts arrive with the Data and Training issues.
"""
