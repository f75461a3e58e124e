# Every target sets up its own virtual environment first (.venv, pinned by constraints.txt).
# `make help` lists the targets.

PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
CONFIG ?= configs/default.yaml
# What the targets that act on a cluster read: the CONFIG given, else the cluster example.
CLUSTER_CONFIG = $(if $(filter configs/default.yaml,$(CONFIG)),configs/cluster.yaml,$(CONFIG))
ARGS ?=
# Image registry and tag: empty means the config's kubeflow.image_registry / image_tag.
REGISTRY ?=
TAG ?=
COMPONENT ?=
DRY_RUN ?=
SCHEDULE ?=
RUN_ID ?=
IMAGE ?=
NETWORK ?=
IMAGES ?= cpu cuda
RUNNER ?=
PUSH ?= 1
BASE_IMAGE ?=
TORCH_WHEELS ?=
# The Python base that images/container_engine.sh makes with debootstrap where no registry answers.
ENGINE_BASE_IMAGE := localhost/textclf-base:bookworm
PIPELINE ?= training
PORT ?= 8080
VERSION ?= latest
MODEL ?=
export REGISTRY TAG

.DEFAULT_GOAL := help
.PHONY: help setup run sweep kfold test compile lint golden-update pipeline-submit pipeline-retry cluster-check component-run images container-test bench serve clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# The MLflow server that tests/test_tracking.py starts lives in an environment of its own (its pins
# clash with ours), .venv/mlflow-server, which that test module makes the first time it runs.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# torch first and alone: pinned to 2.13.0, which is the CPU build on a machine without CUDA
	$(PYTHON) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PYTHON) -m pip install --quiet -c constraints.txt -e '.[pipelines,serve,tracking,dev]'
	touch $@

setup: $(VENV)/.installed ## create .venv and install the pinned dependencies

run: setup ## run the whole pipeline locally on the bundled sample (ARGS="key=value ..." overrides the config, ARGS=--help lists the keys; RUNNER=docker: in containers)
	$(PYTHON) -m pipelines.local_run --config $(CONFIG) $(if $(RUNNER),--runner $(RUNNER)) $(ARGS)

test: setup ## compile, lint, golden YAML, submit stub, component dry-runs, then the full suite
	$(MAKE) compile lint
	$(PYTHON) -m pytest -q tests/test_golden.py tests/test_submit.py tests/test_component_run.py
	$(PYTHON) -m pytest -q -n 2 --dist loadfile --ignore=tests/test_golden.py --ignore=tests/test_submit.py --ignore=tests/test_component_run.py $(ARGS)

compile: setup ## compile the pipelines to build/pipeline.yaml, build/sweep.yaml and build/kfold.yaml
	$(PYTHON) -m pipelines.compile --config $(CONFIG) $(ARGS)

lint: setup compile ## ruff, mypy (components/ and pipelines/, [tool.mypy]), yamllint, the compiled YAML against the backend contract (docs/kubeflow-contract.md), the InferenceService against Knative and KServe, manifests, hadolint
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy
	$(PYTHON) -m yamllint -c .yamllint.yaml build/pipeline.yaml build/sweep.yaml build/kfold.yaml configs manifests
	$(PYTHON) -m pipelines.lint build/pipeline.yaml build/sweep.yaml build/kfold.yaml
	$(PYTHON) -m pipelines.serving_lint
	$(PYTHON) -m pipelines.manifests_check manifests
	$(VENV)/bin/hadolint images/cpu.Dockerfile images/cuda.Dockerfile

golden-update: setup ## refresh the golden compiled YAML in tests/golden/ after an intended change
	env -u REGISTRY -u TAG $(PYTHON) -m pipelines.compile --config tests/golden/config.yaml --output tests/golden/pipeline.yaml

