//! Any bytes opened as an archive and searched with fixed queries (vector top-k, filters,
//! every score, lexical): an error or results, never a panic, hang or overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podmap_fuzz::{reads, with_archive};

fuzz_target!(|data: &[u8]| {
    with_archive(data, reads::open_search);
});
