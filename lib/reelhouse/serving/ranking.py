"""Rankers at request time: registered models resolved through MLflow aliases, and two baselines.

A ranker reference is what config names (``serving.ranker_alias``, a variant's ``ranker``):
``alias:<name>`` or ``version:<n>`` of ``training.registered_model``, ``popularity`` (the
videos' live ``video_trending_score``) or ``random`` (an order seeded by the request id, so a
logged request can be replayed).

:class:`RankerRegistry` resolves every model reference in use through ``MlflowClient`` and loads
each version once with ``mlflow.sklearn.load_model`` (the scikit-learn pipeline itself, not the
pyfunc wrapper, which would add a pandas round trip per call). :meth:`RankerRegistry.refresh`
runs at start and then on a background thread every ``serving.alias_poll_s``: when an alias has
moved, the new version is loaded first and then swapped in with one dict assignment, so requests
in flight finish with the model they started with and none waits for a load. A version that
cannot be loaded leaves the previous model serving (the reference is reported stale); with no
previous model the feed falls back to trending order.

LightGBM fast path. The registered LightGBM ranker is a Pipeline of a ColumnTransformer
(numerics passed through, categoricals imputed and ordinal-encoded) and an LGBMClassifier.
Through the pipeline, 300 candidates cost a pandas frame, a ColumnTransformer pass and a
DataFrame-to-numpy conversion per request. :class:`LightGBMFastPath` reads, at load time, the
booster's feature order and the fitted OrdinalEncoder's categories, then scores a request with
one float64 matrix (numerics copied, categories mapped to the encoder's codes, ``-1`` for unseen)
and ``Booster.predict``. It is used only after it reproduced ``pipeline.predict_proba`` on a
sample of synthetic rows (missing values, unseen and missing categories included); any other
pipeline, or a mismatch, is scored through the pipeline.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from reelhouse.config import MlflowConfig
from reelhouse.features.registry import ENTITIES
from reelhouse.serving.features import Categorical, ModelInputs
from reelhouse.training.columns import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS

log = logging.getLogger(__name__)

POPULARITY = "popularity"
RANDOM = "random"
TRENDING = "trending"  # the fallback order; not configurable, named in responses
TRENDING_FEATURE = "video_trending_score"
_MODEL_REF = re.compile(r"^(alias):([A-Za-z0-9_\-]+)$|^(version):([0-9]+)$")
VERIFY_ROWS = 256
VERIFY_RTOL = 1e-9


class Ranker(Protocol):
    label: str  # what responses name (``reelhouse-ranker/3``, ``popularity``, ``random``)
    entities: tuple[str, ...]  # whose online features it reads

    def score(self, inputs: ModelInputs | None, n: int, seed: int) -> np.ndarray: ...


class PopularityRanker:
    """Scores by the live trending score of each video (missing: 0)."""

    label = POPULARITY
    entities = ("video",)

    def score(self, inputs: ModelInputs | None, n: int, seed: int) -> np.ndarray:
        if inputs is None:
            raise ValueError("the popularity ranker needs the videos' online features")
        return np.nan_to_num(inputs.column(TRENDING_FEATURE), nan=0.0)


class RandomRanker:
    """A uniformly random order, seeded by the request (``seed``)."""

    label = RANDOM
    entities: tuple[str, ...] = ()

    def score(self, inputs: ModelInputs | None, n: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).random(n)


def request_seed(request_id: str) -> int:
    return zlib.crc32(request_id.encode())


# ----------------------------------------------------------------------------- fast path
# Control flow of the fast path (the pipeline scores instead), hence not in errors.py.
class UnsupportedModel(ValueError):
    """The pipeline is not the shape the fast path knows; it is scored through the pipeline."""


@dataclass(frozen=True)
class _CategoricalCodes:
    position: int  # column of the booster's matrix
    name: str
    codes: dict[str, float]
    missing: float  # code of a missing value (the imputed category's, or unknown)
    unknown: float


class LightGBMFastPath:
    """``pipeline.predict_proba(frame)[:, 1]`` of a LightGBM ranker pipeline, from a numpy matrix."""

    def __init__(
        self, booster: Any, numeric_to: np.ndarray, numeric_from: np.ndarray, categorical: list[_CategoricalCodes]
    ):
        self.booster = booster
        self.n_features = len(numeric_to) + len(categorical)
        self._numeric_to = numeric_to
        self._numeric_from = numeric_from
        self._categorical = categorical

    @classmethod
    def from_pipeline(cls, pipeline: Any) -> LightGBMFastPath:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OrdinalEncoder

        steps = dict(getattr(pipeline, "named_steps", {}))
        preprocess, model = steps.get("preprocess"), steps.get("model")
        if not isinstance(preprocess, ColumnTransformer) or not hasattr(model, "booster_"):
            raise UnsupportedModel("not a ColumnTransformer + LightGBM pipeline")
        booster = model.booster_
        if model.n_classes_ != 2:
            raise UnsupportedModel(f"{model.n_classes_} classes; the fast path scores binary rankers")
        names = list(booster.feature_name())
        if names != [str(n) for n in preprocess.get_feature_names_out()]:
            raise UnsupportedModel("the booster's features are not the preprocessor's output columns")
        position = {name: i for i, name in enumerate(names)}
        numeric_to, numeric_from, categorical = [], [], []
        numeric_index = {name: i for i, name in enumerate(NUMERIC_COLUMNS)}
        # ``transformers`` holds what was configured ("passthrough" stays a string there; the fitted
        # ``transformers_`` replace it by a FunctionTransformer), ``named_transformers_`` the fitted steps.
        if preprocess.remainder != "drop" and any(
            name == "remainder" and len(cols) for name, _, cols in preprocess.transformers_
        ):
            raise UnsupportedModel("the preprocessor passes remainder columns")
        for name, configured, columns in preprocess.transformers:
            transformer = preprocess.named_transformers_[name]
            if isinstance(columns, str):
                columns = [columns]
            if isinstance(configured, str) and configured == "passthrough":
                for column in columns:
                    if column not in numeric_index:
                        raise UnsupportedModel(f"passthrough column {column!r} is not a numeric model input")
                    numeric_to.append(position[column])
                    numeric_from.append(numeric_index[column])
                continue
            if not isinstance(transformer, Pipeline) or not isinstance(transformer.steps[-1][1], OrdinalEncoder):
                raise UnsupportedModel(f"transformer {name!r} is neither passthrough nor imputers + OrdinalEncoder")
            fill: Any = None
            for _, step in transformer.steps[:-1]:
                if not isinstance(step, SimpleImputer) or step.strategy != "constant":
                    raise UnsupportedModel(f"transformer {name!r} has a step other than constant imputation")
                fill = step.fill_value
            encoder = transformer.steps[-1][1]
            if getattr(encoder, "_infrequent_enabled", False) or encoder.handle_unknown != "use_encoded_value":
                raise UnsupportedModel("the OrdinalEncoder groups infrequent categories or errors on unknown ones")
            unknown = float(encoder.unknown_value)
            for column, categories in zip(columns, encoder.categories_, strict=True):
                if column not in CATEGORICAL_COLUMNS:
                    raise UnsupportedModel(f"encoded column {column!r} is not a categorical model input")
                codes = {str(c): float(i) for i, c in enumerate(categories) if isinstance(c, str)}
                missing = codes.get(fill, unknown) if fill is not None else float(encoder.encoded_missing_value)
                categorical.append(_CategoricalCodes(position[column], column, codes, missing, unknown))
        if len(numeric_to) + len(categorical) != len(names):
            raise UnsupportedModel("the preprocessor's columns do not cover the booster's features")
        return cls(booster, np.array(numeric_to), np.array(numeric_from), categorical)

    def matrix(self, inputs: ModelInputs) -> np.ndarray:
        x = np.empty((len(inputs), self.n_features), dtype=np.float64)
        x[:, self._numeric_to] = inputs.numeric[:, self._numeric_from]
        for column in self._categorical:
            values: Categorical = inputs.categorical[column.name]
            level_codes = np.array(
                [column.missing if v is None else column.codes.get(v, column.unknown) for v in values.levels]
            )
            x[:, column.position] = level_codes[values.codes]
        return x

    def predict(self, inputs: ModelInputs) -> np.ndarray:
        # One thread: OpenMP workers for a few hundred rows cost more than they save, and the
        # service already runs requests side by side.
        return self.booster.predict(self.matrix(inputs), num_threads=1)


def synthetic_inputs(fast: LightGBMFastPath, rows: int = VERIFY_ROWS, seed: int = 7) -> ModelInputs:
    """Rows that exercise what a request can bring: spread numerics with gaps, and per categorical
    column its fitted categories, an unseen one and a missing one."""
    rng = np.random.default_rng(seed)
    numeric = rng.gamma(1.0, 1.0, (rows, len(NUMERIC_COLUMNS))) * 10.0 ** rng.uniform(
        -3, 4, (rows, len(NUMERIC_COLUMNS))
    )
    numeric[rng.random(numeric.shape) < 0.2] = np.nan
    categorical = {}
    known = {c.name: sorted(c.codes) for c in fast._categorical}
    for name in CATEGORICAL_COLUMNS:
        levels = (*known.get(name, []), "__never_seen_in_training__", None)
        categorical[name] = Categorical(tuple(levels), rng.integers(0, len(levels), rows).astype(np.int32))
    return ModelInputs(numeric, categorical)


def verified_fast_path(pipeline: Any) -> tuple[LightGBMFastPath | None, str]:
    """The fast path of ``pipeline`` if it reproduces the pipeline's probabilities, and why not otherwise."""
    try:
        fast = LightGBMFastPath.from_pipeline(pipeline)
    except UnsupportedModel as e:
        return None, str(e)
    sample = synthetic_inputs(fast)
    expected = pipeline.predict_proba(sample.frame())[:, 1]
    got = fast.predict(sample)
    if not np.allclose(got, expected, rtol=VERIFY_RTOL, atol=1e-12):
        worst = float(np.max(np.abs(got - expected)))
        return None, f"fast path differs from predict_proba by up to {worst:.3g} on the verification sample"
    return fast, "verified"


