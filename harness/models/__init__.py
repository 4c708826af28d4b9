"""The model's files: from the Hugging Face Hub or a local copy (`model_sources`), or random-weight stand-ins laid
out like the real repositories (`standins`, `clip_tokenizer`)."""
