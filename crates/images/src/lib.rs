//! images (skeleton; being built)
