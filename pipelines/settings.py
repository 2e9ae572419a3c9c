"""One typed settings object for every Colorflow component.

Everything that differs between a laptop and production is read here from `COLORFLOW_*` environment
variables, so that DAGs, CLIs, tests and services agree on where the lake, the catalog and MLflow live
without passing paths around. Unset values fall back to a working folder, `.colorflow/` in the repository.
The quality stage's section is read from `COLORFLOW_QUALITY_*`, the lake's lifecycle rules from
`COLORFLOW_LIFECYCLE_*`. The embedded stack's own settings (ports, login, the sandbox) extend these in
`embedded.settings`; nothing here knows the stand-ins exist.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipelines.licenses import DEFAULT_ALLOWED

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPECTATIONS_DIR = REPO_ROOT / "expectations"
# MLflow's own default for `mlflow server`: where a tracking server on this machine answers.
DEFAULT_MLFLOW_TRACKING_URI = "http://127.0.0.1:5000"
# The decompression-bomb guard everywhere Colorflow opens an image: a header declaring more pixels than this
# (about 8700 x 5800, a 600 dpi scan of a large print) is refused before a pixel is decoded.
MAX_PIXELS = 50_000_000
# The longest clip colorized at once: ten minutes at 30 frames a second, hours of work on a CPU.
MAX_CLIP_FRAMES = 18_000
# Two 64-bit perceptual hashes at most this many bits apart are the same photo resized or re-encoded, for the
# quality stage (a copy of an accepted image) and the stitch (the same photo from two sources) alike.
NEAR_DUPLICATE_DISTANCE = 6


class QualitySettings(BaseSettings):
    """What the quality stage measures and allows; thresholds that judge images live in the suites."""

    model_config = SettingsConfigDict(env_prefix="COLORFLOW_QUALITY_", extra="ignore")

    license_allow_list: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED),
        description="Licenses (terms of pipelines.licenses: SPDX ids, Unsplash, public-domain-mark) that allow"
        " training on a photo; JSON list.",
    )
    unlicensed_sources: list[str] = Field(
        default_factory=lambda: ["local"],
        description="Sources whose photos may carry no license: the operator vouches for their own folder.",
    )
    near_duplicate_distance: int = Field(
        default=NEAR_DUPLICATE_DISTANCE,
        description="Largest perceptual-hash Hamming distance (of 64 bits) that counts as a copy.",
    )
    max_pixels: int = Field(default=MAX_PIXELS, description="Largest width x height decoded (bomb guard).")
    analysis_side: int = Field(default=256, description="Long side of the copy color facts are measured on.")
    batch_limit: int | None = Field(default=None, description="Most pending images judged in one run.")
    fact_group_images: int = Field(
        default=5_000,
        ge=1,
        description="Images one fact-extraction task measures: the batch is cut into groups of this many, each"
        " a mapped task of its own, so a retry redoes one group.",
    )
    suite_chunk_rows: int = Field(
        default=100_000,
        ge=1,
        description="Most images one Great Expectations validation holds; a larger batch is judged in chunks of"
        " this many, with the same verdicts (row checks judge each image alone).",
    )
    expectations_dir: Path = Field(default=EXPECTATIONS_DIR, description="Folder of the suites' JSON files.")


class StudioSettings(BaseSettings):
    """Colorflow Studio's limits: what one upload and one client may ask of a small server."""

    model_config = SettingsConfigDict(env_prefix="COLORFLOW_STUDIO_", extra="ignore")

    max_photo_mb: float = Field(default=40.0, gt=0, description="Largest photo upload, in MB.")
    max_clip_mb: float = Field(default=300.0, gt=0, description="Largest clip upload, in MB.")
    in_flight_per_client: int = Field(
        default=4, ge=1, description="Uploads one client address may have being colorized at once (more get 429)."
    )
    colorizing_at_once: int = Field(
        default=2,
        ge=1,
        description="Photos colorized at the same time, whoever sent them; the rest wait their turn (one per core"
        " keeps memory bounded and each answer quick).",
    )
    kept_results_mb: float = Field(
        default=768.0,
        gt=0,
        description="Memory for finished photos (lightness and predicted color), so a new strength needs no network"
        " run; the oldest go first.",
    )


