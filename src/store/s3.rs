//! aws-sdk-s3 implementation of [`ObjectStore`](super::ObjectStore).
//! (Being written: see the helper task; this placeholder keeps the crate
//! compiling and is replaced wholesale.)
