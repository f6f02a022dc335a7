"""Label whole data sets offline with an exported model: ``python -m serve.label`` (`serve.label.cli`).

- `sources`: the inputs (a nuScenes root, SemanticKITTI sequences, point files) and the output
  layouts their tools read;
- `outputs`: how a model's labels are encoded for each layout;
- `worker`: one process's or actor's work, the model loaded once, each file labelled by the
  service's own path;
- `engines`: worker processes on this machine, or a Ray cluster;
- `job`: the job record (``--resume``) and the run summary.
"""
