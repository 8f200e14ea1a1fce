"""The LLM back end: an OpenAI-compatible client with cache, limits and retries; prompts; parsers."""
