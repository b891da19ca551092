//! Helpers of the spec unit tests: a parse of JSON options, minimal s3 and
//! ossfs volumes, and the one-sentence check every error passes.

use super::*;
use serde_json::{Value, json};

pub fn parse(v: Value) -> Result<VolumeSpec, SpecError> {
    parse_options(v.as_object())
}

/// `base` with `extra` added (overriding keys of the same spelling).
pub fn with(base: &Value, extra: Value) -> Value {
    let mut all = base.clone();
    for (k, v) in extra.as_object().unwrap() {
        all[k] = v.clone();
    }
    all
}

pub fn s3() -> Value {
    json!({"type": "s3", "bucket": "my-bucket"})
}

pub fn ossfs() -> Value {
    json!({"type": "ossfs", "bucket": "my-bucket", "endpoint": "oss-cn-hangzhou.aliyuncs.com"})
}

/// The object-storage part, for `s3` and `ossfs` volumes.
pub fn object(spec: &VolumeSpec) -> &ObjectSpec {
    spec.backend.object().expect("an object-storage spec")
}

pub fn tuning(v: Value) -> MountTuning {
    object(&parse(v).unwrap()).tuning.clone()
}

pub fn err(v: Value) -> SpecError {
    parse(v).unwrap_err()
}

/// Every error is one sentence: no line break, one final clause.
pub fn assert_sentence(e: &SpecError) {
    let msg = e.to_string();
    assert!(!msg.contains('\n') && !msg.ends_with('.'), "{msg}");
}
