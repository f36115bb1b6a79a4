"""Configuration models. Every field says what it is for; unknown keys are errors.

Paths: relative paths are resolved by the loader against the project directory (the parent of the
folder holding the YAML file), so jobs behave the same whatever directory they are started from.
Locations that may live on object storage (the lake, checkpoints) are kept as URI strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicConfig(_Model):
    name: str = Field(description="Kafka topic name.")
    partitions: int = Field(4, ge=1, le=10_000, description="Partition count used when the topic is created.")
    replication_factor: int = Field(1, ge=1, description="Replication factor used when the topic is created.")


class KafkaConfig(_Model):
    bootstrap_servers: str = Field(description="Comma-separated host:port list; the only setting a real cluster needs.")
    events_topic: TopicConfig = Field(description="Topic that carries the activity-log events.")
    client: dict[str, str] = Field(
        default_factory=dict,
        description="Extra librdkafka settings for every client (security.protocol, sasl.*, ssl.* ...).",
    )
    producer: dict[str, str] = Field(
        default_factory=lambda: {
            "linger.ms": "20",
            "compression.type": "lz4",
            "acks": "all",
            "batch.num.messages": "10000",
            "queue.buffering.max.messages": "1000000",
        },
        description="librdkafka producer settings layered over `client`. The feed service's producer always adds "
        "enable.idempotence=true and acks=all and takes message.timeout.ms from serving.delivery_timeout_s "
        "(a 202 of POST /v1/events promises what those settings keep).",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_have_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port entries, got {server!r}")
        return value


class BrokerConfig(_Model):
    """The local single-node Apache Kafka broker (KRaft: broker and controller in one JVM, node id 1)."""

    host: str = Field("127.0.0.1", description="Address both listeners bind to and the broker advertises.")
    port: int = Field(
        19092,
        ge=1,
        le=65535,
        description="Kafka (PLAINTEXT) port clients connect to; kafka.bootstrap_servers names it.",
    )
    controller_port: int = Field(
        19093, ge=1, le=65535, description="Port of the KRaft controller listener (only the broker itself uses it)."
    )
    heap: str = Field(
        "512m",
        pattern=r"^[0-9]+[mMgG]$",
        description="Maximum JVM heap of the broker (-Xmx). Kafka keeps its data in the page cache, not on the "
        "heap, so a small heap is enough for a local broker.",
    )
    properties: dict[str, str] = Field(
        default_factory=dict,
        description="Extra server.properties settings layered over the generated ones (e.g. log.retention.hours); "
        "the listeners, node id, quorum and log.dirs are the stack's own and cannot be replaced here.",
    )


class SparkClusterConfig(_Model):
    """The Spark standalone cluster `reelhouse stack up --spark-cluster` starts: one master, a few workers."""

    host: str = Field("127.0.0.1", description="Address the master, the workers and their web UIs listen on.")
    master_port: int = Field(
        17077, ge=1, le=65535, description="Port of the master; jobs run with `--master spark://host:master_port`."
    )
    master_webui_port: int = Field(
        17080, ge=1, le=65535, description="Port of the master's web UI; its /json page lists the alive workers."
    )
    workers: int = Field(2, ge=1, le=16, description="Worker processes; each runs one executor JVM per application.")
    cores_per_worker: int = Field(1, ge=1, description="Cores each worker offers to executors.")
    memory_per_worker: str = Field(
        "1g",
        pattern=r"^[0-9]+[mMgG]$",
        description="Memory each worker offers (e.g. 512m, 1g); must cover the application's "
        "spark.executor.memory (1g unless set), or its executors never start.",
    )
    start_timeout_s: float = Field(
        90.0,
        gt=0,
        description="How long the master may take to answer, and then the workers to register; JVMs start "
        "much slower than the broker, more so on a busy machine.",
    )


class StackConfig(_Model):
    """The local services `reelhouse stack up` starts. Unused on a real cluster."""

    enabled: bool = Field(True, description="False on a real deployment: nothing local is started.")
    state_dir: Path = Field(
        Path(".reelhouse/stack"),
        description="pids/, logs/, the broker's generated conf/ and cluster id, and data/ (the broker's log.dirs).",
    )
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    spark_cluster: SparkClusterConfig = Field(
        default_factory=SparkClusterConfig, description="Only started by `reelhouse stack up --spark-cluster`."
    )
    start_timeout_s: float = Field(
        60.0,
        gt=0,
        description="How long the broker may take to answer a metadata request; a JVM takes a few seconds, "
        "more on a busy machine.",
    )
    stop_timeout_s: float = Field(
        30.0,
        gt=0,
        description="How long the broker may take to shut down after SIGTERM (it flushes and closes its logs, "
        "so the next start skips log recovery) before it is killed.",
    )


class SparkConfig(_Model):
    master: str = Field("local[2]", description="Spark master URL (local[N], spark://host:port, yarn, k8s://...).")
    app_name: str = Field("reelhouse", description="Application name prefix shown in the Spark UI.")
    shuffle_partitions: int = Field(4, ge=1, description="spark.sql.shuffle.partitions.")
    ui_enabled: bool = Field(False, description="Start the Spark web UI.")
    jars: Literal["resolved", "packages"] = Field(
        "resolved",
        description="Where Spark's Kafka source and delta-spark come from. `resolved`: the jars `make install` "
        "resolved with Maven into jvm/target/spark (no network at run time); `packages`: Spark resolves the same "
        "coordinates (spark.jars.packages / --packages) from a Maven repository the driver reaches.",
    )
    conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark settings.")


class LakeConfig(_Model):
    root: str = Field(".reelhouse/lake", description="Directory or s3:// URI under which every Delta table lives.")
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="Object-store options of the delta-rs readers (feed service, rankers); Spark takes its own "
        "from the Hadoop settings (spark.conf). Credentials come from the environment.",
    )
    target_file_rows: int = Field(
        1_000_000,
        ge=1,
        description="Most rows one parquet file of a write holds (Spark's maxRecordsPerFile); a task with more "
        "rows starts a new file.",
    )


class MaintenanceConfig(_Model):
    """Compaction, VACUUM and checkpoints of the lake's tables (see lib/reelhouse/lake/maintenance.py)."""

    tables: list[str] | None = Field(
        None, description="Tables to maintain, by name under the lake root (None: every Delta table there)."
    )
    target_file_size_mb: int = Field(
        128, ge=1, description="Size compaction (Delta OPTIMIZE) aims for; smaller files are candidates to rewrite."
    )
    min_files_to_compact: int = Field(
        10,
        ge=2,
        description="Compact a partition only once it holds this many files below the target size, so a "
        "partition the stream still fills is not rewritten on every run.",
    )
    max_concurrent_tasks: int | None = Field(
        None,
        ge=1,
        description="Groups of files OPTIMIZE rewrites at once (spark.databricks.delta.optimize.maxThreads; None: "
        "Delta's default); caps the compaction's share of the cluster.",
    )
    vacuum_retention_hours: int = Field(
        168,
        ge=0,
        description="VACUUM deletes files removed from a table longer ago than this; time travel and readers of "
        "older snapshots need their files, so keep it above the longest job and the time travel you need.",
    )
    enforce_retention: bool = Field(
        True,
        description="Refuse a retention shorter than the table's delta.deletedFileRetentionDuration (7 days "
        "unless set); false lets tests and emergencies vacuum sooner.",
    )
    checkpoint: bool = Field(
        True, description="Write a checkpoint of each table's log, then delete log files past the log retention."
    )
    conflict_retries: int = Field(
        3, ge=0, description="Retries of a step whose commit conflicted with a concurrent writer, per table."
    )
    retry_backoff_s: float = Field(1.0, ge=0, description="Wait before the first retry; doubles with each retry.")


