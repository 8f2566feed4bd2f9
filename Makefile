# `make run`: start the MONAI Label server on the bundled sample images with the bundled model.
# `make test`: run the test suite. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8000
HOST ?= 127.0.0.1
STUDIES ?= .run/studies

.PHONY: install run test bench bench-app clean

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# pip as shipped with the venv: newer pips ignore the machine's torch pin inside build environments.
	SAM2_BUILD_CUDA=0 $(PY) -m pip install -e '.[all]'
	touch $(STAMP)

# The studies folder is a copy, so labels and the datastore json never dirty the repository.
run: install
	mkdir -p $(STUDIES)
	cp -n samples/busi/images/*.png $(STUDIES)/ 2>/dev/null || true
	MONAILABEL_PYEXE=$(abspath $(PY)) $(PY) -m monailabel.main start_server \
		--app monailabel_app --studies $(STUDIES) --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) -m samus.cli bench

bench-app: install
	$(PY) benchmarks/bench_app.py

clean:
	rm -rf $(VENV) .run build lib/*.egg-info
