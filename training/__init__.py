"""Training of the full 2DDATA model (2D image encoder, 3D encoder, Local Object Branch).

The only package allowed to hold the 2D encoder and the fusion/LOB branches. It builds on
`seg3d` (encoder, preprocessing, point reading, checkpoints); `export` and `serve` must never import
it (a test enforces it). Parts: `data` (nuScenes-lidarseg, SemanticKITTI, the synthetic
nuScenes-format set, augmentation, batching), `model` (the training model of modes ``3d``,
``2dpass`` and ``2ddata``, losses), `loop` (the resumable, DDP-ready training loop), `evaluation`
and ``python -m training.evaluate`` (crop and full-scan IoU, submissions), and the commands
``train``, ``describe``, ``experiments`` and ``demo``.
"""
