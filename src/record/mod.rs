//! Sessions: XDF writing and reading, the recorder thread, replay of recordings over LSL and
//! the marker convention that turns calibration sessions into labelled training data.
