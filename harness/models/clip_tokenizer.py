"""A CLIP tokenizer made here, for the stand-ins: the Hub's is out of reach where the stand-ins are needed."""

from __future__ import annotations

import json

from core.assets import calibration_prompts


def make_clip_tokenizer():
    """A CLIP tokenizer whose BPE vocabulary we learn locally from our own prompts (no Hub download).

    CLIP's byte-level BPE needs every byte symbol, alone and word-final ("x</w>"), so any input tokenizes;
    the merges are learned with the `tokenizers` trainer so prompts split into word pieces as with CLIP.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_symbols = list(bytes_to_unicode().values())
    corpus = calibration_prompts()
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Lowercase()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=2048, end_of_word_suffix="</w>", initial_alphabet=byte_symbols, show_progress=False
    )
    bpe.train_from_iterator(corpus, trainer)
    merges = [m.split(" ") if isinstance(m, str) else m for m in json.loads(bpe.to_str())["model"]["merges"]]

    vocab = byte_symbols + [s + "</w>" for s in byte_symbols]
    known = set(vocab)
    kept = []
    for a, b in merges:
        if a in known and b in known and a + b not in known:
            kept.append((a, b))
            known.add(a + b)
            vocab.append(a + b)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={tok: i for i, tok in enumerate(vocab)}, merges=kept, model_max_length=77)
