"""Trainer settings from ``TRAINER_*`` environment variables (pydantic-settings): what a deployment changes
without editing the YAML config (the verifier's address, its key, the monitor's address, where runs go).
The YAML config (``configs/*.yaml``) holds the training recipe; these override its deployment fields."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINER_", env_file=None, extra="ignore")

    config: str = Field("configs/shapes-t2i.yaml", description="YAML training config")
    verifier_url: str | None = Field(None, description="overrides reward.verifier_url of the config")
    verifier_api_key: SecretStr | None = Field(None, description="Bearer key of the verifier, when it needs one")
    model_path: str | None = Field(None, description="overrides model_path of the config")
    run_dir: str | None = Field(None, description="overrides run.run_dir (checkpoints, log, curves, grids)")
    monitor_host: str = Field("127.0.0.1", description="interface of /status and /metrics (0.0.0.0 in a container)")
    monitor_port: int | None = Field(None, ge=0, le=65535, description="overrides run.monitor_port (0: a free port)")
    gpus: int = Field(1, ge=1, description="processes torchrun starts in the CUDA image, one per GPU")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def apply(self, cfg):
        """The config with this deployment's overrides."""
        from dataclasses import replace

        reward = replace(cfg.reward, verifier_url=self.verifier_url) if self.verifier_url else cfg.reward
        port = cfg.run.monitor_port if self.monitor_port is None else self.monitor_port
        run = replace(cfg.run, run_dir=self.run_dir or cfg.run.run_dir, monitor_port=port)
        return replace(cfg, model_path=self.model_path or cfg.model_path, reward=reward, run=run)
