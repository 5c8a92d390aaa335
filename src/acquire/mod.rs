//! Acquisition: resolve an LSL EEG stream, own its inlet on one thread, move samples into a
//! lock-free ring buffer for the feature thread.
