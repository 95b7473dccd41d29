"""Verifier backends by name: ``hf`` (local transformers VLM, shared image prefill) and ``openai``
(an OpenAI-compatible server's top log-probs). Heavy imports happen only when a backend is built."""