class KafkaStreamConfig(_Model):
    """What every Spark stream reading the events topic with Spark's `kafka` source shares."""

    query_name: str = Field(description="Stream name; also the Delta app-transaction id.")
    checkpoint_dir: str = Field(description="Spark checkpoint location (offsets, commits, state).")
    trigger: Literal["available_now", "processing_time"] = Field(
        "processing_time", description="`available_now` drains the topic and stops; `processing_time` runs forever."
    )
    processing_time: str = Field("5 seconds", description="Micro-batch interval of the `processing_time` trigger.")
    starting_offsets: str = Field(
        "earliest",
        description="Where a new checkpoint starts: `earliest`, `latest`, or per-partition JSON such as "
        '{"topic": {"0": 42}} (Spark\'s `startingOffsets`); a checkpoint keeps its own afterwards.',
    )
    max_offsets_per_trigger: int | None = Field(
        2_000_000, ge=1, description="Upper bound on records per micro-batch (`maxOffsetsPerTrigger`; None: no bound)."
    )
    min_partitions: int = Field(
        2,
        ge=1,
        description="Split offset ranges so a micro-batch has at least this many Spark tasks (`minPartitions`).",
    )
    fail_on_data_loss: bool = Field(
        True,
        description="Stop with an error when offsets the stream has not read were deleted (retention) or a "
        "partition went away (`failOnDataLoss`). False skips them silently: only for a stream that may lose data.",
    )


