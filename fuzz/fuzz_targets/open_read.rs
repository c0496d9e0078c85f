//! Any bytes opened as an archive and read through every public view (items, episodes,
//! transcripts and excerpts, speakers) and verified: an error or data, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podmap_fuzz::{reads, with_archive};

fuzz_target!(|data: &[u8]| {
    with_archive(data, reads::open_read);
});
