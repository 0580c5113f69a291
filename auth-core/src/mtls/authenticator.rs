//! (being written)

/// (being written)
#[derive(Debug)]
pub struct Mtls;

/// (being written)
#[derive(Debug)]
pub struct MtlsBuilder;
