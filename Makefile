# One entry point for newcomers and CI: `make test`, `make demo`.
PY := .venv/bin/python
PIP := .venv/bin/pip

.PHONY: setup test lint demo bench clean

.venv/.installed: pyproject.toml constraints.txt
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch .venv/.installed

setup: .venv/.installed

lint: setup
	.venv/bin/ruff check tunelab tests benchmarks
	.venv/bin/ruff format --check tunelab tests benchmarks

test: setup lint
	.venv/bin/pytest -x -p no:cacheprovider

# `tunelab run` on the built-in chorales (MIDI) and on 8 of them rendered to audio, into demo/;
# the last two lines printed are the two report pages.
demo: setup
	.venv/bin/tunelab demo

bench: setup
	$(PY) benchmarks/prepare_midi.py
	$(PY) benchmarks/prepare_audio.py
	$(PY) benchmarks/wavenet_speed.py --threads 2

clean:
	rm -rf .venv build *.egg-info .pytest_cache