class ModelRanker:
    """A registered version: its pipeline, and the fast path when it has a verified one."""

    entities = ENTITIES

    def __init__(self, registered_model: str, version: int, pipeline: Any, fast: LightGBMFastPath | None, kind: str):
        self.registered_model = registered_model
        self.version = version
        self.pipeline = pipeline
        self.fast = fast
        self.kind = kind
        self.label = f"{registered_model}/{version}"

    def score(self, inputs: ModelInputs | None, n: int, seed: int) -> np.ndarray:
        if inputs is None:
            raise ValueError("a model ranker needs the online features")
        if self.fast is not None:
            return self.fast.predict(inputs)
        return self.pipeline.predict_proba(inputs.frame())[:, 1]


# ----------------------------------------------------------------------------- the registry
def parse_ref(ref: str) -> tuple[str, str]:
    """``alias:champion`` -> ("alias", "champion"); ``version:3`` -> ("version", "3"); baselines as they are."""
    if ref in (POPULARITY, RANDOM):
        return ref, ""
    match = _MODEL_REF.match(ref)
    if match is None:
        raise ValueError(f"ranker reference {ref!r}: expected alias:<name>, version:<n>, popularity or random")
    return (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))


@dataclass(frozen=True)
class RefState:
    """What one model reference serves now."""

    ranker: ModelRanker | None
    version: int | None  # the version the reference resolves to (None: unresolved)
    error: str | None = None  # why ``ranker`` is not that version, or is missing

    @property
    def stale(self) -> bool:
        return self.ranker is not None and self.version is not None and self.ranker.version != self.version