pipeline-submit: setup compile ## compile, upload a pipeline version, submit a run (KFP_HOST, KFP_NAMESPACE, KFP_TOKEN; PIPELINE=sweep or kfold; DRY_RUN=1; SCHEDULE="0 3 * * *")
	$(PYTHON) -m pipelines.submit --config $(CONFIG) --pipeline $(PIPELINE) --package build/$(if $(filter training,$(PIPELINE)),pipeline,$(PIPELINE)).yaml \
		$(if $(DRY_RUN),--dry-run) $(if $(SCHEDULE),--schedule "$(SCHEDULE)") $(ARGS)

pipeline-retry: setup ## retry a failed run where it failed, in place: make pipeline-retry RUN_ID=... (a preempted train resumes from its checkpoints)
	$(PYTHON) -m pipelines.runs retry "$(RUN_ID)" --config $(CLUSTER_CONFIG)

cluster-check: setup ## on a cluster: run the pipeline, the sweep (2 trials) and K-fold (2 folds) on 96 rows, one line per path (CONFIG=configs/cluster.yaml; ARGS=--deploy)
	$(PYTHON) -m pipelines.cluster_check --config $(CLUSTER_CONFIG) $(ARGS)

sweep: setup ## run the hyperparameter sweep locally (the config's sweep section), best trial released
	$(PYTHON) -m pipelines.local_run --config $(CONFIG) --pipeline sweep $(ARGS)

kfold: setup ## K-fold cross-validation locally (the config's kfold section), with significance tests between configurations
	$(PYTHON) -m pipelines.local_run --config $(CONFIG) --pipeline kfold $(ARGS)

serve: setup ## serve a registered model over HTTP, KServe's V1 and V2 protocols: the newest run's model unless MODEL=name (VERSION=latest, PORT=8080)
	$(PYTHON) -m pipelines.serve_local --config $(CONFIG) --port $(PORT) $(if $(MODEL),--model "$(MODEL)") --version $(VERSION) $(ARGS)

component-run: setup ## run one stage in its image: make component-run COMPONENT=train ARGS="--data_uri ..." [DRY_RUN=1] [IMAGE=...] [NETWORK=host]
	$(PYTHON) -m pipelines.component_run --config $(CONFIG) --component "$(COMPONENT)" $(if $(DRY_RUN),--dry-run) \
		$(if $(IMAGE),--image "$(IMAGE)") $(if $(NETWORK),--network "$(NETWORK)") -- $(ARGS)

images: ## build and push REGISTRY/textclf-{cpu,cuda}:TAG (required; use the same two for compile) [PUSH=0] [IMAGES=cpu] [DRY_RUN=1]
	@test -n "$(REGISTRY)" -a -n "$(TAG)" || { echo "images: set REGISTRY and TAG, e.g. make images REGISTRY=ghcr.io/you TAG=0.1.0" >&2; exit 2; }
	$(PYTHON_BOOTSTRAP) images/build.py --registry "$(REGISTRY)" --tag "$(TAG)" --images "$(IMAGES)" $(if $(filter 0,$(PUSH)),--no-push) \
		$(if $(BASE_IMAGE),--base-image "$(BASE_IMAGE)") $(if $(TORCH_WHEELS),--torch-wheels "$(TORCH_WHEELS)") $(if $(DRY_RUN),--dry-run)

container-test: setup ## set up a container engine, build the CPU image, run every stage and the compiled pipeline in containers
	BASE_IMAGE=$(ENGINE_BASE_IMAGE) bash images/container_engine.sh
	BASE_IMAGE=$$(command -v podman >/dev/null && echo $(ENGINE_BASE_IMAGE)) $(PYTHON) -m pytest -q -s -m container tests/test_containers.py

bench: setup ## run the benchmarks; figures to stdout (JSON) and benchmarks/RESULTS.md
	$(PYTHON) -m benchmarks.run_all

# What `make clean` removes under configs/default.yaml's paths: the run folders (runs/<date-time>,
# local.run_root) and the checkpoints (runs/checkpoints, which no later run resumes from); never
# the registry (runs/registry), which holds the registered models.
clean: ## remove build outputs, local run folders and checkpoints; keeps the model registry (runs/registry) and .venv
	rm -rf build .pytest_cache runs/[0-9]*-[0-9]* runs/checkpoints
