"""The hooked core: the wrapped Hugging Face model, its attention function, prompts and token layouts."""
