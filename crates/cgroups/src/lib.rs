//! cgroups (skeleton; being built)
