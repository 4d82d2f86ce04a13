//! apiserver (skeleton; being built)
