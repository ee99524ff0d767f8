"""Chat: the RAG prompt, the model cache of the web process and streamed generation."""
