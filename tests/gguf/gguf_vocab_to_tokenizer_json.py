#!/usr/bin/env python3
"""gguf_vocab_to_tokenizer_json.py - a byte-level BPE tokenizer.json from a GGUF vocabulary.

usage: gguf_vocab_to_tokenizer_json.py VOCAB.gguf OUT.json

For tests/unit/test_hf.c: llama.cpp's tokenizer vectors (ggml-vocab-gpt-2.gguf
+ .inp/.out, computed with HF tokenizers) then check the tokenizer.json path
(engine/tokenizer_hf.c) on a real byte-level vocabulary. The GGUF's tokens
become model.vocab, tokenizer.ggml.merges model.merges, CONTROL (3) and
USER_DEFINED (4) tokens added_tokens (special true / false), and the
pre-tokenizer is GPT-2's ByteLevel with its regex. Python 3 stdlib only.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_bad  # noqa: E402

g = make_bad.Gguf(open(sys.argv[1], "rb").read())
tokens = [t.decode("utf-8", "surrogateescape") for t in g.find("tokenizer.ggml.tokens").strings()]
merges = [m.decode("utf-8", "surrogateescape") for m in g.find("tokenizer.ggml.merges").strings()]
tt = g.find("tokenizer.ggml.token_type")
types = tt.scalars() if tt is not None else [1] * len(tokens)
vocab = {}
for i, t in enumerate(tokens):
    vocab.setdefault(t, i)
added = [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
          "normalized": types[i] != 3, "special": types[i] == 3} for i in range(len(tokens)) if types[i] in (3, 4)]
doc = {"version": "1.0", "added_tokens": added, "normalizer": None,
       "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
       "post_processor": None, "decoder": {"type": "ByteLevel"},
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "byte_fallback": False,
                 "vocab": vocab, "merges": merges}}
json.dump(doc, open(sys.argv[2], "w"), ensure_ascii=False)
