//! Fuzzes the Cerb package parser with arbitrary documents: a package that is not valid must be
//! refused with an error, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_package::Package;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = std::str::from_utf8(data) {
        let _ = Package::parse(json);
    }
});