class IngestConfig(KafkaStreamConfig):
    query_name: str = Field("ingest_events", description="Stream name; also the Delta app-transaction id.")
    checkpoint_dir: str = Field(".reelhouse/checkpoints/ingest_events", description="Spark checkpoint location.")
    max_payload_bytes: int = Field(16_384, ge=256, description="Larger messages are quarantined as oversized.")
    max_clock_skew_s: int = Field(
        86_400,
        ge=0,
        description="Events stamped further than this in the future of their Kafka timestamp are rejected.",
    )
    max_event_age_days: int = Field(
        365, ge=1, description="Events older than this relative to their Kafka timestamp are rejected."
    )


class SpeedConfig(KafkaStreamConfig):
    """The speed layer: Kafka -> hourly feature tiles (Spark state) -> online store + real-time Delta."""

    query_name: str = Field("stream_features", description="Stream name; also the Delta app-transaction id.")
    checkpoint_dir: str = Field(".reelhouse/checkpoints/stream_features", description="Spark checkpoint location.")
    processing_time: str = Field(
        "0 seconds", description="Micro-batch interval; `0 seconds` starts the next batch as soon as one ends."
    )
    max_offsets_per_trigger: int | None = Field(
        500_000, ge=1, description="Upper bound on records per micro-batch, so a backlog drains in steady steps."
    )
    watermark_s: int = Field(
        600,
        ge=0,
        description="Events whose time is older than the latest event time seen minus this are dropped by the "
        "speed layer (the batch layer still counts them); also how long duplicates are remembered.",
    )
    dimensions_refresh_s: float = Field(
        30.0, gt=0, description="How often executors check dim_videos for a new version (topics, upload times)."
    )
    write_delta: bool = Field(
        True, description="Append every micro-batch's feature rows to the real-time Delta tables."
    )
    state_partitions: int = Field(
        2, ge=1, description="Shuffle partitions of the stateful operators; fixed when the checkpoint is created."
    )
    state_store: Literal["rocksdb", "hdfs"] = Field(
        "rocksdb",
        description="`rocksdb` keeps state off the JVM heap (duplicates within the watermark are millions of ids "
        "at 10k events/s); `hdfs` is Spark's in-memory default. Fixed when the checkpoint is created.",
    )


class SimulatorConfig(_Model):
    seed: int = Field(7, description="Seed of every random choice; the same seed gives the same catalogue and events.")
    users: int = Field(20_000, ge=1, description="Users in the catalogue.")
    videos: int = Field(50_000, ge=1, description="Videos in the catalogue at the start.")
    topics: int = Field(24, ge=2, description="Latent topics users and videos mix.")
    creators: int = Field(2_000, ge=1, description="Creators uploading videos.")
    zipf_exponent: float = Field(1.1, gt=0, description="Popularity skew of the catalogue.")
    uploads_per_hour: float = Field(600.0, ge=0, description="New videos per simulated hour.")
    rate: float = Field(50_000.0, gt=0, description="Target events per second (0 < rate); `max` speed with --rate 0.")
    duration_s: float = Field(10.0, gt=0, description="Wall-clock duration of a simulation run.")
    time_scale: float = Field(60.0, gt=0, description="Simulated seconds per wall-clock second.")
    malformed_share: float = Field(0.01, ge=0, le=1, description="Share of deliberately malformed messages.")
    catalogue_dir: str = Field(
        ".reelhouse/catalogue", description="Where users.parquet and videos.parquet are written."
    )
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description="Producer processes, each simulating its share of the users; one reaches ~500k events/s on 2 cores.",
    )
    max_lag_s: float = Field(
        3 * 3600.0,
        gt=0,
        description="How far behind wall-clock time the simulated clock may start; it never runs ahead of it.",
    )
    page_size: int = Field(8, ge=1, le=100, description="Videos per feed page (one request_id each).")
    organic_share: float = Field(
        0.08, ge=0, le=1, description='Share of plays and skips outside the feed (search, profiles; request_id "").'
    )


