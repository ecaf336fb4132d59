# Thin targets over uv. `make help` lists them. Every target works on a fresh machine with
# Python 3.11 and pip: `setup` installs uv with pip when it is missing.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := 3.11

PKG ?=
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
METHODS := $(notdir $(wildcard packages/*))

.PHONY: help setup demo test lint build wheel-smoke ci lock bounds

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'
	@echo "  methods: $(METHODS)"

setup: ## install uv with pip when missing, then sync the whole workspace from the lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv>=0.9,<0.14"
	$(UV) sync --locked --all-packages

demo: setup ## run every installed method's demo and print one table
	$(UV) run --locked paperzoo demo

test: setup ## every member's tests in its exact environment, plus the workspace tests (PKG=<slug> for one)
	UV="$(UV)" bash scripts/test-members $(PKG)

lint: setup ## ruff over the whole tree
	$(UV) run --locked ruff check .

lock: ## re-resolve uv.lock after changing a pyproject.toml
	$(UV) lock

build: setup ## wheels and sdists of every member into dist/
	rm -rf dist
	$(UV) build --all-packages --no-sources --out-dir dist

wheel-smoke: ## install one method alone from dist/ into a fresh venv and run its CLI (PKG=<slug>)
	@test -n "$(PKG)" || { echo "usage: make wheel-smoke PKG=<slug>"; exit 2; }
	UV="$(UV)" bash scripts/wheel-smoke $(PKG)

ci: ## what CI runs: lock check, lint, every member's tests, build, wheel smoke of every method
	UV="$(UV)" bash scripts/ci

bounds: ## test every member at its declared floors and at the newest releases (BOUNDS=lowest|highest; not in CI)
	UV="$(UV)" bash scripts/check-bounds $(or $(BOUNDS),lowest) $(PKG)
	@test -n "$(BOUNDS)" || UV="$(UV)" bash scripts/check-bounds highest $(PKG)
