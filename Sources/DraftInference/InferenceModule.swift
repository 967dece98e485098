// DraftInference: running targets and drafts for generation (prefill, KV-cache decode, sampling).
