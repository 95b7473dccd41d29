"""The decomposer service: prompts to DVReward questions (rules, OpenAI-compatible or local HF backends),
cached in Redis with cross-worker single-flight. ``decomposer.app.create_app`` builds the FastAPI app."""