class RankerRegistry:
    """Model rankers per reference, kept current with the registry (module docstring)."""

    def __init__(self, mlflow: MlflowConfig, registered_model: str, refs: Iterable[str], on_event: Any = None) -> None:
        self.mlflow = mlflow
        self.registered_model = registered_model
        self.refs = tuple(dict.fromkeys(r for r in refs if parse_ref(r)[0] in ("alias", "version")))
        self._baselines: dict[str, Ranker] = {POPULARITY: PopularityRanker(), RANDOM: RandomRanker()}
        self._state: dict[str, RefState] = {ref: RefState(None, None, "not loaded yet") for ref in self.refs}
        self._models: dict[int, ModelRanker] = {}
        self._errors: dict[int, str] = {}
        self._lock = threading.Lock()  # one refresh at a time
        self._on_event = on_event  # callback(kind: "loaded" | "failed", ref, version)

    def get(self, ref: str) -> tuple[Ranker | None, RefState | None]:
        """The ranker ``ref`` serves with now (None when no model is loaded) and its state."""
        baseline = self._baselines.get(ref)
        if baseline is not None:
            return baseline, None
        state = self._state.get(ref)
        if state is None:
            return None, None
        return state.ranker, state

    def states(self) -> dict[str, RefState]:
        return dict(self._state)

    def _client(self) -> Any:
        from mlflow import MlflowClient

        uri = self.mlflow.tracking_uri
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def _resolve(self, client: Any, ref: str) -> int:
        kind, value = parse_ref(ref)
        if kind == "version":
            return int(value)
        return int(client.get_model_version_by_alias(self.registered_model, value).version)

    def _load(self, client: Any, version: int) -> ModelRanker:
        import mlflow.artifacts
        import mlflow.sklearn

        uri = self.mlflow.tracking_uri
        started = time.perf_counter()
        # The version's artifact location from this registry's client (a ``models:/`` URI would be
        # resolved through MLflow's process-wide registry URI, which this service never sets).
        location = client.get_model_version_download_uri(self.registered_model, str(version))
        with tempfile.TemporaryDirectory(prefix="reelhouse-ranker-") as tmp:
            local = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp, tracking_uri=uri)
            pipeline = mlflow.sklearn.load_model(local)
        if not hasattr(pipeline, "predict_proba"):
            raise TypeError(f"{type(pipeline).__name__} has no predict_proba")
        fast, why = verified_fast_path(pipeline)
        kind = client.get_model_version(self.registered_model, str(version)).tags.get("model_kind", "unknown")
        log.info(
            "ranker %s/%d (%s) loaded in %.2f s; fast path: %s",
            self.registered_model,
            version,
            kind,
            time.perf_counter() - started,
            why if fast is None else "verified",
        )
        return ModelRanker(self.registered_model, version, pipeline, fast, kind)

    def refresh(self) -> bool:
        """Resolve every reference, load what moved, swap; True if anything changed."""
        with self._lock:
            try:
                client = self._client()
            except Exception as e:  # noqa: BLE001 - an unreachable registry keeps what is loaded
                log.warning("model registry unreachable (%s); keeping the loaded rankers", e)
                return False
            state = dict(self._state)
            changed = False
            for ref in self.refs:
                current = state[ref]
                try:
                    version = self._resolve(client, ref)
                except Exception as e:  # noqa: BLE001 - a missing alias or registry error: keep what serves
                    error = f"cannot resolve {ref}: {type(e).__name__}: {e}"
                    if current.error != error:
                        log.warning(
                            "%s; %s", error, "keeping " + current.ranker.label if current.ranker else "no model"
                        )
                    state[ref] = RefState(current.ranker, current.version, error)
                    continue
                if current.ranker is not None and current.ranker.version == version:
                    if current.error is not None:
                        state[ref] = RefState(current.ranker, version)
                    continue
                ranker = self._models.get(version)
                if ranker is None:
                    try:
                        ranker = self._load(client, version)
                    except Exception as e:  # noqa: BLE001 - any load failure keeps the previous model
                        error = (
                            f"version {version} of {self.registered_model} cannot be loaded: {type(e).__name__}: {e}"
                        )
                        if self._errors.get(version) != error:
                            log.error(
                                "%s; %s", error, "keeping " + current.ranker.label if current.ranker else "no model"
                            )
                        self._errors[version] = error
                        state[ref] = RefState(current.ranker, version, error)
                        if self._on_event:
                            self._on_event("failed", ref, version)
                        continue
                    self._models[version] = ranker
                    self._errors.pop(version, None)
                state[ref] = RefState(ranker, version)
                changed = True
                log.info("ranker %s now serves %s", ref, ranker.label)
                if self._on_event:
                    self._on_event("loaded", ref, version)
            self._state = state  # one assignment: requests see the old dict or the new one
            in_use = {s.ranker.version for s in state.values() if s.ranker is not None}
            self._models = {v: m for v, m in self._models.items() if v in in_use}
            return changed
