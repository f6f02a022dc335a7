"""Datasets, augmentation and batching for training and evaluation.

- `semantickitti`: SemanticKITTI sequences (velodyne + labels) with the learning map of its own
  ``semantic-kitti.yaml``, for 3D-only training and evaluation;
- `augment`: the 2DPASS 3D augmentations, seedable;
- `batch`: collate samples into one batch with the shared preprocessing.

The nuScenes-lidarseg pipeline and the synthetic nuScenes-format dataset arrive with the rest of
the Data issue.
"""
