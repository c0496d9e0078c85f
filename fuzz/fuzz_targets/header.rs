//! Archive header decoding: any bytes decode to a header or a typed fault, never a panic;
//! a header that decodes survives an encode/decode round trip.
//!
//! An input is a header followed by the file length to check it against (8 bytes,
//! little-endian, at the end), so the fuzzer works on 4 KiB inputs rather than whole
//! archives. Each input is also tried with its header checksum recomputed, so the checks
//! behind that checksum are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podmap_fuzz::{reads, seal};

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.len().checked_sub(8) else {
        return;
    };
    let (header, len) = data.split_at(split);
    let file_len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    reads::header(header, file_len);
    reads::header(&seal::reseal(header), file_len);
});