class LifecycleSettings(BaseSettings):
    """How long the lake keeps what, and when raw photos move to cheaper storage (`pipelines.lake_lifecycle`)."""

    model_config = SettingsConfigDict(env_prefix="COLORFLOW_LIFECYCLE_", extra="ignore")

    tiers: bool = Field(
        default=True,
        description="Move raw/ to cheaper storage classes. False where the server has no such classes: MinIO"
        " refuses a transition to a storage class unless a remote tier of that name was added (mc admin tier).",
    )
    infrequent_access_days: int = Field(
        default=30, ge=1, description="Days before raw/ objects move to the infrequent-access class (S3: 30 or more)."
    )
    infrequent_access_class: str = Field(default="STANDARD_IA", description="Storage class for infrequent access.")
    archive_days: int = Field(
        default=180,
        ge=1,
        description="Days before raw/ objects move to the archive class (S3: 30 or more after infrequent access).",
    )
    archive_class: str = Field(
        default="GLACIER_IR",
        description="Archive storage class. Instant retrieval, so a dataset rebuild still reads raw/ directly:"
        " GLACIER and DEEP_ARCHIVE would need a restore first.",
    )
    quarantine_days: int = Field(default=90, ge=1, description="Days a quarantined photo is kept.")
    reports_days: int = Field(default=365, ge=1, description="Days quality and audit reports are kept.")
    intermediate_checkpoint_days: int = Field(
        default=30,
        ge=1,
        description="Days an intermediate checkpoint of a finished run is kept (counted from its writing); a run's"
        " final checkpoint, the one a model is registered from, is never expired.",
    )
    unfinished_upload_days: int = Field(
        default=7,
        ge=0,
        description="Days before the parts of a multipart upload that never completed are thrown away. 0 leaves the"
        " rule out, for MinIO: it refuses the rule and drops unfinished uploads itself after a day.",
    )

    @model_validator(mode="after")
    def _archive_after_infrequent_access(self) -> LifecycleSettings:
        if self.tiers and self.archive_days <= self.infrequent_access_days:
            raise ValueError("archive_days must come after infrequent_access_days")
        return self


class Settings(BaseSettings):
    """Where Colorflow keeps its data and how it reaches MLflow and the outside services."""

    model_config = SettingsConfigDict(env_prefix="COLORFLOW_", extra="ignore")

    home: Path = Field(
        default=REPO_ROOT / ".colorflow",
        description="Working folder: the default lake and catalog, service state and logs.",
    )
    lake_url: str = Field(
        default="", description="Object store root: file:///path or s3://bucket/prefix (default: <home>/lake)."
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="Custom S3 endpoint (MinIO or another S3-compatible store); None means AWS."
    )
    catalog_url: str = Field(
        default="", description="SQLAlchemy URL of the catalog (default: SQLite file <home>/catalog.db)."
    )
    mlflow_tracking_uri: str = Field(default=DEFAULT_MLFLOW_TRACKING_URI, description="MLflow tracking server.")
    http_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts (name or name:port) connectors may reach even at internal addresses; JSON list.",
    )
    local_photos_dir: Path | None = Field(
        default=None,
        description="Folder ingest_local reads by default (None: the sample photos shipped in pip packages).",
    )
    retry_delay_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Wait before a failed task's first retry; Airflow doubles it for each later try (with jitter).",
    )
    train_deadline_hours: float = Field(
        default=8.0,
        gt=0,
        description="Hours after a train_colorizer run is queued before its overdue alert fires: a run stuck,"
        " starved of a GPU worker or far slower than usual.",
    )
    # Read from COLORFLOW_QUALITY_* by the section itself (made anew, so the environment is read then).
    quality: QualitySettings = Field(default_factory=QualitySettings, description="The quality stage's settings.")
    studio: StudioSettings = Field(default_factory=StudioSettings, description="Colorflow Studio's limits.")
    lifecycle: LifecycleSettings = Field(
        default_factory=LifecycleSettings, description="The lake's storage tiers and expiries."
    )

    @model_validator(mode="after")
    def _derive_working_folder_defaults(self) -> Settings:
        self.home = self.home.resolve()
        if not self.lake_url:
            self.lake_url = (self.home / "lake").as_uri()
        if not self.catalog_url:
            self.catalog_url = f"sqlite:///{self.home / 'catalog.db'}"
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
