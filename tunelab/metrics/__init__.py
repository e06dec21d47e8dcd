"""Pure metric functions over notes, pieces, token sequences and audio. Nothing here imports
models, kinds, runs, data or commands: numpy and torch only."""