class SilverConfig(_Model):
    """How bronze becomes silver (see lib/reelhouse/silver/transforms.py for the policies)."""

    allowed_lateness_s: int = Field(
        86_400, ge=0, description="Events received later than interval end + this stay in bronze only."
    )
    session_gap_s: int = Field(1_800, gt=0, description="Inactivity that ends a user's session.")


class OnlineStoreConfig(_Model):
    """Where the feed reads the latest feature values from."""

    type: Literal["sqlite", "redis"] = Field(
        "sqlite",
        description="`sqlite`: embedded, WAL mode, no server (one machine); "
        "`redis`: a Redis server shared by every writer and feed replica.",
    )
    path: Path = Field(Path(".reelhouse/online/features.db"), description="SQLite database file (`sqlite` only).")
    redis_url: str = Field(
        "redis://127.0.0.1:16379/0",
        description="redis:// or rediss:// (TLS) URL of the server and database (`redis` only); "
        "put a password in it through REELHOUSE__ONLINE_STORE__REDIS_URL, never in a committed file.",
    )
    key_prefix: str = Field(
        "reelhouse:",
        description="Prefix of every Redis key (`redis` only), so environments can share one server.",
    )
    redis_socket_timeout_s: float = Field(
        0.5,
        gt=0,
        description="Seconds a Redis call waits for each reply before failing (`redis` only): a hung server then "
        "fails the feed's store threads, the health probe and shutdown instead of blocking them. Well above a "
        "healthy round trip (well under a millisecond on a LAN); raise it for a server across a slow link.",
    )
    redis_connect_timeout_s: float = Field(
        0.5,
        gt=0,
        description="Seconds opening a connection to Redis may take before failing (`redis` only).",
    )
    purge_interval_s: float = Field(
        600.0,
        gt=0,
        description="Seconds between the feed service's purges of expired rows. SQLite keeps an expired row "
        "(reads skip it) until purged; Redis deletes expired rows itself, and the purge drops their entries "
        "from its change log.",
    )
    ttl_s: float | None = Field(
        8 * 86_400.0, gt=0, description="Seconds a row stays readable after its feature time (None: forever)."
    )
    materialize_chunk_rows: int = Field(
        5_000,
        ge=1,
        description="Rows per write when gold features are loaded into the store: each Spark task holds one "
        "chunk in memory at a time, and every chunk is one transaction (SQLite) or a few pipelines (Redis).",
    )


class MlflowConfig(_Model):
    """Where runs, models and the registry live. The local default needs no server."""

    tracking_uri: str = Field(
        "sqlite:///.reelhouse/mlflow/mlflow.db",
        description="MLflow tracking URI: `sqlite:///PATH` (relative paths resolve against the project) or the "
        "http(s):// address of an MLflow server. The registry uses the same store.",
    )
    artifact_root: str = Field(
        ".reelhouse/mlflow/artifacts",
        description="Where new experiments store artifacts (a local path or an s3:// URI); ignored by a server "
        "that serves artifacts itself.",
    )
    experiment: str = Field("reelhouse", description="Experiment every reelhouse training and evaluation run goes to.")


