"""The OpenAPI schemas of the services, built from the apps themselves (no model is loaded)."""

from __future__ import annotations


def service_schemas() -> dict[str, dict]:
    from decomposer.app import create_app as decomposer_app
    from decomposer.settings import DecomposerSettings
    from verifier.app import create_app as verifier_app
    from verifier.settings import VerifierSettings

    return {
        "decomposer": decomposer_app(DecomposerSettings()).openapi(),
        "verifier": verifier_app(VerifierSettings()).openapi(),
    }
