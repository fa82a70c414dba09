"""The storyteller model: tokenizer, training, evaluation, registry, and the loaded model as a writer."""
