"""Data: parallel text read, tokenised once and batched.

    readers.py    text, TSV and JSON-lines files read in byte-range chunks, and their lines checked
    splits.py     a recipe's splits (files, templates, hub datasets) as `datasets` tables
    tokenizer.py  the SentencePiece model(s), each side's vocabulary, the special tokens
    spans.py      where each piece lies in its text (byte offsets, from SentencePiece's own record)
    encode.py     a split tokenised into Arrow files, block by block in worker processes
    cache.py      the content-keyed data cache those files live in
    prepare.py    the tokenizer and the tokenised splits, from the cache or prepared into it now
    batching.py   the length filter, token-budget batches and the padded `Batch`
"""
