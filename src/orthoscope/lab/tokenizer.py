"""A character-level tokenizer for the lab, built with `tokenizers`, loadable by AutoTokenizer."""

from __future__ import annotations

import string

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]
ALPHABET = string.ascii_letters + string.digits + " .,;:?!+=-'()\n"


def char_tokenizer():
    """One token per character of ALPHABET, plus <pad> <unk> <bos> <eos>.

    >>> tok = char_tokenizer()
    >>> tok.decode(tok("12 + 35")["input_ids"])
    '12 + 35'
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS + list(ALPHABET))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<bos>", eos_token="<eos>")
