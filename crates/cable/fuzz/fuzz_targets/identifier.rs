//! Any UTF-8 string as an identifier a client sent.
//!
//! Checks that `Identifier::parse` accepts exactly the JSON objects with a
//! string `channel` and never leaves `channel` in `params`, and that every
//! frame addressed to the identifier (confirm, reject, message) echoes it exactly.
#![no_main]

use cable_fuzz::{check_control_frames, check_identifier, check_to_subscription};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|bytes: &[u8]| {
    let Ok(identifier) = std::str::from_utf8(bytes) else {
        return;
    };
    check_identifier(identifier);
    check_control_frames(identifier);
    let message = RawValue::from_string(r#"{"ok":true}"#.to_owned()).expect("valid JSON");
    check_to_subscription(identifier, &message, None);
});
