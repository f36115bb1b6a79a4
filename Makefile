# reelhouse — run `make help` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= conf/local.yaml
AIRFLOW_PORT ?= 8080
MLFLOW_PORT ?= 5000
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
# The pyspark package directory of the venv, whatever its Python version. Before the first
# install it is unknown and left unset: pyspark's own launchers then find the same directory.
SPARK_HOME := $(shell [ -x $(PY) ] && $(PY) -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null)
ifneq ($(SPARK_HOME),)
export SPARK_HOME
endif
MVN ?= mvn
JVM_STAMP := jvm/target/.resolved
# spark-submit with the JVM dependencies (jvm/pom.xml) as config's spark.jars says: --jars or --packages.
SPARK_SUBMIT = $(VENV)/bin/spark-submit $$($(PY) -m reelhouse.jvm submit-args --config $(CONFIG))

.PHONY: help prereqs install system-deps lint demo test test-unit test-integration stack-up stack-down stack-status \
        cluster cluster-down \
        simulate ingest materialize maintain bench-ingest bench-freshness bench-simulate bench-features bench-serve \
        bench-train bench-quality bench-loop loop train candidates evaluate ab-report mlflow airflow airflow-daily stop clean serve

help: ## List every target with what it does
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

prereqs: ## Check Python >= 3.11, Java 17+ and Maven are installed
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || \
	  { echo "reelhouse needs Python >= 3.11 as '$(PYTHON)': install python3.11 (e.g. apt-get install python3.11 python3.11-venv) or run 'make PYTHON=python3.11 ...'"; exit 1; }
	@command -v java >/dev/null 2>&1 || \
	  { echo "reelhouse needs Java 17 for Spark: install it (e.g. apt-get install openjdk-17-jre-headless) and put 'java' on PATH"; exit 1; }
	@v=$$(java -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -1); \
	  [ -n "$$v" ] && [ "$$v" -ge 17 ] || { echo "reelhouse needs Java >= 17 for Spark 4, found '$$v': install openjdk-17-jre-headless"; exit 1; }
	@command -v $(MVN) >/dev/null 2>&1 || \
	  { echo "reelhouse needs Apache Maven to resolve Kafka, Spark's Kafka source and delta-spark (jvm/pom.xml): install it (e.g. apt-get install maven) and put 'mvn' on PATH"; exit 1; }

$(STAMP): pyproject.toml | prereqs
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check 'uv>=0.4'
	@echo "installing reelhouse and its dependencies into $(VENV) ..."
	@$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[dev]'
	@touch $(STAMP)

# Maven resolves the broker and Spark jars once into the git-ignored jvm/target (see jvm/pom.xml).
$(JVM_STAMP): jvm/pom.xml jvm/broker/pom.xml jvm/spark/pom.xml | prereqs
	@echo "resolving the JVM dependencies (Apache Kafka, spark-sql-kafka, delta-spark) with Maven ..."
	@rm -rf jvm/target
	@$(MVN) -q -B -f jvm/pom.xml package
	@touch $(JVM_STAMP)

install: $(STAMP) $(JVM_STAMP) ## Create .venv, install reelhouse with its dependencies, resolve the JVM jars with Maven

# Under CI=true a Debian package the tests need and that cannot be installed fails the build;
# on a developer's machine the tests that need it are skipped.
ifeq ($(CI),true)
SKIP_OR_FAIL := : CI=true fails instead of skipping
FAIL_ON_CI := exit 1
else
SKIP_OR_FAIL := : pytest will skip
FAIL_ON_CI := :
endif

system-deps: ## Install the Debian packages the integration tests use (redis-server, chromium, chromium-driver) when missing; needs root/apt-get
	@if command -v redis-server >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing redis-server (apt-get) for the Redis online-store tests ..."; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } || \
	    { echo "could not install redis-server (apt-get failed)$(SKIP_OR_FAIL) the Redis online-store tests"; $(FAIL_ON_CI); }; \
	else \
	  echo "redis-server is not installed (install it with 'sudo apt-get install redis-server', or run 'make system-deps' as root)$(SKIP_OR_FAIL) the Redis online-store tests"; $(FAIL_ON_CI); \
	fi
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium and chromium-driver (apt-get) for the headless browser tests of the Airflow and MLflow UIs ..."; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } || \
	    { echo "could not install chromium/chromium-driver (apt-get failed)$(SKIP_OR_FAIL) the browser tests"; $(FAIL_ON_CI); }; \
	else \
	  echo "chromium or chromedriver is not installed (install them with 'sudo apt-get install chromium chromium-driver', or run 'make system-deps' as root)$(SKIP_OR_FAIL) the browser tests"; $(FAIL_ON_CI); \
	fi

demo: install ## Start the local stack, simulate traffic, ingest it into Delta, print a summary, stop
	@$(VENV)/bin/reelhouse demo --config $(CONFIG)

DAYS ?= 3
USERS ?= 500
loop: install ## After make demo: DAYS simulated days of users on the feed service, the daily flow after each (learning vs frozen ranker; report in .reelhouse/loop)
	@$(VENV)/bin/reelhouse simulate --config $(CONFIG) --closed-loop --days $(DAYS) --users $(USERS)

lint: install ## ruff check and ruff format --check over the whole tree (make test runs it first)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

test: install system-deps lint ## Lint, then the whole test suite (unit + integration against real local services)
	@$(PY) -m pytest tests -q

test-unit: install ## Run only the fast unit tests (no services)
	@$(PY) -m pytest tests/unit -q

test-integration: install system-deps ## Run only the integration tests
	@$(PY) -m pytest tests/integration -q

