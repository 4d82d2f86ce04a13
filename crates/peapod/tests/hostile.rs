//! Hostile end-to-end tests: each request or container tries one escape or one exhaustion
//! against a real `peapod up`, is refused, and the node keeps serving. One module per area.

mod common;

#[path = "hostile/requests.rs"]
mod requests;
