//! store (skeleton; being built)
