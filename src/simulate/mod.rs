//! A simulated EEG headset: realistic multichannel EEG with class-dependent effects, published
//! over LSL together with a marker stream naming the simulated state.
