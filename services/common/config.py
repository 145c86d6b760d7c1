"""Configuration from the environment, read in one place.

Every setting has a default that works on a developer's machine; production sets the
environment. Nameko's config dict is built from the same settings (``nameko_config``), and
extensions read them back from it (``from_container``), so tests can run containers with
settings of their own.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_MONGO_URI = "mongodb://127.0.0.1:27117/?directConnection=true"
LOCAL_JWT_SECRET = "local-development-secret-not-for-production"
# Complaint records are kept at least one year after closing (seed 003 §8, REGULATION.md).
MIN_RETENTION_DAYS = 365


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    amqp_uri: str = DEFAULT_AMQP_URI
    mongo_uri: str = DEFAULT_MONGO_URI
    # Each service owns the database "<db_prefix>_<service>"; tests use a prefix per run.
    db_prefix: str = "complaints"
    jwt_secret: str = LOCAL_JWT_SECRET
    gateway_address: str = "127.0.0.1:8000"
    max_workers: int = 10
    # Seconds between retries of a failed handler before its message is parked.
    retry_delays: tuple[float, ...] = field(default=(1.0, 5.0, 30.0))
    # Seconds an outbox row waits for the worker that staged it before a sweep relays it.
    outbox_grace: float = 5.0
    rpc_timeout: float = 10.0
    # The SLA sweep: points fired per tick at most, and seconds a tick may spend firing
    # (the outbox relays a tick's events when it ends, so a short tick keeps the lag short).
    sla_sweep_batch: int = 100
    sla_sweep_budget: float = 0.5
    # The SLA policies and business calendars (None: the shipped data in
    # services/common/policy/data/), read by intake and sla.
    policies_path: str | None = None
    calendars_path: str | None = None
    # A submission's received_at is plausible from RECEIVED_AT_MAX_AGE_DAYS ago (the records'
    # retention) to RECEIVED_AT_SKEW seconds from now (the senders' clocks run a little fast).
    received_at_skew: float = 300.0
    received_at_max_age_days: int = 365
    # Days a closed or withdrawn complaint, with its history and proof of notice, is kept
    # after closing before the operators' purge may remove it; at least MIN_RETENTION_DAYS.
    retention_days: int = 3 * 365
    # Mediation deliveries (CONTRACTS §4): the first retry within `base` seconds, doubling up
    # to `cap`, jittered, for at least `retry_for` seconds; `timeout` is how long an
    # organization has to answer one attempt.
    mediation_retry_base: float = 10.0
    mediation_retry_cap: float = 3600.0
    mediation_retry_for: float = 24 * 3600.0
    mediation_timeout: float = 10.0
    # A YAML file of mediation organizations put in the registry at start when absent
    # (local runs: the samples); empty: none.
    mediation_organizations: str = ""

    def __post_init__(self):
        if self.retention_days < MIN_RETENTION_DAYS:
            raise ValueError(f"RETENTION_DAYS must be at least {MIN_RETENTION_DAYS}: records are kept "
                             f"at least one year after closing, not {self.retention_days} days")

    @classmethod
    def from_env(cls, env: dict | None = None) -> Settings:
        env = os.environ if env is None else env
        default = cls()
        return cls(
            amqp_uri=env.get("AMQP_URI", default.amqp_uri),
            mongo_uri=env.get("MONGO_URI", default.mongo_uri),
            db_prefix=env.get("DB_PREFIX", default.db_prefix),
            jwt_secret=env.get("JWT_SECRET", default.jwt_secret),
            gateway_address=env.get("GATEWAY_ADDRESS", default.gateway_address),
            max_workers=int(env.get("MAX_WORKERS", default.max_workers)),
            retry_delays=_floats(env["RETRY_DELAYS"]) if "RETRY_DELAYS" in env else default.retry_delays,
            outbox_grace=float(env.get("OUTBOX_GRACE", default.outbox_grace)),
            rpc_timeout=float(env.get("RPC_TIMEOUT", default.rpc_timeout)),
            sla_sweep_batch=int(env.get("SLA_SWEEP_BATCH", default.sla_sweep_batch)),
            sla_sweep_budget=float(env.get("SLA_SWEEP_BUDGET", default.sla_sweep_budget)),
            policies_path=env.get("POLICIES_PATH") or default.policies_path,
            calendars_path=env.get("CALENDARS_PATH") or default.calendars_path,
            received_at_skew=float(env.get("RECEIVED_AT_SKEW", default.received_at_skew)),
            received_at_max_age_days=int(env.get("RECEIVED_AT_MAX_AGE_DAYS", default.received_at_max_age_days)),
            retention_days=int(env.get("RETENTION_DAYS", default.retention_days)),
            mediation_retry_base=float(env.get("MEDIATION_RETRY_BASE", default.mediation_retry_base)),
            mediation_retry_cap=float(env.get("MEDIATION_RETRY_CAP", default.mediation_retry_cap)),
            mediation_retry_for=float(env.get("MEDIATION_RETRY_FOR", default.mediation_retry_for)),
            mediation_timeout=float(env.get("MEDIATION_TIMEOUT", default.mediation_timeout)),
            mediation_organizations=env.get("MEDIATION_ORGANIZATIONS", default.mediation_organizations),
        )

    def nameko_config(self) -> dict:
        """The config dict nameko containers run with; extensions read settings from it."""
        return {
            "AMQP_URI": self.amqp_uri,
            "MONGO_URI": self.mongo_uri,
            "DB_PREFIX": self.db_prefix,
            "JWT_SECRET": self.jwt_secret,
            "WEB_SERVER_ADDRESS": self.gateway_address,
            "max_workers": self.max_workers,
            "RETRY_DELAYS": list(self.retry_delays),
            "OUTBOX_GRACE": self.outbox_grace,
            "RPC_TIMEOUT": self.rpc_timeout,
            "SLA_SWEEP_BATCH": self.sla_sweep_batch,
            "SLA_SWEEP_BUDGET": self.sla_sweep_budget,
            "POLICIES_PATH": self.policies_path or "",
            "CALENDARS_PATH": self.calendars_path or "",
            "RECEIVED_AT_SKEW": self.received_at_skew,
            "RECEIVED_AT_MAX_AGE_DAYS": self.received_at_max_age_days,
            "RETENTION_DAYS": self.retention_days,
            "MEDIATION_RETRY_BASE": self.mediation_retry_base,
            "MEDIATION_RETRY_CAP": self.mediation_retry_cap,
            "MEDIATION_RETRY_FOR": self.mediation_retry_for,
            "MEDIATION_TIMEOUT": self.mediation_timeout,
            "MEDIATION_ORGANIZATIONS": self.mediation_organizations,
            # Serialize with JSON so other systems can read our messages.
            "serializer": "json",
        }


# Container config keys that nameko itself names differently from the environment.
_CONTAINER_KEYS = {"WEB_SERVER_ADDRESS": "GATEWAY_ADDRESS", "max_workers": "MAX_WORKERS"}


def from_container(config: dict) -> Settings:
    """Settings as a running container sees them (its config dict over the environment)."""
    env = dict(os.environ)
    for key, value in config.items():
        name = _CONTAINER_KEYS.get(key, key)
        if isinstance(value, list | tuple):
            value = ",".join(str(item) for item in value)
        env[name] = str(value)
    return Settings.from_env(env)
