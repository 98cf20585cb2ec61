"""The comparison studies: what the notes claim about RNNs, LSTMs, GRUs and the minGRU, measured, and the
gates of a trained model drawn. ``grukit compare`` and ``grukit gates`` (:mod:`.commands`) run them;
each part rewrites its own section of ``comparison/COMPARISON.md`` (:mod:`.report_file`)."""