class TrainingConfig(_Model):
    """Training sets from impressions, and the rankers trained on them."""

    table: str = Field("training_set", description="Delta table of labelled examples (replaced per build).")
    attribution_window_s: int = Field(
        1_800,
        gt=0,
        description="Outcomes (play, like, share, comment, follow, skip) count for an impression "
        "of the same request, user and video when they happen within this many seconds after it.",
    )
    positive_watch_ratio: float = Field(
        0.5, gt=0, le=1, description="Primary label: watch ratio at least this, or a like or a share."
    )
    valid_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="Latest-but-one share of impressions (by time) for validation."
    )
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="Latest share of impressions (by time) for test.")
    max_fit_rows: int = Field(
        2_000_000, ge=1_000, description="Training rows the rankers fit on at most (a seeded sample beyond that)."
    )
    registered_model: str = Field("reelhouse-ranker", description="Model Registry name of the rankers.")
    promotion_metric: Literal["test_auc", "test_ndcg_at_10"] = Field(
        "test_auc", description="Score a candidate must improve on the champion's, on the same test set."
    )
    promotion_margin: float = Field(
        0.001, ge=0, description="How much higher the candidate's score must be to take the `champion` alias."
    )
    off_policy_guard: bool = Field(
        False,
        description="Also hold back a candidate whose off-policy estimate of watch ratio on the logged traffic of "
        "the test split (docs/off_policy.md) lies, CI and all, below what the serving policy achieved there.",
    )
    lgbm_params: dict[str, float | int | str] = Field(
        default_factory=lambda: {
            "n_estimators": 400,
            "learning_rate": 0.05,
            "num_leaves": 63,
            "min_child_samples": 50,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
        },
        description="LightGBM LGBMClassifier parameters (early stopping on the validation set).",
    )
    lr_params: dict[str, float | int | str] = Field(
        default_factory=lambda: {"C": 1.0, "max_iter": 300},
        description="scikit-learn LogisticRegression parameters.",
    )
    seed: int = Field(7, description="Seed of sampling and model fitting.")


class RecallConfig(_Model):
    """Candidate generation: sources, their sizes and the blend."""

    lookback_days: int = Field(28, ge=1, description="History the recall models are trained on.")
    popularity_half_life_h: float = Field(24.0, gt=0, description="Half-life of the popularity source's decay.")
    als_rank: int = Field(32, ge=2, description="ALS latent factors.")
    als_reg: float = Field(0.05, gt=0, description="ALS regularisation.")
    als_alpha: float = Field(10.0, gt=0, description="ALS implicit-feedback confidence scale.")
    als_max_iter: int = Field(10, ge=1, description="ALS iterations.")
    covisit_neighbours: int = Field(50, ge=1, description="Neighbours kept per item (co-visitation and embeddings).")
    covisit_recent_items: int = Field(
        20, ge=1, description="A user's most recent engaged items that seed item-to-item recall."
    )
    covisit_shrink: float = Field(
        10.0,
        ge=0,
        description="Co-visitation's shrinkage: cosine's denominator plus this, so pairs seen by few users count less.",
    )
    ease_reg: float = Field(250.0, gt=0, description="EASE's ridge λ (larger: smoother item-item weights).")
    ease_max_items: int = Field(
        10_000,
        ge=1,
        description="EASE models at most this many items (the most engaged); its dense Gram matrix is 8 n² bytes.",
    )
    tune: bool = Field(
        True,
        description="Choose each source's hyper-parameters on a validation holdout of its training data (grids in "
        "`tuning_grid`) before the final fit; false: use the values above as they are.",
    )
    tuning_grid: dict[str, dict[str, list[int | float]]] = Field(
        default_factory=lambda: {
            "popularity": {"popularity_half_life_h": [6.0, 24.0, 168.0, 720.0, 8760.0, float("inf")]},
            "ease": {"ease_reg": [50.0, 150.0, 500.0, 1500.0]},
            "als": {"als_rank": [16, 64], "als_reg": [0.05, 1.0]},
            "covisit": {"covisit_shrink": [0.0, 10.0, 50.0], "covisit_recent_items": [20, 200]},
        },
        description="Per source, recall settings and the values tried on validation (every combination); a source "
        "not listed keeps its settings.",
    )
    tuning_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Share of the training pairs held out to tune on (the latest by time, or per user at random).",
    )
    tuning_users: int = Field(
        2_000, ge=1, description="Validation users the tuner scores each setting on (a seeded sample)."
    )
    embeddings_path: str | None = Field(
        None,
        description="Parquet file of dense item embeddings (vectors from upstream models); None: no embedding source.",
    )
    embeddings_item_col: str = Field("video_id", description="Item column of the embeddings file.")
    embeddings_vector_col: str = Field(
        "embedding", description="Vector column (list of floats) of the embeddings file."
    )
    quotas: dict[str, int] = Field(
        default_factory=lambda: {
            "ease": 60,
            "als": 60,
            "covisit": 50,
            "topic": 30,
            "embedding": 30,
            "content": 30,
            "popularity": 20,
        },
        description="Candidates each source contributes to a user's blend, at most (sources without a quota are off).",
    )
    exploration_slots: int = Field(10, ge=0, description="Blend slots kept for new videos (exploration).")
    new_video_hours: float = Field(
        48.0, gt=0, description="Videos uploaded this recently count as new for exploration."
    )
    candidates_table: str = Field("user_candidates", description="Delta table of blended candidates per user.")
    neighbours_table: str = Field("item_neighbours", description="Delta table of neighbour lists per item.")
    seed: int = Field(7, description="Seed of ALS and of exploration picks.")


