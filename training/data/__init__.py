"""Datasets, augmentation and batching for training and evaluation.

- `nuscenes`: nuScenes-lidarseg through nuscenes-devkit (points, labels, cameras, 2D boxes);
- `semantickitti`: SemanticKITTI sequences (velodyne + labels) with the learning map of its own
  ``semantic-kitti.yaml``, for 3D-only training and evaluation;
- `protocol`: what both data sets offer the loop and evaluation (`EvaluationDataset`,
  `TrainingDataset`: samples, file points, labels, submission names);
- `synthetic`: a generated nuScenes-format data set for tests and demos;
- `sample`, `augment`, `image`, `nuscenes_geometry`: the sample type, the 2DPASS 3D augmentations
  (seedable), camera images, and the projections of points and boxes into the cameras;
- `batch`: collate samples into one batch with the shared preprocessing.
"""
