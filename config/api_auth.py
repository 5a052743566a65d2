"""API security settings: keys and scopes, TLS, the Host allow-list, CORS and the per-key
rate limit (``api.auth``, ``api.tls``, ``api.allowed_hosts``, ``api.cors``,
``api.rate_limit_per_s``). What they do is ``api.auth``'s; docs/api.md#authentication."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from .base import Model

__all__ = ["ApiAuthSettings", "ApiCorsSettings", "ApiTlsSettings", "ConfiguredKey", "Scope"]

#: what a key may do; each implies those before it (admin > write > read)
Scope = Literal["read", "write", "admin"]


class ConfiguredKey(Model):
    """A key given in the configuration, normally from an environment variable
    (``key: ${TIERPROOF_GRAFANA_KEY}``): for containers, where no one runs ``tierproof keys
    create`` first. Only its SHA-256 is kept in memory; it is never written anywhere."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[\w .@+-]+$")
    scope: Scope = "read"
    key: SecretStr = Field(description="at least 32 characters (e.g. `openssl rand -hex 32`)")

    @field_validator("key")
    @classmethod
    def _long(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 32:
            raise ValueError("an API key must be at least 32 characters long "
                             "(make one with: openssl rand -hex 32)")
        return v


class ApiAuthSettings(Model):
    required: bool = Field(
        default=True,
        description=(
            "every route but the open ones (health, dashboard page, API docs) needs an API key; "
            "with no key at all the gateway refuses to start and says how to create one. "
            "false: no key is asked for (a warning is logged when the API listens on a "
            "non-loopback address)"
        ),
    )
    keys_file: str | None = Field(
        default=None,
        description=(
            "where `tierproof keys` keeps the hashed keys (JSON, mode 0600); default: "
            "`api_keys.json` beside the store's file (store.path of the embedded store, "
            "store.meta_path of InfluxDB)"
        ),
    )
    keys: list[ConfiguredKey] = Field(
        default_factory=list,
        description="keys given in the configuration (from environment variables), beside "
                    "those of keys_file",
    )


class ApiTlsSettings(Model):
    """HTTPS: a PEM certificate (chain) and its private key, read by uvicorn at start."""

    cert: str = Field(min_length=1, description="PEM certificate file (with its chain)")
    key: str = Field(min_length=1, description="PEM private key file of the certificate")


class ApiCorsSettings(Model):
    """Cross-origin requests from browsers (another origin's web page calling the API)."""

    origins: list[str] = Field(
        default_factory=list,
        description="origins allowed (`https://mes.example.com`; `*` any); empty: no CORS "
                    "headers, browsers refuse cross-origin reads",
    )
    methods: list[str] = Field(default_factory=lambda: ["GET", "HEAD"])
    headers: list[str] = Field(default_factory=lambda: ["X-API-Key", "Authorization"])
    max_age_s: int = Field(default=600, ge=0, le=86_400,
                           description="how long a browser may cache a preflight answer")
