//! shim (skeleton; being built)
