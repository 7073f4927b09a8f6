# Entry points for people; each target is one script, so CI (.ci/run) and a
# person at a terminal run the same code.
#   make setup      packages, tracefs, .venv (scripts/setup.sh, as root)
#   make test       setup, then every test on this machine's kernel
#   make test-unit  the unit tests only: no root, no bcc, no set-up
#   make vm-test    the real-kernel tests again in a Debian 12 guest (6.1)
#   make vm-check   boot the guest and report kernel and start tracepoint only
#   make vm-image   build (or reuse) the cached guest image
# VM_ARGS go to scripts/vm-test.sh, e.g. VM_ARGS="--rebuild" or
# VM_ARGS="-- tests/root -k dd".

VM_ARGS ?=
# The venv's interpreter when scripts/setup.sh made one, else python3.
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: setup test test-unit vm-test vm-check vm-image

setup:
	bash scripts/setup.sh

test:
	bash scripts/test.sh

test-unit:
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/unit

vm-test:
	bash scripts/vm-test.sh $(VM_ARGS)

vm-check:
	bash scripts/vm-test.sh --check $(VM_ARGS)

vm-image:
	bash scripts/vm-test.sh --build-only $(VM_ARGS)
