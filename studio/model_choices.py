"""The models a person can pick in the Studio: the registry's aliases and versions, each with the evaluation
numbers that tell them apart, and the colorizers behind them, loaded once and kept."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from models.colorize import Colorizer, load_colorizer
from models.registry import MODEL_NAME

SHOWN_METRICS = ("eval_psnr", "eval_ssim", "eval_colorfulness_ratio")
DEFAULT_CHOICE = f"models:/{MODEL_NAME}@champion"


@dataclass(frozen=True)
class ModelChoice:
    uri: str
    label: str
    version: str
    metrics: dict[str, float] = field(default_factory=dict)


def model_choices(tracking_uri: str) -> list[ModelChoice]:
    """Aliases first (champion, previous, ...), then every version, newest first."""
    client = MlflowClient(tracking_uri)
    try:
        versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
        # Version searches leave aliases out; the registered model holds them.
        aliases = client.get_registered_model(MODEL_NAME).aliases
    except MlflowException:
        return []
    versions = sorted(versions, key=lambda version: int(version.version), reverse=True)
    metrics = {version.version: _metrics(client, version.run_id) for version in versions}
    by_alias = sorted(aliases.items(), key=lambda pair: (pair[0] != "champion", pair[0]))
    choices = [
        ModelChoice(f"models:/{MODEL_NAME}@{alias}", f"{alias} (version {version})", version, metrics.get(version, {}))
        for alias, version in by_alias
    ]
    choices += [
        ModelChoice(
            f"models:/{MODEL_NAME}/{version.version}",
            f"version {version.version}",
            version.version,
            metrics[version.version],
        )
        for version in versions
    ]
    return choices


def _metrics(client: MlflowClient, run_id: str | None) -> dict[str, float]:
    if not run_id:
        return {}
    found = client.get_run(run_id).data.metrics
    return {name: round(found[name], 4) for name in SHOWN_METRICS if name in found}


class ColorizerCache:
    """Colorizers by model URI, the `size` most recently used kept in memory (a full-size generator is about
    200 MB). An alias is resolved to its version first, so a moved alias is followed and a version shared by
    two names is loaded once."""

    def __init__(self, tracking_uri: str, size: int = 2) -> None:
        self.tracking_uri, self.size = tracking_uri, size
        self._loaded: OrderedDict[str, Colorizer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, uri: str) -> Colorizer:
        version_uri = self._version_uri(uri)
        with self._lock:
            if version_uri in self._loaded:
                self._loaded.move_to_end(version_uri)
                return self._loaded[version_uri]
            colorizer = load_colorizer(version_uri)
            self._loaded[version_uri] = colorizer
            while len(self._loaded) > self.size:
                self._loaded.popitem(last=False)
            return colorizer

    def _version_uri(self, uri: str) -> str:
        prefix = f"models:/{MODEL_NAME}@"
        if not uri.startswith(prefix):
            return uri
        version = MlflowClient(self.tracking_uri).get_model_version_by_alias(MODEL_NAME, uri.removeprefix(prefix))
        return f"models:/{MODEL_NAME}/{version.version}"
