"""The model boundary: an OpenAI-compatible chat-completions client (Kimi K2.5 first-class)."""
