//! Fuzz target `jpeg_split`: JPEG splitter fed as reads of random sizes, and the frame fix-ups (Huffman tables, EXIF orientation).
//! The invariants live in `picamd::fuzzing::jpeg_split`, next to the parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| picamd::fuzzing::jpeg_split(data));
