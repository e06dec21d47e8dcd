"""A run on disk: checkpoints, export bundles, the checkpointed training state, carried
RNN state and the learning curves."""
