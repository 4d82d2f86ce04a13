//! node (skeleton; being built)
