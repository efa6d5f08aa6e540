"""The model: a bidirectional RNN encoder and a Bahdanau attention decoder, as the paper writes them.

    attention.py  additive attention, stateless (keys projected once per batch)
    cells.py      the recurrent cells (RNN, LSTM, GRU) stacked in layers, one step at a time
    encoder.py    the bidirectional encoder and its `EncoderOutput`
    decoder.py    one decoder step (attend with the previous state, then update) and its `DecoderState`
    seq2seq.py    the whole: `encode` / `init_state` / `step` / `forward`, and its initialisation

Nothing here knows about devices, processes, the tokenizer or how it is trained or decoded.
"""