class OrchestrationConfig(_Model):
    """What the Airflow DAGs read besides the jobs' own sections (``airflow/dags``)."""

    streams: list[Literal["ingest_events", "stream_features"]] = Field(
        default_factory=lambda: ["ingest_events", "stream_features"],
        description="Long-running streams `reelhouse_streaming` supervises (starts when dead, checks lag).",
    )
    max_stream_lag: int | None = Field(
        None,
        ge=0,
        description="Kafka records a stream may be behind (end minus committed offsets) before its lag check "
        "fails; null: one micro-batch's cap, the stream's max_offsets_per_trigger.",
    )
    training_days: int = Field(
        1, ge=1, description="UTC days of impressions, ending with the run's day, the daily training set covers."
    )


class StageBudgets(_Model):
    """Per-stage time budgets of a feed request; a stage over budget degrades, it never blocks."""

    store_ms: float = Field(
        20.0,
        gt=0,
        description="The request's online-store read: the user's seen / recent-engagement state, feature row "
        "and user x topic rows, in one round trip.",
    )
    rank_ms: float = Field(25.0, gt=0, description="Scoring the candidates with the ranker.")


class ServingConfig(_Model):
    """The For-You feed service (`reelhouse serve`)."""

    host: str = Field("127.0.0.1", description="Bind address; loopback unless deliberately exposed.")
    port: int = Field(8000, ge=1, le=65_535, description="HTTP port.")
    token: str | None = Field(
        None,
        description="Bearer token of GET /v1/feed and POST /v1/events, held by the app's gateway that calls the "
        "service; set it in a git-ignored file or REELHOUSE__SERVING__TOKEN. The service refuses to start without "
        "one.",
    )
    ranker_alias: str = Field(
        "champion", description="Registry alias of `training.registered_model` the default feed ranks with."
    )

    @field_validator("token", mode="before")
    @classmethod
    def _token_as_text(cls, value: object) -> object:
        # An all-digit token from the environment arrives as a JSON number; a token is text.
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    alias_poll_s: float = Field(10.0, gt=0, description="How often the service checks whether a ranker alias moved.")
    tables_poll_s: float = Field(
        60.0, gt=0, description="How often the service checks for new candidate / neighbour tables."
    )
    video_features_refresh_s: float = Field(
        1.0,
        gt=0,
        description="How often each service process takes the video feature rows written since its last look "
        "into its in-memory copy (at most this much older than the online store).",
    )
    default_k: int = Field(10, ge=1, le=100, description="Videos per feed page when the request gives no `k`.")
    max_k: int = Field(50, ge=1, le=500, description="Largest `k` a request may ask for.")
    candidates: int = Field(300, ge=1, le=5_000, description="Candidates recalled and ranked per request.")
    max_per_topic: int = Field(3, ge=1, description="Diversity cap: videos of one topic in a page.")
    max_per_creator: int = Field(2, ge=1, description="Diversity cap: videos of one creator in a page.")
    exploration_slots: int = Field(1, ge=0, description="Page slots kept for new videos (exploration).")
    explore_epsilon: float = Field(
        0.05,
        ge=0,
        le=0.5,
        description="Per page slot, the probability that the slot shows a uniformly drawn remaining candidate "
        "instead of the ranker's next choice. It makes every candidate's chance of being shown positive, so the "
        "`propensity` logged on impressions supports off-policy evaluation; 0 makes the page deterministic "
        "(propensity 1). At most 0.5, so a logged propensity tells a greedy slot from an explored one.",
    )
    clock_file: str | None = Field(
        None,
        description="Simulations only (the multi-day closed loop sets it): the service reads the time from this "
        "clock file (reelhouse/clock.py) instead of the wall clock. Never set it for real traffic.",
    )
    seen_ttl_h: float = Field(
        72.0, gt=0, description="How long shown or watched videos stay excluded from a user's feed."
    )
    seen_max: int = Field(2_000, ge=1, description="Most recent shown or watched videos remembered per user.")
    budgets: StageBudgets = Field(default_factory=StageBudgets)
    max_in_flight: int = Field(64, ge=1, description="Feed requests in progress at once; beyond, 503 with Retry-After.")
    retry_after_s: int = Field(1, ge=1, description="Retry-After of an overload 503.")
    max_body_bytes: int = Field(1_048_576, ge=1_024, description="Largest accepted request body.")
    max_events_per_request: int = Field(1_000, ge=1, description="Most events one POST /v1/events may carry.")
    delivery_timeout_s: float = Field(
        5.0,
        gt=0,
        le=300,
        description="The service producer's message.timeout.ms: every impression and event gets a definitive "
        "delivery report within this time. POST /v1/events waits for its batch's reports (plus a small margin) "
        "before answering, and so does a graceful shutdown for requests in progress.",
    )
    shutdown_flush_s: float = Field(
        10.0,
        ge=0,
        description="At shutdown, how long queued impressions and events may take to be delivered; what is left "
        "then is purged, logged per kind and counted as failed. Above delivery_timeout_s, every message gets its "
        "own report first.",
    )