stack-up: install ## Start the local Apache Kafka broker (KRaft, one node) on its data in .reelhouse/stack (reelhouse stack up)
	@$(VENV)/bin/reelhouse stack up --config $(CONFIG)

stack-down: install ## Stop what stack-up (or cluster) started; the broker's data and the stream checkpoints stay
	@$(VENV)/bin/reelhouse stack down --config $(CONFIG)

stack-status: install ## Show whether the broker (and Spark cluster) runs: pid, address, data, log, config
	@$(VENV)/bin/reelhouse stack status --config $(CONFIG)

cluster: install ## Start the local stack plus a Spark standalone cluster; prints its spark:// master URL
	@$(VENV)/bin/reelhouse stack up --spark-cluster --config $(CONFIG)

cluster-down: install ## Stop the Spark cluster and the local stack (same as stack-down)
	@$(VENV)/bin/reelhouse stack down --config $(CONFIG)

simulate: install ## Produce simulated traffic into the events topic (needs the stack up)
	@$(VENV)/bin/reelhouse simulate --config $(CONFIG)

ingest: install ## Run the ingestion job with spark-submit, draining the topic (available-now)
	@$(SPARK_SUBMIT) --master local[2] jobs/ingest_events.py --config $(CONFIG) --trigger available_now

materialize: install ## Load the latest gold features into the online store
	@$(SPARK_SUBMIT) --master local[2] jobs/materialize_online.py --config $(CONFIG)

maintain: install ## Compact, vacuum and checkpoint the Delta tables (safe while streams run)
	@$(PY) jobs/maintain_tables.py --config $(CONFIG)

train: install ## Build the training set from the lake (the last 2 days), then train, register and gate the rankers
	@$(SPARK_SUBMIT) --master local[2] jobs/build_training_set.py --config $(CONFIG) \
	  --start $$(date -u -d '2 days ago' +%Y-%m-%dT%H:00:00+00:00) --end $$(date -u -d '1 hour' +%Y-%m-%dT%H:00:00+00:00)
	@$(PY) jobs/train_ranker.py --config $(CONFIG)

candidates: install ## Recall: candidates per user and item neighbours from the lake, into Delta
	@$(SPARK_SUBMIT) --master local[2] jobs/build_candidates.py --config $(CONFIG) --as-of $$(date -u -d '1 hour' +%Y-%m-%dT%H:00:00+00:00)

evaluate: install ## Offline top-K evaluation of random, popularity, each recall source and the pipeline
	@$(VENV)/bin/reelhouse evaluate --config $(CONFIG) --k 10,20

ab-report: install ## A/B report of the experiments over the last whole UTC day (AB_START= AB_END= ISO, EXPERIMENT=)
	@$(SPARK_SUBMIT) --master local[2] jobs/ab_report.py --config $(CONFIG) \
	  --start $${AB_START:-$$(date -u -d yesterday +%Y-%m-%dT00:00:00+00:00)} --end $${AB_END:-$$(date -u +%Y-%m-%dT00:00:00+00:00)} \
	  $${EXPERIMENT:+--experiment "$$EXPERIMENT"}

serve: install ## Run the For-You feed service on http://127.0.0.1:8000 (needs serving.token; see docs/serving.md)
	@$(VENV)/bin/reelhouse serve --config $(CONFIG)

mlflow: install ## Browse runs and the model registry of the MLflow store in the background (http://127.0.0.1:5000; make stop)
	@$(PY) -m reelhouse.orchestration mlflow --config $(CONFIG) --port $(MLFLOW_PORT)

airflow: install ## Airflow (standalone) with the reelhouse DAGs in the background on http://127.0.0.1:8080; prints the login
	@$(PY) -m reelhouse.orchestration airflow --config $(CONFIG) --port $(AIRFLOW_PORT)

airflow-daily: install ## In the running Airflow (make airflow): unpause reelhouse_daily and wait for its run of the last whole day
	@$(PY) -m reelhouse.orchestration run-daily --config $(CONFIG) --port $(AIRFLOW_PORT)

stop: install ## Stop what make airflow and make mlflow started (and the streams the DAGs started)
	@$(PY) -m reelhouse.orchestration stop --config $(CONFIG)

bench-ingest: install ## Benchmark: produce >= 5M events, ingest them on local[2], compare with a raw read
	@$(PY) bench/bench_ingest.py --config $(CONFIG)

bench-freshness: install ## Benchmark: produce -> speed layer -> online store latency under >= 10k events/s
	@$(PY) bench/bench_freshness.py --config $(CONFIG)

bench-simulate: install ## Benchmark: simulator throughput into the local broker
	@$(PY) bench/bench_simulate.py --config $(CONFIG)

bench-features: install ## Benchmark: batch feature build (gold) over >= 10M silver events
	@$(PY) bench/bench_features.py --config $(CONFIG)

bench-train: install ## Benchmark: training set from >= 10M impressions (point-in-time joins), then both rankers
	@$(PY) bench/bench_train.py --config $(CONFIG)

bench-serve: install ## Benchmark: feed latency at 200/500/1000 req/s (open loop, 300 candidates ranked per request); STORE=redis for a redis-server store
	@$(PY) bench/bench_serve.py --config $(CONFIG) --store $(or $(STORE),sqlite)

bench-quality: install ## Benchmark: every recall source and the pipeline on MovieLens-100k (downloads the recbole wheel; nDCG@10 vs published)
	@$(PY) bench/bench_quality.py --config $(CONFIG)

bench-loop: install ## Benchmark: demo then 5 simulated days of 2,000 users in a workspace of its own (learning vs frozen, off-policy vs realised)
	@$(PY) bench/bench_loop.py

clean: ## Remove local data (.reelhouse) — stop the stack first
	@rm -rf .reelhouse spark-warehouse test-artifacts
