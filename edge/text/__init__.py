"""Text generation: a bundle's tokenizer, its decoder session and KV cache, sampling, and the decode loop
(``model.TextModel`` is what ``edge.load`` returns for a language model)."""