class VariantConfig(_Model):
    """One arm of an experiment: how its feed is recalled and ranked."""

    name: str = Field(
        pattern=r"^[a-z0-9_\-]{1,24}$", description="Variant name, stamped on impressions as `<experiment>:<name>`."
    )
    share: float = Field(
        gt=0, le=1, description="Share of the experiment's users; the shares of an experiment sum to 1."
    )
    ranker: str = Field(
        "alias:champion",
        pattern=r"^(alias:[A-Za-z0-9_\-]+|version:[0-9]+|popularity|random)$",
        description="`alias:<name>` or `version:<n>` of the registered ranker, `popularity` (trending score) or "
        "`random` (a random order).",
    )
    recall_sources: list[str] | None = Field(
        None, description="Recall sources this variant uses (null: every source in the candidates table)."
    )


class ExperimentConfig(_Model):
    """An A/B test: users are bucketed by a salted hash of their id, so a user stays in one variant."""

    name: str = Field(pattern=r"^[a-z0-9_\-]{1,32}$", description="Experiment name.")
    salt: str | None = Field(None, description="Bucketing salt (default: the name); change it to reshuffle users.")
    start: str | None = Field(None, description="ISO-8601 UTC start; null: already running.")
    end: str | None = Field(None, description="ISO-8601 UTC end; null: open-ended.")
    traffic: float = Field(
        1.0, gt=0, le=1, description="Share of all users in the experiment; the others get the default feed."
    )
    variants: list[VariantConfig] = Field(min_length=2)

    @field_validator("variants")
    @classmethod
    def _shares_sum_to_one(cls, variants: list[VariantConfig]) -> list[VariantConfig]:
        total = sum(v.share for v in variants)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"variant shares sum to {total}, not 1")
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names repeat: {names}")
        return variants


class ReelhouseConfig(_Model):
    env: str = Field("local", description="Name of the environment, shown in logs and summaries.")
    data_dir: Path = Field(Path(".reelhouse"), description="Root of everything the local defaults write.")
    kafka: KafkaConfig
    stack: StackConfig = Field(default_factory=StackConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    lake: LakeConfig = Field(default_factory=LakeConfig)
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    speed: SpeedConfig = Field(default_factory=SpeedConfig)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    online_store: OnlineStoreConfig = Field(default_factory=OnlineStoreConfig)
    silver: SilverConfig = Field(default_factory=SilverConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    recall: RecallConfig = Field(default_factory=RecallConfig)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    experiments: list[ExperimentConfig] = Field(
        default_factory=list, description="A/B tests of the feed; a user is in at most one running experiment."
    )
