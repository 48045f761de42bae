.PHONY: setup demo test bench bench-peers docs mutmut clean

setup:
	bash scripts/setup.sh

# Set up everything and run the daemon on the built-in demo project.
demo: setup
	bash scripts/demo.sh

# Set up everything and run ruff, mypy and every test layer.
test: setup
	bash scripts/test.sh

# Man pages and bash/zsh completions from the argparse definitions, into build/.
docs: setup
	bash scripts/docs.sh build

bench: setup
	.venv/bin/python -m bench.http_parsers
	.venv/bin/python -m bench.render
	.venv/bin/python -m bench.footprint

# The daemon against the old server's design, gunicorn+Flask and uvicorn (bench/results/RESULTS.md, bench/results/latency.png).
bench-peers: setup
	.venv/bin/pip install -q -e '.[bench]'
	.venv/bin/python -m bench.peers

# Mutation testing ([tool.mutmut] in pyproject.toml: admission, protocol, timeline, dispatch), outside make test.
# MUTMUT_ARGS narrows it, e.g. make mutmut MUTMUT_ARGS='"flipedit_previewd.http.protocol*"'; results: .venv/bin/mutmut results.
MUTMUT_CHILDREN ?= 2
mutmut: setup
	.venv/bin/pip install -q -e '.[mutation]'
	.venv/bin/mutmut run --max-children $(MUTMUT_CHILDREN) $(MUTMUT_ARGS)

clean:
	rm -rf .venv demo-data mutants .pytest_cache .mypy_cache .ruff_cache
