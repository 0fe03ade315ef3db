//! The built-in test pattern camera source (`--camera test`): a moving
//! picture with a UTC clock a person can read, encoded by our own baseline
//! JPEG encoder (ITU-T T.81), needing no hardware and no external program.
//!
//! Guarantees: every `render` appends one complete baseline JPEG (SOI … EOI):
//! YCbCr 4:2:0, quantization tables from Annex K.1 scaled by quality, the
//! Huffman tables of Annex K.3, and a COM segment `picamd-ts=<unix_us>`
//! right after SOI (benchmarks measure latency from it). `render` allocates
//! nothing after `new` apart from growing `out`, and no width, height,
//! quality, frame number or time panics.
//!
//! Must not know: clocks (the time comes in as a parameter), files,
//! processes, sockets. `camera` decides when a frame is due.
//!
//! Why it is cheap (about 0.1 ms a frame at 640x480 on one core): every
//! shape is drawn on a 16-pixel grid (one 4:2:0 MCU), and text sits on its
//! panel's chroma, so almost every 8x8 block is flat. The DCT of a flat
//! block is its DC term alone (A.3.3: all AC terms are zero), so a flat
//! block is coded as DC difference + EOB without a DCT, and an MCU that
//! repeats the one before it is a constant bit pattern. Only the grey ramp
//! at the bottom and text smaller than one block take the DCT path, which
//! keeps that path exercised; those blocks repeat from frame to frame, so a
//! small cache keyed by their samples skips the DCT and the AC coding. The
//! frame is drawn and coded one band of 16 rows at a time, so the working
//! set stays in the CPU cache at any size.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

/// Smallest frame side: one 4:2:0 MCU.
pub const MIN_SIDE_PX: u32 = 16;
/// Largest frame side. Memory does not grow with the frame (one band of
/// 16 rows is drawn at a time); this bounds the time a frame takes.
pub const MAX_SIDE_PX: u32 = 4096;

/// MCU side for 4:2:0 (A.2.4: luma H = V = 2, chroma H = V = 1).
const MCU_PX: usize = 16;

/// The 8x8 block index of natural (row-major) order for each position of
/// the zig-zag sequence (T.81 Figure A.6).
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// T.81 Table K.1, luminance quantization table, natural order.
const K1_LUMA: [u8; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, //
    12, 12, 14, 19, 26, 58, 60, 55, //
    14, 13, 16, 24, 40, 57, 69, 56, //
    14, 17, 22, 29, 51, 87, 80, 62, //
    18, 22, 37, 56, 68, 109, 103, 77, //
    24, 35, 55, 64, 81, 104, 113, 92, //
    49, 64, 78, 87, 103, 121, 120, 101, //
    72, 92, 95, 98, 112, 100, 103, 99,
];

/// T.81 Table K.2, chrominance quantization table, natural order.
const K2_CHROMA: [u8; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, //
    18, 21, 26, 66, 99, 99, 99, 99, //
    24, 26, 56, 99, 99, 99, 99, 99, //
    47, 66, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99,
];

// T.81 K.3.1 / K.3.2 (Tables K.3 to K.6) as BITS (codes of each length
// 1..=16) and HUFFVAL, the form B.2.4.2 puts in a DHT segment: one copy,
// shared with the splitter's DHT insertion for webcam frames.
use crate::proto::jpeg::{
    AC_CHROMINANCE_BITS as AC_CHROMA_BITS, AC_CHROMINANCE_VALUES as AC_CHROMA_VALS,
    AC_LUMINANCE_BITS as AC_LUMA_BITS, AC_LUMINANCE_VALUES as AC_LUMA_VALS,
    DC_CHROMINANCE_BITS as DC_CHROMA_BITS, DC_LUMINANCE_BITS as DC_LUMA_BITS,
    DC_VALUES as DC_CHROMA_VALS, DC_VALUES as DC_LUMA_VALS,
};

/// F.1.2.2.1: an AC run of 16 zeros.
const ZRL: u8 = 0xF0;
/// F.1.2.2.1: end of block, the remaining AC coefficients are zero.
const EOB: u8 = 0x00;

/// Encoder form of one Huffman table: code and length per symbol.
struct HuffCodes {
    code: [u16; 256],
    len: [u8; 256],
}

impl HuffCodes {
    /// T.81 Annex C (Figures C.1 to C.3): canonical codes from BITS and
    /// HUFFVAL. Runs at compile time, so a bad table is a build error.
    #[allow(clippy::indexing_slicing)]
    const fn build(bits: &[u8; 16], vals: &[u8]) -> HuffCodes {
        let mut t = HuffCodes {
            code: [0; 256],
            len: [0; 256],
        };
        let mut code: u32 = 0;
        let mut k = 0;
        let mut l = 0;
        while l < 16 {
            let mut i = 0;
            while i < bits[l] as usize {
                let sym = vals[k] as usize;
                t.code[sym] = code as u16;
                t.len[sym] = (l + 1) as u8;
                code += 1;
                k += 1;
                i += 1;
            }
            code <<= 1;
            l += 1;
        }
        t
    }

    /// (code, length) of `sym`; length 0 means the table has no such symbol.
    fn get(&self, sym: u8) -> (u32, u32) {
        let i = usize::from(sym);
        let code = self.code.get(i).copied().unwrap_or(0);
        let len = self.len.get(i).copied().unwrap_or(0);
        (u32::from(code), u32::from(len))
    }
}

static DC_LUMA: HuffCodes = HuffCodes::build(&DC_LUMA_BITS, &DC_LUMA_VALS);
static DC_CHROMA: HuffCodes = HuffCodes::build(&DC_CHROMA_BITS, &DC_CHROMA_VALS);
static AC_LUMA: HuffCodes = HuffCodes::build(&AC_LUMA_BITS, &AC_LUMA_VALS);
static AC_CHROMA: HuffCodes = HuffCodes::build(&AC_CHROMA_BITS, &AC_CHROMA_VALS);

/// One quantization table, in the forms the encoder needs.
struct QuantTable {
    /// DQT payload: Q values in zig-zag order (B.2.4.1).
    dqt: [u8; 64],
    /// 1/Q in natural order, so quantization (A.3.4) is a multiply.
    recip: [f32; 64],
    /// Quantized DC of a flat block for each sample value: the FDCT of a
    /// flat block of value v is 8 * (v - 128) at (0, 0) and zero elsewhere.
    flat_dc: [i16; 256],
}

impl QuantTable {
    /// Scales an Annex K table by quality the way IJG libjpeg does
    /// (quality 50 = the table as printed, 100 = all ones), so
    /// `--quality` means what users know from other tools. Values are
    /// clamped to 1..=255 for 8-bit (baseline) DQT entries.
    fn new(base: &[u8; 64], quality: u8) -> QuantTable {
        let q = u32::from(quality.clamp(1, 100));
        let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
        let mut natural = [1u8; 64];
        for (n, &b) in natural.iter_mut().zip(base.iter()) {
            let v = (u32::from(b) * scale + 50) / 100;
            *n = u8::try_from(v.clamp(1, 255)).unwrap_or(255);
        }
        let mut dqt = [1u8; 64];
        for (d, &nat) in dqt.iter_mut().zip(ZIGZAG.iter()) {
            *d = natural.get(usize::from(nat)).copied().unwrap_or(1);
        }
        let mut recip = [1.0f32; 64];
        for (r, &q) in recip.iter_mut().zip(natural.iter()) {
            *r = 1.0 / f32::from(q);
        }
        let q_dc = i32::from(dqt[0]);
        let mut flat_dc = [0i16; 256];
        for (v, dc) in flat_dc.iter_mut().enumerate() {
            let f = 8 * (i32::try_from(v).unwrap_or(0) - 128);
            // Round half away from zero, like the DCT path.
            let half = if f < 0 { -q_dc / 2 } else { q_dc / 2 };
            let quantized = ((f + half) / q_dc).clamp(-MAX_DC, MAX_DC);
            *dc = i16::try_from(quantized).unwrap_or(0);
        }
        QuantTable {
            dqt,
            recip,
            flat_dc,
        }
    }
}

/// Largest quantized DC magnitude we emit: a DC difference then stays under
/// 2048, the largest Table F.1 category (11) the K.3 DC tables code.
const MAX_DC: i32 = 1023;
/// Largest quantized AC magnitude: category 10 is the largest in the K.3
/// AC tables (F.1.2.2.1).
const MAX_AC: i32 = 1023;

/// A colour in JFIF YCbCr (full range, 0..=255 each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ycc {
    y: u8,
    cb: u8,
    cr: u8,
}

impl Ycc {
    /// JFIF 1.02 RGB → YCbCr, coefficients in 8-bit fixed point.
    const fn rgb(r: i32, g: i32, b: i32) -> Ycc {
        let y = (77 * r + 150 * g + 29 * b + 128) >> 8;
        let cb = ((-43 * r - 85 * g + 128 * b + 128) >> 8) + 128;
        let cr = ((128 * r - 107 * g - 21 * b + 128) >> 8) + 128;
        Ycc {
            y: clamp_u8(y),
            cb: clamp_u8(cb),
            cr: clamp_u8(cr),
        }
    }

    /// The same chroma with another luma: text drawn this way on its panel
    /// changes only luma, so 4:2:0 chroma blocks under text stay flat.
    const fn with_luma(self, y: u8) -> Ycc {
        Ycc {
            y,
            cb: self.cb,
            cr: self.cr,
        }
    }
}

const fn clamp_u8(v: i32) -> u8 {
    if v < 0 {
        0
    } else if v > 255 {
        255
    } else {
        v as u8
    }
}

/// Moving bars, chosen so neighbours contrast.
const BARS: [Ycc; 8] = [
    Ycc::rgb(230, 57, 70),
    Ycc::rgb(233, 196, 106),
    Ycc::rgb(42, 157, 143),
    Ycc::rgb(241, 250, 238),
    Ycc::rgb(244, 162, 97),
    Ycc::rgb(69, 123, 157),
    Ycc::rgb(168, 218, 220),
    Ycc::rgb(29, 53, 87),
];
const SQUARE: Ycc = Ycc::rgb(255, 64, 160);
const PANEL: Ycc = Ycc::rgb(16, 20, 36);
const CLOCK_TEXT: Ycc = PANEL.with_luma(235);
const SMALL_TEXT: Ycc = PANEL.with_luma(175);
/// The grey ramp spans JPEG's usual video range of luma.
const RAMP_LO: u8 = 16;
const RAMP_HI: u8 = 235;
/// Neutral chroma (grey).
const NEUTRAL: u8 = 128;

const TITLE: &[u8] = b"picamd test pattern";
const FRAME_LABEL: &[u8] = b"UTC  frame ";
/// Font cells of the frame line are sized for this many digits, so the
/// text does not shrink every time the counter gains a digit.
const FRAME_DIGITS_FOR_LAYOUT: usize = 7;
/// Height of the font in font pixels.
const GLYPH_ROWS: usize = 7;

/// A 5x7 bitmap font, one string per row, `#` lit. Widths vary (`:` is
/// narrower than a digit) so the clock fits larger.
const fn glyph(ch: u8) -> &'static [&'static str; GLYPH_ROWS] {
    match ch {
        b'0' => &[
            ".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###.",
        ],
        b'1' => &[
            "..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###.",
        ],
        b'2' => &[
            ".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####",
        ],
        b'3' => &[
            "#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###.",
        ],
        b'4' => &[
            "...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#.",
        ],
        b'5' => &[
            "#####", "#....", "####.", "....#", "....#", "#...#", ".###.",
        ],
        b'6' => &[
            "..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###.",
        ],
        b'7' => &[
            "#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#...",
        ],
        b'8' => &[
            ".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###.",
        ],
        b'9' => &[
            ".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##..",
        ],
        b':' => &["..", "##", "##", "..", "##", "##", ".."],
        b'.' => &["..", "..", "..", "..", "..", "##", "##"],
        b'a' => &[
            ".....", ".....", ".###.", "....#", ".####", "#...#", ".####",
        ],
        b'c' => &[
            ".....", ".....", ".###.", "#....", "#....", "#...#", ".###.",
        ],
        b'd' => &[
            "....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####",
        ],
        b'e' => &[
            ".....", ".....", ".###.", "#...#", "#####", "#....", ".###.",
        ],
        b'f' => &["..##", ".#..", "####", ".#..", ".#..", ".#..", ".#.."],
        b'i' => &[".#.", "...", "##.", ".#.", ".#.", ".#.", "###"],
        b'm' => &[
            ".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#",
        ],
        b'n' => &[
            ".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#",
        ],
        b'p' => &[
            ".....", ".....", "####.", "#...#", "####.", "#....", "#....",
        ],
        b'r' => &[
            ".....", ".....", "#.##.", "##..#", "#....", "#....", "#....",
        ],
        b's' => &[
            ".....", ".....", ".####", "#....", ".###.", "....#", "####.",
        ],
        b't' => &[".#..", ".#..", "####", ".#..", ".#..", ".#.#", "..#."],
        b'C' => &[
            ".###.", "#...#", "#....", "#....", "#....", "#...#", ".###.",
        ],
        b'T' => &[
            "#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#..",
        ],
        b'U' => &[
            "#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###.",
        ],
        _ => &["...", "...", "...", "...", "...", "...", "..."],
    }
}

/// A glyph as bits: bit c of a row is column c, lit.
#[derive(Clone, Copy)]
struct Glyph {
    rows: [u8; GLYPH_ROWS],
    width: u8,
}

/// `glyph` as bits for every ASCII code.
static FONT: [Glyph; 128] = font();

/// Runs at compile time, so an out-of-range index is a build error, not a
/// panic.
#[allow(clippy::indexing_slicing)]
const fn font() -> [Glyph; 128] {
    let mut font = [Glyph {
        rows: [0; GLYPH_ROWS],
        width: 0,
    }; 128];
    let mut ch = 0;
    while ch < 128 {
        let rows = glyph(ch as u8);
        let mut r = 0;
        while r < GLYPH_ROWS {
            let row = rows[r].as_bytes();
            let mut c = 0;
            while c < row.len() {
                if row[c] == b'#' {
                    font[ch].rows[r] |= 1 << c;
                }
                c += 1;
            }
            r += 1;
        }
        font[ch].width = rows[0].len() as u8;
        ch += 1;
    }
    font
}

fn glyph_bits(ch: u8) -> Glyph {
    FONT.get(usize::from(ch)).copied().unwrap_or(Glyph {
        rows: [0; GLYPH_ROWS],
        width: 3,
    })
}

fn glyph_width(ch: u8) -> usize {
    usize::from(glyph_bits(ch).width)
}

/// Width of `text` in font pixels: glyphs plus one blank column between.
fn text_units(text: &[u8]) -> usize {
    let sum: usize = text.iter().map(|&c| glyph_width(c) + 1).sum();
    sum.saturating_sub(1)
}

/// Where one line of text goes: top-left corner and font pixel size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TextPos {
    x: usize,
    y: usize,
    cell: usize,
}

/// Where everything goes in one frame, a pure function of the frame size
/// and the width of the frame-number line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// Bar width; bars move one MCU per frame.
    bar_w: usize,
    square_side: usize,
    /// Top row of the grey ramp, if the frame is tall enough for one.
    ramp_top: Option<usize>,
    /// x0, y0, x1, y1 (exclusive) of the clock's panel.
    panel: Option<(usize, usize, usize, usize)>,
    title: Option<TextPos>,
    clock: Option<TextPos>,
    frame_line: Option<TextPos>,
}

/// Font pixel sizes of 8 and more are multiples of 8, so each font pixel
/// covers whole 8x8 blocks; below 8 they are 4, 2 or 1 so they tile them.
fn snap_cell(c: usize) -> usize {
    match c {
        8.. => c & !7,
        4..=7 => 4,
        2..=3 => 2,
        _ => c,
    }
}

fn round_up(v: usize, to: usize) -> usize {
    v.div_ceil(to) * to
}

impl Layout {
    /// `frame_units` is the width of the frame line now, `frame_units_max`
    /// the width it is sized for, so its font does not shrink each time
    /// the counter gains a digit.
    fn new(
        (w, h): (usize, usize),
        clock_units: usize,
        frame_units_max: usize,
        frame_units: usize,
    ) -> Layout {
        let bar_w = ((w / 8) & !(MCU_PX - 1)).max(MCU_PX);
        let square_side = ((w.min(h) / 8) & !(MCU_PX - 1)).max(MCU_PX);
        // A ramp needs room for the panel above it; 64 rows is 4 MCUs.
        let ramp_top = (h >= 64).then(|| (h - MCU_PX) & !(MCU_PX - 1));
        let mut layout = Layout {
            bar_w,
            square_side,
            ramp_top,
            panel: None,
            title: None,
            clock: None,
            frame_line: None,
        };
        // Leave some bars visible at the sides and above and below.
        let avail_w = w - w / 8;
        let area_h = ramp_top.unwrap_or(h);
        let avail_h = area_h - area_h / 8;
        let clock_cell = snap_cell((avail_w / clock_units.max(1)).min(area_h * 2 / 5 / GLYPH_ROWS));
        if clock_cell == 0 {
            return layout;
        }
        let small_pref = if clock_cell >= 16 {
            (clock_cell / 2) & !7
        } else {
            clock_cell
        };
        let fit = |units: usize| snap_cell((avail_w / units.max(1)).min(small_pref));
        let mut title_cell = fit(text_units(TITLE));
        let mut frame_cell = fit(frame_units_max);
        // Line tops are rounded up to 8 rows so big font pixels fill whole
        // blocks.
        let (pad, gap) = if clock_cell >= 8 {
            (16, round_up(clock_cell * 3 / 2, 8))
        } else {
            (2 * clock_cell, clock_cell)
        };
        let content_h = |title: usize, frame: usize| {
            let mut y = 0;
            if title > 0 {
                y = round_up(GLYPH_ROWS * title + gap, 8);
            }
            y += GLYPH_ROWS * clock_cell;
            if frame > 0 {
                y = round_up(y + gap, 8) + GLYPH_ROWS * frame;
            }
            y
        };
        if content_h(title_cell, frame_cell) + 2 * pad > avail_h {
            title_cell = 0;
        }
        if content_h(title_cell, frame_cell) + 2 * pad > avail_h {
            frame_cell = 0;
        }
        let text_h = content_h(title_cell, frame_cell);
        let text_w = (clock_units * clock_cell)
            .max(text_units(TITLE) * title_cell)
            .max(frame_units_max * frame_cell);
        let panel_w = round_up(text_w + 2 * pad, MCU_PX).min(w & !(MCU_PX - 1));
        let panel_h = round_up(text_h + 2 * pad, MCU_PX);
        let x0 = (w.saturating_sub(panel_w) / 2) & !(MCU_PX - 1);
        let y0 = (area_h.saturating_sub(panel_h) / 2) & !(MCU_PX - 1);
        layout.panel = Some((x0, y0, x0 + panel_w, y0 + panel_h));
        let centred =
            |units: usize, cell: usize| x0 + ((panel_w.saturating_sub(units * cell) / 2) & !7);
        let mut y = y0 + (((panel_h - text_h) / 2) & !7);
        if title_cell > 0 {
            layout.title = Some(TextPos {
                x: centred(text_units(TITLE), title_cell),
                y,
                cell: title_cell,
            });
            y = round_up(y + GLYPH_ROWS * title_cell + gap, 8);
        }
        layout.clock = Some(TextPos {
            x: centred(clock_units, clock_cell),
            y,
            cell: clock_cell,
        });
        if frame_cell > 0 {
            layout.frame_line = Some(TextPos {
                x: centred(frame_units, frame_cell),
                y: round_up(y + GLYPH_ROWS * clock_cell + gap, 8),
                cell: frame_cell,
            });
        }
        layout
    }
}

/// Writes `v` in decimal into the end of `buf`, returns the digits.
fn format_u64(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
        start -= 1;
        if v == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or(&[])
}

/// `HH:MM:SS.mmm` in UTC for microseconds since the Unix epoch (UTC days
/// are 86400 s: POSIX time has no leap seconds).
fn format_clock(unix_us: u64) -> [u8; 12] {
    let ms = unix_us / 1000;
    let day_s = (ms / 1000) % 86_400;
    let fields = [day_s / 3600, (day_s / 60) % 60, day_s % 60];
    let mut out = *b"00:00:00.000";
    for (i, f) in fields.iter().enumerate() {
        if let Some(pair) = out.get_mut(i * 3..i * 3 + 2) {
            pair.copy_from_slice(&[b'0' + (f / 10) as u8, b'0' + (f % 10) as u8]);
        }
    }
    let milli = ms % 1000;
    if let Some(tail) = out.get_mut(9..12) {
        tail.copy_from_slice(&[
            b'0' + (milli / 100) as u8,
            b'0' + (milli / 10 % 10) as u8,
            b'0' + (milli % 10) as u8,
        ]);
    }
    out
}

/// Huffman bit sink with 0xFF byte stuffing (F.1.2.3).
#[derive(Default)]
struct BitWriter {
    /// Pending bits are the low `n` bits (n < 32 between calls); higher
    /// bits are stale.
    acc: u64,
    n: u32,
}

impl BitWriter {
    /// Appends the low `len` bits of `bits` (len <= 32, bits < 2^len).
    /// Whole 32-bit words go out at once; most words hold no 0xFF.
    #[inline]
    fn put(&mut self, bits: u32, len: u32, out: &mut Vec<u8>) {
        self.acc = (self.acc << len) | u64::from(bits);
        self.n += len;
        if self.n >= 32 {
            self.n -= 32;
            let word = ((self.acc >> self.n) as u32).to_be_bytes();
            if word.contains(&0xFF) {
                for byte in word {
                    out.push(byte);
                    // F.1.2.3: a 0xFF in entropy-coded data is followed by
                    // 0x00 so it is not read as a marker.
                    if byte == 0xFF {
                        out.push(0x00);
                    }
                }
            } else {
                out.extend_from_slice(&word);
            }
        }
    }

    /// B.1.1.5 / F.1.2.3: pad the last byte with 1-bits, then write out
    /// whatever is pending.
    fn flush(&mut self, out: &mut Vec<u8>) {
        let pad = (8 - self.n % 8) % 8;
        self.acc = (self.acc << pad) | ((1 << pad) - 1);
        self.n += pad;
        while self.n >= 8 {
            self.n -= 8;
            let byte = (self.acc >> self.n) as u8;
            out.push(byte);
            if byte == 0xFF {
                out.push(0x00);
            }
        }
    }
}

/// F.1.2.1.1 Table F.1 category (SSSS) of `v` and its additional bits:
/// the low bits of v, or of v - 1 when v is negative.
#[inline]
fn magnitude(v: i32) -> (u32, u32) {
    let size = 32 - v.unsigned_abs().leading_zeros();
    let mask = (1u32 << size) - 1;
    let bits = if v < 0 { (v - 1) as u32 } else { v as u32 };
    (size, bits & mask)
}

/// Tables for one component.
struct Coding<'a> {
    /// Quantization table number (as in DQT and SOF0).
    table: u8,
    quant: &'a QuantTable,
    dc: &'a HuffCodes,
    ac: &'a HuffCodes,
}

/// What one frame shows, worked out once per frame and then drawn one
/// MCU row (band) at a time.
struct Scene {
    layout: Layout,
    /// Square's left, top and side.
    square: (usize, usize, usize),
    clock: [u8; 12],
    frame_line: [u8; FRAME_LABEL.len() + 20],
    frame_line_len: usize,
}

/// The test pattern source. Draws and encodes one band of 16 rows at a
/// time, so its working set stays in the CPU cache whatever the frame
/// size; holds every buffer it needs, so `render` allocates nothing.
pub struct TestPattern {
    width: u32,
    height: u32,
    /// Image size in samples.
    w: usize,
    h: usize,
    /// Image size padded to whole MCUs (A.2.4).
    pw: usize,
    ph: usize,
    /// The band being drawn: Y at pw x 16, Cb and Cr at pw/2 x 8 (4:2:0).
    y: Vec<u8>,
    cb: Vec<u8>,
    cr: Vec<u8>,
    /// One row of the bars in Y, Cb and Cr, redrawn per frame; every band
    /// starts as copies of it.
    bar_y: Vec<u8>,
    bar_cb: Vec<u8>,
    bar_cr: Vec<u8>,
    /// The ramp's two kinds of rows, smooth and stepped; fixed per size.
    ramp_smooth: Vec<u8>,
    ramp_steps: Vec<u8>,
    /// Flatness words for one band: Y upper half, Y lower half (pw/8
    /// each), Cb and Cr (pw/16 each). See `band_diffs`.
    band_diffs: Vec<u64>,
    /// APP0 (JFIF), DQT, SOF0, DHT and SOS: the same for every frame.
    header: Vec<u8>,
    luma: QuantTable,
    chroma: QuantTable,
    transform: Transform,
}

/// The state of the scan across bands.
#[derive(Default)]
struct Scan {
    bits: BitWriter,
    /// F.1.2.1.3: DC predictions, one per component.
    pred_y: i32,
    pred_cb: i32,
    pred_cr: i32,
}

impl TestPattern {
    /// Width and height are clamped to 16..=4096, quality to 1..=100.
    pub fn new(width: u32, height: u32, quality: u8) -> Self {
        let width = width.clamp(MIN_SIDE_PX, MAX_SIDE_PX);
        let height = height.clamp(MIN_SIDE_PX, MAX_SIDE_PX);
        let w = width as usize;
        let h = height as usize;
        let pw = round_up(w, MCU_PX);
        let ph = round_up(h, MCU_PX);
        let cs = pw / 2;
        let luma = QuantTable::new(&K1_LUMA, quality);
        let chroma = QuantTable::new(&K2_CHROMA, quality);
        let header = encode_header(width, height, &luma, &chroma);
        // The ramp spans the image width; the stepped rows take the value
        // at the middle of each block.
        let span = w - 1;
        let range = usize::from(RAMP_HI - RAMP_LO);
        let ramp = |x: usize| RAMP_LO + u8::try_from(x.min(span) * range / span).unwrap_or(0);
        TestPattern {
            width,
            height,
            w,
            h,
            pw,
            ph,
            y: vec![0; pw * MCU_PX],
            cb: vec![NEUTRAL; cs * MCU_PX / 2],
            cr: vec![NEUTRAL; cs * MCU_PX / 2],
            bar_y: vec![0; pw],
            bar_cb: vec![NEUTRAL; cs],
            bar_cr: vec![NEUTRAL; cs],
            ramp_smooth: (0..pw).map(ramp).collect(),
            ramp_steps: (0..pw).map(|x| ramp((x & !7) + 4)).collect(),
            band_diffs: vec![0; pw / 8 * 2 + cs / 8 * 2],
            header,
            luma,
            chroma,
            transform: Transform::new(),
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Appends one complete baseline JPEG (SOI … EOI) to `out`.
    /// `unix_us` is wall-clock microseconds since the Unix epoch; the clock
    /// drawn is UTC HH:MM:SS.mmm from it. `frame_no` moves the bars and the
    /// square one step and is printed, so a dropped frame shows.
    pub fn render(&mut self, frame_no: u64, unix_us: u64, out: &mut Vec<u8>) {
        let scene = self.scene(frame_no, unix_us);
        out.extend_from_slice(&[0xFF, 0xD8]); // SOI
        encode_com(unix_us, out);
        out.extend_from_slice(&self.header);
        let mut scan = Scan::default();
        for band in (0..self.ph).step_by(MCU_PX) {
            self.draw_band(&scene, band);
            self.encode_band(&mut scan, out);
        }
        scan.bits.flush(out);
        out.extend_from_slice(&[0xFF, 0xD9]); // EOI
    }

    fn layout(&self, frame_digits: usize) -> Layout {
        let clock_units = text_units(b"00:00:00.000");
        let frame_units =
            |digits: usize| text_units(FRAME_LABEL) + digits * (glyph_width(b'0') + 1);
        let frame_units_max = frame_units(frame_digits.max(FRAME_DIGITS_FOR_LAYOUT));
        Layout::new(
            (self.w, self.h),
            clock_units,
            frame_units_max,
            frame_units(frame_digits),
        )
    }

    /// Works out the frame and draws the row of bars every band starts from.
    fn scene(&mut self, frame_no: u64, unix_us: u64) -> Scene {
        let mut digits_buf = [0u8; 20];
        let digits = format_u64(frame_no, &mut digits_buf);
        let layout = self.layout(digits.len());
        let mut frame_line = [b' '; FRAME_LABEL.len() + 20];
        let (label, num) = frame_line.split_at_mut(FRAME_LABEL.len());
        label.copy_from_slice(FRAME_LABEL);
        let n = digits.len().min(num.len());
        if let (Some(dst), Some(src)) = (num.get_mut(..n), digits.get(..n)) {
            dst.copy_from_slice(src);
        }
        // A square bouncing one MCU per frame each way, above the panel
        // (it would hide behind it), or anywhere if there is no room.
        let side = layout.square_side;
        let room = match layout.panel {
            Some((_, y0, _, _)) if y0 >= side => y0,
            _ => self.h,
        };
        let x = bounce(frame_no, self.w.saturating_sub(side) / MCU_PX) * MCU_PX;
        let y = bounce(frame_no, room.saturating_sub(side) / MCU_PX) * MCU_PX;
        self.draw_bar_row(frame_no, layout.bar_w);
        Scene {
            layout,
            square: (x, y, side),
            clock: format_clock(unix_us),
            frame_line,
            frame_line_len: FRAME_LABEL.len() + n,
        }
    }

    /// Vertical bars over the whole frame, moving right one MCU per frame
    /// (bar edges stay on the MCU grid, so every block is flat).
    fn draw_bar_row(&mut self, frame_no: u64, bar_w: usize) {
        let period = bar_w * BARS.len();
        let steps = (period / MCU_PX).max(1) as u64;
        let offset = (frame_no % steps) as usize * MCU_PX;
        let bar_at = |x: usize| {
            let i = ((x + period - offset) / bar_w) % BARS.len();
            BARS.get(i).copied().unwrap_or(PANEL)
        };
        for (x, s) in self.bar_y.iter_mut().enumerate() {
            *s = bar_at(x).y;
        }
        let row = self.bar_cb.iter_mut().zip(self.bar_cr.iter_mut());
        for (cx, (cb, cr)) in row.enumerate() {
            let c = bar_at(2 * cx);
            *cb = c.cb;
            *cr = c.cr;
        }
    }

    /// Draws rows `band..band + 16` of the frame into the band buffers:
    /// bars, square, ramp, panel, text, then the edge padding.
    fn draw_band(&mut self, scene: &Scene, band: usize) {
        let cs = self.pw / 2;
        for row in self.y.chunks_exact_mut(self.pw) {
            row.copy_from_slice(&self.bar_y);
        }
        for (cb, cr) in self
            .cb
            .chunks_exact_mut(cs)
            .zip(self.cr.chunks_exact_mut(cs))
        {
            cb.copy_from_slice(&self.bar_cb);
            cr.copy_from_slice(&self.bar_cr);
        }
        let (x, y, side) = scene.square;
        self.fill_rect((x, y, x + side, y + side), SQUARE, band);
        let layout = &scene.layout;
        if let Some(top) = layout.ramp_top {
            self.draw_ramp(top, band);
        }
        if let Some(rect) = layout.panel {
            self.fill_rect(rect, PANEL, band);
        }
        if let Some(p) = layout.title {
            self.draw_text(TITLE, p, SMALL_TEXT, band);
        }
        if let Some(p) = layout.clock {
            self.draw_text(&scene.clock, p, CLOCK_TEXT, band);
        }
        if let Some(p) = layout.frame_line {
            let line = scene.frame_line.get(..scene.frame_line_len);
            self.draw_text(line.unwrap_or(&[]), p, SMALL_TEXT, band);
        }
        // A.2.4 leaves the samples that pad a frame to whole MCUs to the
        // encoder; repeating the last column and row keeps the padding
        // blocks flat (cheap) and free of ringing at the picture's edge.
        let rows = self.h.min(band + MCU_PX) - band;
        replicate(&mut self.y, self.pw, MCU_PX, self.w, rows);
        let (cw, ch) = (self.w.div_ceil(2), self.h.div_ceil(2));
        let crows = ch.min((band + MCU_PX) / 2) - band / 2;
        replicate(&mut self.cb, cs, MCU_PX / 2, cw, crows);
        replicate(&mut self.cr, cs, MCU_PX / 2, cw, crows);
    }

    /// A grey ramp from `top` to the bottom: its upper 8 rows are smooth,
    /// so their blocks are not flat and each frame exercises the DCT path;
    /// the rows below step once per block, so they cost nothing.
    fn draw_ramp(&mut self, top: usize, band: usize) {
        let (first, end) = (top.max(band), self.h.min(band + MCU_PX));
        if first >= end {
            return;
        }
        let rows = self.y.chunks_exact_mut(self.pw);
        for (row, dst) in (band..end).zip(rows).skip(first - band) {
            let src = if row < top + 8 {
                &self.ramp_smooth
            } else {
                &self.ramp_steps
            };
            dst.copy_from_slice(src);
        }
        let cs = self.pw / 2;
        let chroma_rows = (first / 2..end.div_ceil(2)).map(|r| r - band / 2);
        for r in chroma_rows {
            for plane in [&mut self.cb, &mut self.cr] {
                if let Some(s) = plane.get_mut(r * cs..(r + 1) * cs) {
                    s.fill(NEUTRAL);
                }
            }
        }
    }

    fn draw_text(&mut self, text: &[u8], pos: TextPos, colour: Ycc, band: usize) {
        let cell = pos.cell;
        if pos.y >= band + MCU_PX || pos.y + GLYPH_ROWS * cell <= band {
            return;
        }
        let mut pen = pos.x;
        for &ch in text {
            let g = glyph_bits(ch);
            for (r, &row) in g.rows.iter().enumerate() {
                let y0 = pos.y + r * cell;
                if y0 >= band + MCU_PX || y0 + cell <= band {
                    continue;
                }
                // One rectangle per run of lit font pixels.
                let mut bits = u32::from(row);
                while bits != 0 {
                    let start = bits.trailing_zeros();
                    let run = (!(bits >> start)).trailing_zeros();
                    bits &= !(((1 << run) - 1) << start);
                    let (c0, c1) = (start as usize, (start + run) as usize);
                    let rect = (pen + c0 * cell, y0, pen + c1 * cell, y0 + cell);
                    self.fill_rect(rect, colour, band);
                }
            }
            pen += (usize::from(g.width) + 1) * cell;
        }
    }

    /// Fills [x0, x1) x [y0, y1) of the frame, clipped to the image and to
    /// the band starting at row `band`, in all three planes.
    fn fill_rect(&mut self, (x0, y0, x1, y1): (usize, usize, usize, usize), c: Ycc, band: usize) {
        let (x1, y0, y1) = (
            x1.min(self.w),
            y0.max(band),
            y1.min(self.h).min(band + MCU_PX),
        );
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        for row in y0 - band..y1 - band {
            let o = row * self.pw;
            if let Some(s) = self.y.get_mut(o + x0..o + x1) {
                s.fill(c.y);
            }
        }
        let cs = self.pw / 2;
        let (cx0, cx1) = (x0 / 2, x1.div_ceil(2));
        for row in y0 / 2 - band / 2..y1.div_ceil(2) - band / 2 {
            let o = row * cs;
            if let Some(s) = self.cb.get_mut(o + cx0..o + cx1) {
                s.fill(c.cb);
            }
            if let Some(s) = self.cr.get_mut(o + cx0..o + cx1) {
                s.fill(c.cr);
            }
        }
    }

    /// One row of MCUs of the scan, from the band buffers: MCUs left to
    /// right, each Y00 Y01 Y10 Y11 Cb Cr (A.2.3). One interleaved scan for
    /// the frame, no restart intervals.
    fn encode_band(&mut self, scan: &mut Scan, out: &mut Vec<u8>) {
        let luma = Coding {
            table: 0,
            quant: &self.luma,
            dc: &DC_LUMA,
            ac: &AC_LUMA,
        };
        let chroma = Coding {
            table: 1,
            quant: &self.chroma,
            dc: &DC_CHROMA,
            ac: &AC_CHROMA,
        };
        let dct = &mut self.transform;
        // The commonest MCU by far continues the one before it: six flat
        // blocks, each with the DC of the block before it in its component,
        // so six zero differences and EOBs, a constant bit pattern.
        let repeat_luma = repeat_codes(&luma, 4);
        let repeat_chroma = repeat_codes(&chroma, 2);
        let (pw, cs) = (self.pw, self.pw / 2);
        let (upper, rest) = self.band_diffs.split_at_mut(pw / 8);
        let (lower, rest) = rest.split_at_mut(pw / 8);
        let (diff_cb, diff_cr) = rest.split_at_mut(cs / 8);
        band_diffs(&self.y, pw, 0, upper);
        band_diffs(&self.y, pw, 8, lower);
        band_diffs(&self.cb, cs, 0, diff_cb);
        band_diffs(&self.cr, cs, 0, diff_cr);
        let Scan {
            bits,
            pred_y,
            pred_cb,
            pred_cr,
        } = scan;
        for mx in 0..pw / MCU_PX {
            let (x, o_c) = (mx * MCU_PX, mx * 8);
            let repeat = flat_dc(&self.y, x, upper.get(2 * mx), &luma) == Some(*pred_y)
                && flat_dc(&self.y, x + 8, upper.get(2 * mx + 1), &luma) == Some(*pred_y)
                && flat_dc(&self.y, 8 * pw + x, lower.get(2 * mx), &luma) == Some(*pred_y)
                && flat_dc(&self.y, 8 * pw + x + 8, lower.get(2 * mx + 1), &luma) == Some(*pred_y)
                && flat_dc(&self.cb, o_c, diff_cb.get(mx), &chroma) == Some(*pred_cb)
                && flat_dc(&self.cr, o_c, diff_cr.get(mx), &chroma) == Some(*pred_cr);
            if repeat {
                bits.put(repeat_luma.0, repeat_luma.1, out);
                bits.put(repeat_chroma.0, repeat_chroma.1, out);
                continue;
            }
            let units = [
                (2 * mx, 0, &*upper),
                (2 * mx + 1, 0, &*upper),
                (2 * mx, 8, &*lower),
                (2 * mx + 1, 8, &*lower),
            ];
            for (bx, by, diffs) in units {
                let unit = (&self.y[..], pw, bx, by, diffs);
                encode_unit(unit, &luma, dct, pred_y, bits, out);
            }
            let unit = (&self.cb[..], cs, mx, 0, &*diff_cb);
            encode_unit(unit, &chroma, dct, pred_cb, bits, out);
            let unit = (&self.cr[..], cs, mx, 0, &*diff_cr);
            encode_unit(unit, &chroma, dct, pred_cr, bits, out);
        }
    }
}

/// The quantized DC of the block at offset `o` if its flatness word says
/// it is flat.
#[inline(always)]
fn flat_dc(plane: &[u8], o: usize, diff: Option<&u64>, coding: &Coding) -> Option<i32> {
    match (diff, plane.get(o)) {
        (Some(0), Some(&v)) => coding
            .quant
            .flat_dc
            .get(usize::from(v))
            .map(|&d| i32::from(d)),
        _ => None,
    }
}

/// Code and length of `n` flat blocks in a row with zero DC differences
/// (n * at most 13 bits, so n <= 2 for any table, n <= 4 for K.3 luma's
/// 6 bits).
fn repeat_codes(coding: &Coding, n: u32) -> (u32, u32) {
    let (dc_code, dc_len) = coding.dc.get(0);
    let (eob_code, eob_len) = coding.ac.get(EOB);
    let unit = (dc_code << eob_len) | eob_code;
    let len = dc_len + eob_len;
    (0..n).fold((0, 0), |(code, total), _| {
        ((code << len) | unit, total + len)
    })
}

/// F.1.2: one 8x8 block — block column `bx` of the band of rows starting at
/// `y`, whose flatness `diffs` holds — coded as the DC difference from the
/// previous block of the same component, then the AC run/size codes.
#[inline(always)]
fn encode_unit(
    (plane, stride, bx, y, diffs): (&[u8], usize, usize, usize, &[u64]),
    coding: &Coding,
    transform: &mut Transform,
    pred: &mut i32,
    bits: &mut BitWriter,
    out: &mut Vec<u8>,
) {
    let o = y * stride + bx * 8;
    if let (Some(0), Some(&v)) = (diffs.get(bx), plane.get(o)) {
        // The fast path: a flat block is its DC term alone, so its code is
        // the DC difference and EOB, in one write.
        let dc = i32::from(
            coding
                .quant
                .flat_dc
                .get(usize::from(v))
                .copied()
                .unwrap_or(0),
        );
        let (size, extra) = magnitude(dc - *pred);
        *pred = dc;
        let (dc_code, dc_len) = coding.dc.get(size as u8);
        let (eob_code, eob_len) = coding.ac.get(EOB);
        let code = (((dc_code << size) | extra) << eob_len) | eob_code;
        bits.put(code, dc_len + size + eob_len, out);
    } else {
        let blk = load_block(plane, stride, bx * 8, y);
        encode_dct_unit(&blk, coding, transform, pred, bits, out);
    }
}

/// The general path: the DC difference, then the block's AC codes, from
/// the cache or from the FDCT. Kept out of line so the flat path stays
/// small.
#[inline(never)]
fn encode_dct_unit(
    blk: &[u8; 64],
    coding: &Coding,
    transform: &mut Transform,
    pred: &mut i32,
    bits: &mut BitWriter,
    out: &mut Vec<u8>,
) {
    let slot = cache_slot(blk, coding.table);
    let cached = transform
        .cache
        .get(slot)
        .filter(|c| c.valid && c.table == coding.table && c.samples == *blk);
    if let Some(c) = cached {
        encode_dc(i32::from(c.dc), pred, coding, bits, out);
        c.ac.replay(bits, out);
        return;
    }
    let (dc, zz) = transform.coefficients(blk, coding.quant);
    encode_dc(dc, pred, coding, bits, out);
    let mut ac = AcBits::default();
    encode_ac(&zz, coding, |code, len| ac.push(code, len));
    if ac.overflow {
        // Too many bits to keep: code them straight out.
        encode_ac(&zz, coding, |code, len| bits.put(code, len, out));
        return;
    }
    ac.replay(bits, out);
    if let Some(c) = transform.cache.get_mut(slot) {
        *c = CachedBlock {
            valid: true,
            table: coding.table,
            dc: dc as i16,
            samples: *blk,
            ac,
        };
    }
}

/// F.1.2.1: the DC difference's category code and additional bits.
#[inline]
fn encode_dc(dc: i32, pred: &mut i32, coding: &Coding, bits: &mut BitWriter, out: &mut Vec<u8>) {
    let (size, extra) = magnitude(dc - *pred);
    *pred = dc;
    let (code, len) = coding.dc.get(size as u8);
    bits.put((code << size) | extra, len + size, out);
}

/// F.1.2.2: the AC coefficients (zig-zag order, `zz[0]` unused) as run /
/// size codes with additional bits, ZRL for each 16 zeros, EOB unless the
/// last coefficient is non-zero. Each code goes to `emit`.
fn encode_ac(zz: &[i16; 64], coding: &Coding, mut emit: impl FnMut(u32, u32)) {
    let mut nonzero = 0u64;
    for (k, &z) in zz.iter().enumerate().skip(1) {
        nonzero |= u64::from(z != 0) << k;
    }
    let mut last = 0;
    while nonzero != 0 {
        let k = nonzero.trailing_zeros();
        nonzero &= nonzero - 1;
        let mut run = k - last - 1;
        last = k;
        while run >= 16 {
            let (code, len) = coding.ac.get(ZRL);
            emit(code, len);
            run -= 16;
        }
        let (size, extra) = magnitude(i32::from(zz.get(k as usize).copied().unwrap_or(0)));
        let (code, len) = coding.ac.get(((run as u8) << 4) | size as u8);
        emit((code << size) | extra, len + size);
    }
    if last != 63 {
        let (code, len) = coding.ac.get(EOB);
        emit(code, len);
    }
}

/// Bits a block's AC codes may take in the cache; text and ramp blocks
/// take far fewer, and a busier block is simply coded each time.
const AC_CACHE_WORDS: usize = 8;

/// A block's AC codes as a bit string, most significant bit first.
#[derive(Clone, Copy, Default)]
struct AcBits {
    words: [u32; AC_CACHE_WORDS],
    len: u32,
    overflow: bool,
}

impl AcBits {
    /// Appends the low `n` bits of `bits` (n <= 32 - 5: one Huffman code
    /// of at most 16 bits and at most 11 additional bits).
    fn push(&mut self, bits: u32, n: u32) {
        if self.overflow || self.len + n > 32 * AC_CACHE_WORDS as u32 {
            self.overflow = true;
            return;
        }
        let (idx, off) = ((self.len / 32) as usize, self.len % 32);
        // Place the bits in a 64-bit window over words idx and idx + 1.
        let v = u64::from(bits) << (64 - off - n);
        if let Some(w) = self.words.get_mut(idx) {
            *w |= (v >> 32) as u32;
        }
        if off + n > 32
            && let Some(w) = self.words.get_mut(idx + 1)
        {
            *w |= v as u32;
        }
        self.len += n;
    }

    fn replay(&self, bits: &mut BitWriter, out: &mut Vec<u8>) {
        let full = (self.len / 32) as usize;
        for &w in self.words.iter().take(full) {
            bits.put(w, 32, out);
        }
        let rest = self.len % 32;
        if rest > 0
            && let Some(&w) = self.words.get(full)
        {
            bits.put(w >> (32 - rest), rest, out);
        }
    }
}

/// A non-flat block seen before: its samples, which quantization table,
/// its quantized DC and its AC codes.
#[derive(Clone, Copy)]
struct CachedBlock {
    valid: bool,
    table: u8,
    dc: i16,
    samples: [u8; 64],
    ac: AcBits,
}

/// Slots in the block cache: 1024 * 104 bytes. The ramp and the text are
/// the same blocks frame after frame (about a hundred distinct ones at
/// 640x480), so most non-flat blocks skip the DCT and the AC coding; a
/// collision only costs a DCT.
const DCT_CACHE_SLOTS: usize = 1024;

/// The cache slot of a block's samples coded with quantization `table`.
fn cache_slot(blk: &[u8; 64], table: u8) -> usize {
    let mut h = u64::from(table) + 1;
    for c in blk.as_chunks::<8>().0 {
        h = (h ^ u64::from_le_bytes(*c)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    (h >> 32) as usize % DCT_CACHE_SLOTS
}

/// The forward DCT and the block cache.
struct Transform {
    /// DCT basis C[u][x] = c(u)/2 * cos((2x+1)uπ/16), c(0) = 1/√2 (A.3.3),
    /// row u, and its transpose.
    basis: [f32; 64],
    basis_t: [f32; 64],
    cache: Vec<CachedBlock>,
}

impl Transform {
    fn new() -> Transform {
        let mut basis = [0.0f32; 64];
        let mut basis_t = [0.0f32; 64];
        for (i, b) in basis.iter_mut().enumerate() {
            let (u, x) = (i / 8, i % 8);
            let cu = if u == 0 {
                std::f64::consts::FRAC_1_SQRT_2
            } else {
                1.0
            };
            let angle = ((2 * x + 1) * u) as f64 * std::f64::consts::PI / 16.0;
            *b = (cu / 2.0 * angle.cos()) as f32;
            if let Some(t) = basis_t.get_mut(x * 8 + u) {
                *t = *b;
            }
        }
        let empty = CachedBlock {
            valid: false,
            table: 0,
            dc: 0,
            samples: [0; 64],
            ac: AcBits::default(),
        };
        Transform {
            basis,
            basis_t,
            cache: vec![empty; DCT_CACHE_SLOTS],
        }
    }

    /// A.3.1 level shift, A.3.3 FDCT, A.3.4 quantization: the quantized DC
    /// and all coefficients in zig-zag order.
    fn coefficients(&self, blk: &[u8; 64], quant: &QuantTable) -> (i32, [i16; 64]) {
        let mut samples = [0.0f32; 64];
        for (d, &s) in samples.iter_mut().zip(blk.iter()) {
            *d = f32::from(s) - 128.0;
        }
        let coef = fdct(&samples, &self.basis, &self.basis_t);
        // Round to nearest in natural order (so it vectorises); the clamp
        // keeps values codable (and `as` never sees NaN).
        let mut q = [0i16; 64];
        for ((q, &c), &r) in q.iter_mut().zip(coef.iter()).zip(quant.recip.iter()) {
            let v = (c * r).clamp(-MAX_AC as f32, MAX_AC as f32);
            *q = (v + 0.5f32.copysign(v)) as i16;
        }
        // Zig-zag order (Figure A.6).
        let mut zz = [0i16; 64];
        for (z, &nat) in zz.iter_mut().zip(ZIGZAG.iter()) {
            *z = q.get(usize::from(nat)).copied().unwrap_or(0);
        }
        (i32::from(zz[0]).clamp(-MAX_DC, MAX_DC), zz)
    }
}

/// For the band of 8 rows starting at `row0`, one word per 8x8 block that
/// is zero exactly when the block is flat. Streams over whole rows, which
/// is several times faster than testing block by block.
fn band_diffs(plane: &[u8], stride: usize, row0: usize, diffs: &mut [u64]) {
    let Some(band) = plane.get(row0 * stride..(row0 + 8) * stride) else {
        diffs.fill(u64::MAX);
        return;
    };
    let (first, rest) = band.split_at(stride.min(band.len()));
    let (first, _) = first.as_chunks::<8>();
    for (d, c) in diffs.iter_mut().zip(first) {
        let v = u64::from_ne_bytes(*c);
        // Every byte of the first row against one of them.
        *d = v ^ (v & 0xFF).wrapping_mul(0x0101_0101_0101_0101);
    }
    for row in rest.chunks_exact(stride) {
        let (words, _) = row.as_chunks::<8>();
        for ((d, a), b) in diffs.iter_mut().zip(words).zip(first) {
            *d |= u64::from_ne_bytes(*a) ^ u64::from_ne_bytes(*b);
        }
    }
}

/// A.3.3 forward DCT as two passes of 8x8 matrix products, F = C·S·Cᵀ,
/// written as multiply-adds of whole rows so the compiler vectorises them.
fn fdct(s: &[f32; 64], basis: &[f32; 64], basis_t: &[f32; 64]) -> [f32; 64] {
    // Rows: t[y][u] = Σx s[y][x]·C[u][x].
    let mut t = [0.0f32; 64];
    for (t_row, s_row) in t.chunks_exact_mut(8).zip(s.chunks_exact(8)) {
        for (&sx, ct_row) in s_row.iter().zip(basis_t.chunks_exact(8)) {
            for (tu, &c) in t_row.iter_mut().zip(ct_row) {
                *tu += sx * c;
            }
        }
    }
    // Columns: F[v][u] = Σy C[v][y]·t[y][u].
    let mut f = [0.0f32; 64];
    for (f_row, c_row) in f.chunks_exact_mut(8).zip(basis.chunks_exact(8)) {
        for (&c, t_row) in c_row.iter().zip(t.chunks_exact(8)) {
            for (fu, &tu) in f_row.iter_mut().zip(t_row) {
                *fu += c * tu;
            }
        }
    }
    f
}

/// The 8x8 block at (x, y) of a plane with `stride` samples per row.
fn load_block(plane: &[u8], stride: usize, x: usize, y: usize) -> [u8; 64] {
    let mut blk = [0u8; 64];
    for (r, dst) in blk.chunks_exact_mut(8).enumerate() {
        let o = (y + r) * stride + x;
        if let Some(src) = plane.get(o..o + 8) {
            dst.copy_from_slice(src);
        }
    }
    blk
}

/// Copies row `src` of a plane over each row in `dst` (all below `src`).
fn copy_row_down(plane: &mut [u8], stride: usize, src: usize, dst: std::ops::Range<usize>) {
    if dst.start <= src || dst.is_empty() {
        return;
    }
    let (head, tail) = plane.split_at_mut((dst.start * stride).min(plane.len()));
    let Some(from) = head.get(src * stride..(src + 1) * stride) else {
        return;
    };
    for row in tail.chunks_exact_mut(stride).take(dst.len()) {
        row.copy_from_slice(from);
    }
}

/// Fills a plane's padding (columns w.., rows h..) from its last real
/// column and row.
fn replicate(plane: &mut [u8], stride: usize, rows: usize, w: usize, h: usize) {
    if w == 0 || h == 0 {
        return;
    }
    if w < stride {
        for row in plane.chunks_exact_mut(stride).take(h) {
            if let Some((last, pad)) = row.get_mut(w - 1..).and_then(|r| r.split_first_mut()) {
                pad.fill(*last);
            }
        }
    }
    copy_row_down(plane, stride, h - 1, h..rows);
}

/// Position 0..=max bouncing back and forth, one step per frame.
fn bounce(frame_no: u64, max: usize) -> usize {
    if max == 0 {
        return 0;
    }
    let period = 2 * max as u64;
    let p = (frame_no % period) as usize;
    if p <= max { p } else { 2 * max - p }
}

/// B.2.4.5 COM segment with the capture time, first after SOI.
fn encode_com(unix_us: u64, out: &mut Vec<u8>) {
    const PREFIX: &[u8] = b"picamd-ts=";
    let mut buf = [0u8; 20];
    let digits = format_u64(unix_us, &mut buf);
    let len = 2 + PREFIX.len() + digits.len();
    out.extend_from_slice(&[0xFF, 0xFE, (len >> 8) as u8, len as u8]);
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(digits);
}

/// Everything between COM and the entropy-coded data; fixed per instance.
fn encode_header(width: u32, height: u32, luma: &QuantTable, chroma: &QuantTable) -> Vec<u8> {
    let mut h = Vec::with_capacity(640);
    // JFIF APP0: version 1.01, no density units, aspect 1:1, no thumbnail.
    // Not required by T.81, but some decoders want it to know the samples
    // are YCbCr.
    h.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10]);
    h.extend_from_slice(b"JFIF\0");
    h.extend_from_slice(&[0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00]);
    // B.2.4.1 DQT: two 8-bit tables, 0 luma and 1 chroma.
    h.extend_from_slice(&[0xFF, 0xDB, 0x00, 2 + 2 * 65, 0x00]);
    h.extend_from_slice(&luma.dqt);
    h.push(0x01);
    h.extend_from_slice(&chroma.dqt);
    // B.2.2 SOF0 (baseline): 8-bit samples, three components; Y is
    // sampled 2x2 with table 0, Cb and Cr 1x1 with table 1 (4:2:0).
    h.extend_from_slice(&[0xFF, 0xC0, 0x00, 17, 8]);
    h.extend_from_slice(&(height as u16).to_be_bytes());
    h.extend_from_slice(&(width as u16).to_be_bytes());
    h.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    // B.2.4.2 DHT: the four K.3 tables in one segment.
    let tables: [(u8, &[u8; 16], &[u8]); 4] = [
        (0x00, &DC_LUMA_BITS, &DC_LUMA_VALS),
        (0x10, &AC_LUMA_BITS, &AC_LUMA_VALS),
        (0x01, &DC_CHROMA_BITS, &DC_CHROMA_VALS),
        (0x11, &AC_CHROMA_BITS, &AC_CHROMA_VALS),
    ];
    let len: usize = 2 + tables.iter().map(|t| 17 + t.2.len()).sum::<usize>();
    h.extend_from_slice(&[0xFF, 0xC4]);
    h.extend_from_slice(&(len as u16).to_be_bytes());
    for (class_id, bits, vals) in tables {
        h.push(class_id);
        h.extend_from_slice(bits);
        h.extend_from_slice(vals);
    }
    // B.2.3 SOS: all three components, Y with DC/AC tables 0, chroma 1;
    // Ss = 0, Se = 63, Ah = Al = 0 as baseline requires.
    h.extend_from_slice(&[0xFF, 0xDA, 0x00, 12, 3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- a small baseline decoder, for the tests only ----

    /// Decoder form of a Huffman table (T.81 F.2.2.3, Figure F.15).
    struct HuffDecode {
        maxcode: [i32; 17],
        mincode: [i32; 17],
        valptr: [i32; 17],
        vals: Vec<u8>,
    }

    fn huff_decode_table(bits: &[u8], vals: &[u8]) -> HuffDecode {
        let mut t = HuffDecode {
            maxcode: [-1; 17],
            mincode: [0; 17],
            valptr: [0; 17],
            vals: vals.to_vec(),
        };
        let (mut code, mut k) = (0i32, 0i32);
        for l in 1..=16 {
            let n = i32::from(bits[l - 1]);
            if n > 0 {
                t.valptr[l] = k;
                t.mincode[l] = code;
                code += n;
                k += n;
                t.maxcode[l] = code - 1;
            }
            code <<= 1;
        }
        t
    }

    struct BitReader<'a> {
        data: &'a [u8],
        pos: usize,
        bit: u32,
    }

    impl BitReader<'_> {
        fn bit(&mut self) -> i32 {
            let b = (self.data[self.pos] >> (7 - self.bit)) & 1;
            self.bit += 1;
            if self.bit == 8 {
                self.bit = 0;
                self.pos += 1;
            }
            i32::from(b)
        }
        fn bits(&mut self, n: u32) -> i32 {
            (0..n).fold(0, |acc, _| (acc << 1) | self.bit())
        }
        fn decode(&mut self, t: &HuffDecode) -> u8 {
            let mut code = 0;
            for l in 1..=16 {
                code = (code << 1) | self.bit();
                if t.maxcode[l] >= 0 && code <= t.maxcode[l] {
                    return t.vals[(t.valptr[l] + code - t.mincode[l]) as usize];
                }
            }
            panic!("no Huffman code matches at byte {}", self.pos);
        }
        /// F.2.2.1 RECEIVE + EXTEND.
        fn receive_extend(&mut self, s: u32) -> i32 {
            if s == 0 {
                return 0;
            }
            let v = self.bits(s);
            if v < 1 << (s - 1) {
                v - (1 << s) + 1
            } else {
                v
            }
        }
    }

    /// F.2.2: one block's coefficients in zig-zag order, DC undifferenced.
    fn decode_block(
        r: &mut BitReader,
        dc_t: &HuffDecode,
        ac_t: &HuffDecode,
        pred: &mut i32,
    ) -> [i32; 64] {
        let mut zz = [0i32; 64];
        let s = u32::from(r.decode(dc_t));
        *pred += r.receive_extend(s);
        zz[0] = *pred;
        let mut k = 1;
        while k < 64 {
            let rs = r.decode(ac_t);
            let (run, size) = (usize::from(rs >> 4), u32::from(rs & 15));
            if size == 0 {
                if run == 15 {
                    k += 16;
                    continue;
                }
                break; // EOB
            }
            k += run;
            zz[k] = r.receive_extend(size);
            k += 1;
        }
        assert!(k <= 64, "AC run past the block");
        zz
    }

    struct Decoded {
        width: usize,
        height: usize,
        /// Marker codes in order of appearance, SOI first.
        markers: Vec<u8>,
        com: Vec<u8>,
        /// Y (stride pw) and Cb, Cr (stride pw/2), padded to whole MCUs.
        planes: [Vec<u8>; 3],
        pw: usize,
    }

    fn be16(b: &[u8]) -> usize {
        usize::from(b[0]) << 8 | usize::from(b[1])
    }

    /// Decodes what our encoder writes: baseline, 3 components, 4:2:0.
    /// Panics (failing the test) on anything else or on trailing junk.
    fn decode(jpeg: &[u8]) -> Decoded {
        assert_eq!(jpeg[..2], [0xFF, 0xD8], "SOI");
        let mut markers = vec![0xD8];
        let mut i = 2;
        let mut qt = [[0u16; 64]; 4];
        let mut dc_tables: Vec<Option<HuffDecode>> = vec![None, None, None, None];
        let mut ac_tables: Vec<Option<HuffDecode>> = vec![None, None, None, None];
        let mut com = Vec::new();
        let (mut width, mut height) = (0, 0);
        let mut comps: Vec<(u8, u8, usize)> = Vec::new(); // id, sampling, tq
        let mut scan: Vec<(usize, usize)> = Vec::new(); // td, ta per component
        loop {
            assert_eq!(jpeg[i], 0xFF, "marker expected at {i}");
            let m = jpeg[i + 1];
            markers.push(m);
            let len = be16(&jpeg[i + 2..]);
            let seg = &jpeg[i + 4..i + 2 + len];
            match m {
                0xFE => com = seg.to_vec(),
                0xE0 => assert_eq!(&seg[..5], b"JFIF\0"),
                0xDB => {
                    let mut s = seg;
                    while !s.is_empty() {
                        assert_eq!(s[0] >> 4, 0, "8-bit tables only in baseline");
                        let t = usize::from(s[0] & 15);
                        for k in 0..64 {
                            qt[t][usize::from(ZIGZAG[k])] = u16::from(s[1 + k]);
                        }
                        s = &s[65..];
                    }
                }
                0xC0 => {
                    assert_eq!(seg[0], 8);
                    height = be16(&seg[1..]);
                    width = be16(&seg[3..]);
                    assert_eq!(seg[5], 3);
                    for c in 0..3 {
                        let o = 6 + 3 * c;
                        comps.push((seg[o], seg[o + 1], usize::from(seg[o + 2])));
                    }
                }
                0xC4 => {
                    let mut s = seg;
                    while !s.is_empty() {
                        let (class, id) = (s[0] >> 4, usize::from(s[0] & 15));
                        let bits = &s[1..17];
                        let n: usize = bits.iter().map(|&b| usize::from(b)).sum();
                        let t = huff_decode_table(bits, &s[17..17 + n]);
                        if class == 0 {
                            dc_tables[id] = Some(t);
                        } else {
                            ac_tables[id] = Some(t);
                        }
                        s = &s[17 + n..];
                    }
                }
                0xDA => {
                    assert_eq!(seg[0], 3);
                    for c in 0..3 {
                        assert_eq!(seg[1 + 2 * c], comps[c].0);
                        let t = seg[2 + 2 * c];
                        scan.push((usize::from(t >> 4), usize::from(t & 15)));
                    }
                    assert_eq!(seg[7..], [0, 63, 0]);
                    i += 2 + len;
                    break;
                }
                other => panic!("unexpected marker {other:02X}"),
            }
            i += 2 + len;
        }
        assert_eq!(
            comps.iter().map(|c| c.1).collect::<Vec<_>>(),
            [0x22, 0x11, 0x11]
        );
        // Entropy-coded data up to EOI, unstuffed (F.1.2.3).
        let mut data = Vec::new();
        loop {
            let b = jpeg[i];
            if b == 0xFF {
                let n = jpeg[i + 1];
                if n == 0x00 {
                    data.push(0xFF);
                    i += 2;
                    continue;
                }
                if n == 0xFF {
                    // B.1.1.2: a fill byte before a marker.
                    i += 1;
                    continue;
                }
                assert_eq!(n, 0xD9, "only EOI may end the scan");
                assert_eq!(i + 2, jpeg.len(), "EOI is the last thing");
                markers.push(0xD9);
                break;
            }
            data.push(b);
            i += 1;
        }
        let pw = width.div_ceil(16) * 16;
        let ph = height.div_ceil(16) * 16;
        let mut planes = [
            vec![0u8; pw * ph],
            vec![0u8; pw * ph / 4],
            vec![0u8; pw * ph / 4],
        ];
        let mut r = BitReader {
            data: &data,
            pos: 0,
            bit: 0,
        };
        let mut pred = [0i32; 3];
        for my in 0..ph / 16 {
            for mx in 0..pw / 16 {
                let units: [(usize, usize, usize); 6] = [
                    (0, mx * 16, my * 16),
                    (0, mx * 16 + 8, my * 16),
                    (0, mx * 16, my * 16 + 8),
                    (0, mx * 16 + 8, my * 16 + 8),
                    (1, mx * 8, my * 8),
                    (2, mx * 8, my * 8),
                ];
                for (c, x, y) in units {
                    let dc_t = dc_tables[scan[c].0].as_ref().unwrap();
                    let ac_t = ac_tables[scan[c].1].as_ref().unwrap();
                    let q = &qt[comps[c].2];
                    let zz = decode_block(&mut r, dc_t, ac_t, &mut pred[c]);
                    let mut coef = [0.0f64; 64];
                    for z in 0..64 {
                        let n = usize::from(ZIGZAG[z]);
                        coef[n] = f64::from(zz[z]) * f64::from(q[n]);
                    }
                    let stride = if c == 0 { pw } else { pw / 2 };
                    let px = idct(&coef);
                    for yy in 0..8 {
                        for xx in 0..8 {
                            planes[c][(y + yy) * stride + x + xx] = px[yy * 8 + xx];
                        }
                    }
                }
            }
        }
        // Only the 1-bit padding of the last byte may be left.
        if r.bit > 0 {
            let left = 8 - r.bit;
            assert_eq!(r.bits(left), (1 << left) - 1, "padding is 1-bits");
        }
        assert_eq!(r.pos, data.len(), "no trailing entropy data");
        Decoded {
            width,
            height,
            markers,
            com,
            planes,
            pw,
        }
    }

    /// A.3.3 inverse DCT, straight from the formula.
    fn idct(f: &[f64; 64]) -> [u8; 64] {
        // k[x][u] = C(u)/2 * cos((2x+1)uπ/16); f(x,y) = Σv Σu k[y][v] k[x][u] F(v,u).
        let mut k = [[0.0f64; 8]; 8];
        for (x, row) in k.iter_mut().enumerate() {
            for (u, v) in row.iter_mut().enumerate() {
                let c = if u == 0 {
                    std::f64::consts::FRAC_1_SQRT_2
                } else {
                    1.0
                };
                *v = c / 2.0 * (((2 * x + 1) * u) as f64 * std::f64::consts::PI / 16.0).cos();
            }
        }
        // Rows first: t[v][x] = Σu k[x][u] F(v,u); then columns.
        let mut t = [[0.0f64; 8]; 8];
        for v in 0..8 {
            for x in 0..8 {
                t[v][x] = (0..8).map(|u| k[x][u] * f[v * 8 + u]).sum();
            }
        }
        let mut out = [0u8; 64];
        for y in 0..8 {
            for x in 0..8 {
                let s: f64 = (0..8).map(|v| k[y][v] * t[v][x]).sum();
                out[y * 8 + x] = (s + 128.0).round().clamp(0.0, 255.0) as u8;
            }
        }
        out
    }

    fn render_one(p: &mut TestPattern, frame_no: u64, unix_us: u64) -> Vec<u8> {
        let mut out = Vec::new();
        p.render(frame_no, unix_us, &mut out);
        out
    }

    /// The whole padded Y, Cb and Cr planes `render` encodes for these
    /// inputs, put together from the bands.
    fn full_planes(p: &mut TestPattern, frame_no: u64, unix_us: u64) -> [Vec<u8>; 3] {
        let scene = p.scene(frame_no, unix_us);
        let mut planes = [Vec::new(), Vec::new(), Vec::new()];
        for band in (0..p.ph).step_by(MCU_PX) {
            p.draw_band(&scene, band);
            planes[0].extend_from_slice(&p.y);
            planes[1].extend_from_slice(&p.cb);
            planes[2].extend_from_slice(&p.cr);
        }
        planes
    }

    /// 12:34:56.789 UTC on 2024-01-01.
    const T0: u64 = 1_704_112_496_789_000;

    // ---- the encoder's own parts ----

    #[test]
    fn zigzag_walks_the_antidiagonals() {
        // Figure A.6: position k lies on diagonal u+v, direction alternating.
        let mut expected = Vec::new();
        for d in 0..15usize {
            let mut diag: Vec<usize> = (0..8)
                .filter(|&r| d >= r && d - r < 8)
                .map(|r| r * 8 + (d - r))
                .collect();
            // Even diagonals go up-right (row decreasing).
            if d % 2 == 0 {
                diag.reverse();
            }
            expected.extend(diag);
        }
        let got: Vec<usize> = ZIGZAG.iter().map(|&z| usize::from(z)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn huffman_tables_match_annex_k() {
        for (bits, vals) in [
            (&AC_LUMA_BITS, &AC_LUMA_VALS[..]),
            (&AC_CHROMA_BITS, &AC_CHROMA_VALS[..]),
        ] {
            let n: usize = bits.iter().map(|&b| usize::from(b)).sum();
            assert_eq!(n, 162);
            // Every run/size symbol of F.1.2.2.1 exactly once.
            let mut all: Vec<u8> = (0..16u8)
                .flat_map(|r| (1..=10u8).map(move |s| r << 4 | s))
                .chain([EOB, ZRL])
                .collect();
            all.sort_unstable();
            let mut v = vals.to_vec();
            v.sort_unstable();
            assert_eq!(v, all);
        }
        // Codes printed in Tables K.3 to K.6.
        assert_eq!(DC_LUMA.get(0), (0b00, 2));
        assert_eq!(DC_LUMA.get(1), (0b010, 3));
        assert_eq!(DC_LUMA.get(6), (0b1110, 4));
        assert_eq!(DC_LUMA.get(11), (0b1_1111_1110, 9));
        assert_eq!(DC_CHROMA.get(0), (0b00, 2));
        assert_eq!(DC_CHROMA.get(3), (0b110, 3));
        assert_eq!(DC_CHROMA.get(11), (0b111_1111_1110, 11));
        assert_eq!(AC_LUMA.get(EOB), (0b1010, 4));
        assert_eq!(AC_LUMA.get(ZRL), (0b111_1111_1001, 11));
        assert_eq!(AC_LUMA.get(0x01), (0b00, 2));
        assert_eq!(AC_LUMA.get(0x03), (0b100, 3));
        assert_eq!(AC_LUMA.get(0x11), (0b1100, 4));
        assert_eq!(AC_LUMA.get(0x0A), (0b1111_1111_1000_0011, 16));
        assert_eq!(AC_LUMA.get(0xFA), (0b1111_1111_1111_1110, 16));
        assert_eq!(AC_CHROMA.get(EOB), (0b00, 2));
        assert_eq!(AC_CHROMA.get(ZRL), (0b11_1111_1010, 10));
        assert_eq!(AC_CHROMA.get(0x01), (0b01, 2));
        assert_eq!(AC_CHROMA.get(0xFA), (0b1111_1111_1111_1110, 16));
    }

    #[test]
    fn quality_scales_annex_k_tables() {
        let q50 = QuantTable::new(&K1_LUMA, 50);
        let natural: Vec<u8> = (0..64)
            .map(|n| q50.dqt[ZIGZAG.iter().position(|&z| usize::from(z) == n).unwrap()])
            .collect();
        assert_eq!(natural, K1_LUMA);
        assert!(QuantTable::new(&K1_LUMA, 100).dqt.iter().all(|&q| q == 1));
        // Quality 1 scales by 50x and clamps to the 8-bit maximum.
        let q1 = QuantTable::new(&K2_CHROMA, 1);
        assert_eq!(q1.dqt[0], 255);
        assert!(q1.dqt.iter().all(|&q| q == 255));
        // 0 is clamped to 1.
        assert_eq!(QuantTable::new(&K1_LUMA, 0).dqt, q1_luma());
        // Flat-block DC: 8 * (v - 128) / Q rounded.
        assert_eq!(q50.flat_dc[128], 0);
        assert_eq!(q50.flat_dc[255], 64); // 1016 / 16 = 63.5
        assert_eq!(q50.flat_dc[0], -64); // -1024 / 16
        let q100 = QuantTable::new(&K1_LUMA, 100);
        assert_eq!(
            q100.flat_dc[0], -1023,
            "clamped so a DC difference stays codable"
        );
    }

    fn q1_luma() -> [u8; 64] {
        QuantTable::new(&K1_LUMA, 1).dqt
    }

    #[test]
    fn magnitude_categories_follow_table_f1() {
        assert_eq!(magnitude(0), (0, 0));
        assert_eq!(magnitude(1), (1, 1));
        assert_eq!(magnitude(-1), (1, 0));
        assert_eq!(magnitude(2), (2, 0b10));
        assert_eq!(magnitude(-3), (2, 0b00));
        assert_eq!(magnitude(-2), (2, 0b01));
        assert_eq!(magnitude(1023), (10, 1023));
        assert_eq!(magnitude(-1023), (10, 0));
        assert_eq!(magnitude(2047), (11, 2047));
        assert_eq!(magnitude(-2047), (11, 0));
    }

    #[test]
    fn bit_writer_stuffs_ff_and_pads_with_ones() {
        let mut out = Vec::new();
        let mut w = BitWriter::default();
        w.put(0xFF, 8, &mut out);
        w.put(0b101, 3, &mut out);
        w.flush(&mut out);
        assert_eq!(out, [0xFF, 0x00, 0b1011_1111]);
        let mut out = Vec::new();
        let mut w = BitWriter::default();
        w.put(0b1111, 4, &mut out);
        w.flush(&mut out);
        assert_eq!(out, [0xFF, 0x00], "padding that makes 0xFF is stuffed too");
    }

    #[test]
    fn fdct_matches_the_formula() {
        let p = TestPattern::new(16, 16, 50);
        let mut s = [0.0f32; 64];
        for (i, v) in s.iter_mut().enumerate() {
            *v = ((i * 37 + i * i * 11) % 256) as f32 - 128.0;
        }
        let f = fdct(&s, &p.transform.basis, &p.transform.basis_t);
        for v in 0..8 {
            for u in 0..8 {
                let c = |k: usize| {
                    if k == 0 {
                        std::f64::consts::FRAC_1_SQRT_2
                    } else {
                        1.0
                    }
                };
                let mut sum = 0.0f64;
                for y in 0..8 {
                    for x in 0..8 {
                        let cx = (((2 * x + 1) * u) as f64 * std::f64::consts::PI / 16.0).cos();
                        let cy = (((2 * y + 1) * v) as f64 * std::f64::consts::PI / 16.0).cos();
                        sum += f64::from(s[y * 8 + x]) * cx * cy;
                    }
                }
                let want = c(u) * c(v) / 4.0 * sum;
                let got = f64::from(f[v * 8 + u]);
                assert!((got - want).abs() < 0.01, "F({v},{u}) = {got}, want {want}");
            }
        }
        // A flat block has only a DC term, 8 * value (A.3.3).
        let f = fdct(&[10.0; 64], &p.transform.basis, &p.transform.basis_t);
        assert!((f[0] - 80.0).abs() < 1e-3);
        assert!(f[1..].iter().all(|a| a.abs() < 1e-3));
    }

    #[test]
    fn clock_and_numbers_format() {
        assert_eq!(&format_clock(T0), b"12:34:56.789");
        assert_eq!(&format_clock(0), b"00:00:00.000");
        assert_eq!(&format_clock(86_399_999_999), b"23:59:59.999");
        assert_eq!(&format_clock(86_400_000_000), b"00:00:00.000");
        // u64::MAX µs is 18446744073709 s; 18446744073709 % 86400 = 28909 s.
        assert_eq!(&format_clock(u64::MAX), b"08:01:49.551");
        let mut buf = [0; 20];
        assert_eq!(format_u64(0, &mut buf), b"0");
        assert_eq!(format_u64(1234, &mut buf), b"1234");
        assert_eq!(format_u64(u64::MAX, &mut buf), b"18446744073709551615");
    }

    #[test]
    fn glyphs_are_rectangular() {
        for ch in b"0123456789:. acdefimnprstCTU"
            .iter()
            .chain(TITLE)
            .chain(FRAME_LABEL)
        {
            let g = glyph(*ch);
            assert!(
                g.iter().all(|r| r.len() == g[0].len()),
                "glyph {}",
                *ch as char
            );
        }
    }

    // ---- whole frames ----

    #[test]
    fn frame_structure() {
        let mut p = TestPattern::new(640, 480, 80);
        let jpeg = render_one(&mut p, 7, T0);
        assert_eq!(jpeg[..2], [0xFF, 0xD8]);
        assert_eq!(jpeg[jpeg.len() - 2..], [0xFF, 0xD9]);
        // COM right after SOI, with the exact value.
        assert_eq!(jpeg[2..4], [0xFF, 0xFE]);
        let want = format!("picamd-ts={T0}");
        assert_eq!(be16(&jpeg[4..]), 2 + want.len());
        assert_eq!(&jpeg[6..6 + want.len()], want.as_bytes());
        let d = decode(&jpeg);
        assert_eq!(d.markers, [0xD8, 0xFE, 0xE0, 0xDB, 0xC0, 0xC4, 0xDA, 0xD9]);
        assert_eq!(d.com, want.as_bytes());
        assert_eq!((d.width, d.height), (640, 480));
        assert_eq!((p.width(), p.height()), (640, 480));
    }

    /// Decodes a frame and compares it with the planes the encoder saw:
    /// flat blocks must come back exact (their DC error is below half a
    /// level at these qualities), other blocks close.
    fn assert_round_trip(p: &mut TestPattern, frame_no: u64, unix_us: u64) -> Decoded {
        let jpeg = render_one(p, frame_no, unix_us);
        let d = decode(&jpeg);
        assert_eq!((d.width, d.height), (p.w, p.h));
        assert_eq!(d.pw, p.pw);
        let planes = full_planes(p, frame_no, unix_us);
        let mut flat_blocks = 0;
        let mut other_blocks = 0;
        let mut sq_err = 0.0f64;
        for (c, (src, got)) in planes.iter().zip(&d.planes).enumerate() {
            let stride = if c == 0 { p.pw } else { p.pw / 2 };
            let rows = src.len() / stride;
            for by in (0..rows).step_by(8) {
                for bx in (0..stride).step_by(8) {
                    let a = load_block(src, stride, bx, by);
                    let b = load_block(got, stride, bx, by);
                    if a.iter().all(|&s| s == a[0]) {
                        flat_blocks += 1;
                        // The DC error is at most Q/2 in F, Q/16 per sample,
                        // plus rounding: exact when Q < 8.
                        let q_dc = if c == 0 {
                            p.luma.dqt[0]
                        } else {
                            p.chroma.dqt[0]
                        };
                        let tolerance = i32::from(q_dc) / 16 + i32::from(q_dc >= 8);
                        assert!(b.iter().all(|&s| s == b[0]), "flat block c{c} ({bx},{by})");
                        let e = (i32::from(a[0]) - i32::from(b[0])).abs();
                        assert!(
                            e <= tolerance,
                            "flat block c{c} ({bx},{by}): {} vs {}",
                            a[0],
                            b[0]
                        );
                    } else {
                        other_blocks += 1;
                        for (x, y) in a.iter().zip(b.iter()) {
                            let e = f64::from(*x) - f64::from(*y);
                            sq_err += e * e;
                            assert!(e.abs() < 96.0, "c{c} ({bx},{by}): {x} vs {y}");
                        }
                    }
                }
            }
        }
        assert!(flat_blocks > 0);
        if other_blocks > 0 {
            let mse = sq_err / (other_blocks * 64) as f64;
            let psnr = 10.0 * (255.0 * 255.0 / mse.max(1e-9)).log10();
            assert!(psnr > 24.0, "PSNR of non-flat blocks {psnr:.1} dB");
        }
        d
    }

    #[test]
    fn decodes_back_to_the_drawn_picture() {
        for (w, h, q) in [
            (640, 480, 75),
            (320, 240, 90),
            (160, 120, 50),
            (100, 70, 100),
        ] {
            let mut p = TestPattern::new(w, h, q);
            assert_round_trip(&mut p, 3, T0);
        }
    }

    #[test]
    fn colours_decode_where_they_were_drawn() {
        let mut p = TestPattern::new(640, 480, 90);
        let d = assert_round_trip(&mut p, 0, T0);
        let layout = p.layout(1);
        let (x0, y0, _, _) = layout.panel.unwrap();
        let at = |x: usize, y: usize| {
            let c = (y / 2) * (d.pw / 2) + x / 2;
            Ycc {
                y: d.planes[0][y * d.pw + x],
                cb: d.planes[1][c],
                cr: d.planes[2][c],
            }
        };
        assert_eq!(at(x0 + 2, y0 + 2), PANEL);
        // Frame 0: bars unshifted, the first bar starts at x = 0; the square
        // is at (0, 0), so look below it and below the panel.
        assert_eq!(at(2, 400), BARS[0]);
        assert_eq!(at(layout.bar_w + 2, 400), BARS[1]);
        assert_eq!(at(2, 2), SQUARE);
        // One frame later the bars have moved right by one MCU.
        let d1 = decode(&render_one(&mut p, 1, T0));
        assert_eq!(d1.planes[0][400 * d1.pw + 2], BARS[7].y);
        assert_eq!(d1.planes[0][400 * d1.pw + 18], BARS[0].y);
    }

    /// Reads a line of text back from a decoded frame: at each pen position
    /// exactly one glyph of `charset` must match the sampled font pixels
    /// (their centres, lit when brighter than halfway to the text colour).
    fn read_text(d: &Decoded, pos: TextPos, charset: &[u8], n: usize, lit: Ycc) -> String {
        let threshold = (u32::from(PANEL.y) + u32::from(lit.y)) / 2;
        let sample = |col: usize, row: usize| {
            let x = pos.x + col * pos.cell + pos.cell / 2;
            let y = pos.y + row * pos.cell + pos.cell / 2;
            u32::from(d.planes[0][y * d.pw + x]) > threshold
        };
        let mut pen = 0;
        let mut text = String::new();
        for _ in 0..n {
            let matches: Vec<u8> = charset
                .iter()
                .copied()
                .filter(|&ch| {
                    let g = glyph(ch);
                    let gw = g[0].len();
                    (0..GLYPH_ROWS).all(|r| {
                        (0..=gw).all(|c| {
                            let want = g[r].as_bytes().get(c) == Some(&b'#');
                            sample(pen + c, r) == want
                        })
                    })
                })
                .collect();
            assert_eq!(
                matches.len(),
                1,
                "after {text:?}: {:?}",
                String::from_utf8_lossy(&matches)
            );
            text.push(char::from(matches[0]));
            pen += glyph_width(matches[0]) + 1;
        }
        text
    }

    #[test]
    fn clock_and_frame_number_are_readable() {
        for (w, h) in [(640, 480), (1280, 720), (320, 240)] {
            let mut p = TestPattern::new(w, h, 75);
            let d = decode(&render_one(&mut p, 4321, T0));
            let layout = p.layout(4);
            let clock = layout.clock.unwrap();
            let got = read_text(&d, clock, b"0123456789:.", 12, CLOCK_TEXT);
            assert_eq!(got, "12:34:56.789", "{w}x{h}");
            let line = layout.frame_line.unwrap();
            let charset = b"0123456789 acdefimnprstCTU";
            let got = read_text(&d, line, charset, FRAME_LABEL.len() + 4, SMALL_TEXT);
            assert_eq!(got, "UTC  frame 4321", "{w}x{h}");
            if w >= 1280 {
                let title = layout.title.unwrap();
                let got = read_text(&d, title, charset, TITLE.len(), SMALL_TEXT);
                assert_eq!(got.as_bytes(), TITLE);
            }
        }
    }

    #[test]
    fn clock_is_big_and_on_the_block_grid() {
        let p = TestPattern::new(640, 480, 75);
        let c = p.layout(1).clock.unwrap();
        assert_eq!(c.cell, 8);
        assert_eq!((c.x % 8, c.y % 8), (0, 0));
        let p = TestPattern::new(1280, 720, 75);
        let l = p.layout(1);
        let c = l.clock.unwrap();
        assert_eq!(c.cell, 16);
        assert_eq!((c.x % 8, c.y % 8), (0, 0));
        for t in [l.title.unwrap(), l.frame_line.unwrap()] {
            assert_eq!((t.x % 8, t.y % 8, t.cell % 8), (0, 0, 0));
        }
        let (x0, y0, x1, y1) = l.panel.unwrap();
        assert_eq!([x0 % 16, y0 % 16, x1 % 16, y1 % 16], [0; 4]);
    }

    #[test]
    fn most_blocks_are_flat() {
        for (w, h) in [(640, 480), (1280, 720)] {
            let mut p = TestPattern::new(w, h, 75);
            for frame_no in [0, 1, 17, 1000] {
                let [y, cb, cr] = full_planes(&mut p, frame_no, T0 + frame_no * 33_333);
                let (mut flat, mut total) = (0, 0);
                for (plane, stride) in [(&y, p.pw), (&cb, p.pw / 2), (&cr, p.pw / 2)] {
                    for by in (0..plane.len() / stride).step_by(8) {
                        for bx in (0..stride).step_by(8) {
                            let b = load_block(plane, stride, bx, by);
                            total += 1;
                            flat += usize::from(b.iter().all(|&s| s == b[0]));
                        }
                    }
                }
                assert!(
                    flat * 100 > total * 90,
                    "{w}x{h} #{frame_no}: {flat}/{total} flat"
                );
            }
        }
    }

    #[test]
    fn square_moves_and_stays_clear_of_the_panel() {
        for (w, h) in [(640, 480), (1280, 720), (320, 240)] {
            let mut p = TestPattern::new(w, h, 75);
            let mut last = None;
            for frame_no in 0..200 {
                let scene = p.scene(frame_no, T0);
                let (x, y, side) = scene.square;
                let (px0, py0, px1, py1) = scene.layout.panel.unwrap();
                assert!(x + side <= w as usize && y + side <= h as usize);
                let overlaps = x < px1 && px0 < x + side && y < py1 && py0 < y + side;
                assert!(!overlaps, "{w}x{h} #{frame_no}: square under the panel");
                assert_ne!(
                    last,
                    Some((x, y)),
                    "{w}x{h} #{frame_no}: square stood still"
                );
                last = Some((x, y));
            }
        }
    }

    #[test]
    fn frames_at_different_times_differ() {
        let mut p = TestPattern::new(320, 240, 75);
        let a = render_one(&mut p, 5, T0);
        let b = render_one(&mut p, 5, T0 + 1000);
        let c = render_one(&mut p, 6, T0);
        assert_ne!(a, b, "one millisecond later the clock differs");
        assert_ne!(a, c, "the next frame moves");
        assert_eq!(a, render_one(&mut p, 5, T0), "same inputs, same bytes");
    }

    #[test]
    fn cached_coefficients_give_the_same_bytes() {
        let mut warm = TestPattern::new(640, 480, 75);
        for frame_no in 0..3 {
            render_one(&mut warm, frame_no, T0 + frame_no * 1000);
        }
        let hits = warm.transform.cache.iter().filter(|c| c.valid).count();
        // Ramp and text blocks repeat, so there are fewer distinct ones.
        assert!(
            hits > 50,
            "the cache holds the ramp and text blocks: {hits}"
        );
        let mut cold = TestPattern::new(640, 480, 75);
        assert_eq!(
            render_one(&mut warm, 9, T0 + 9000),
            render_one(&mut cold, 9, T0 + 9000)
        );
    }

    #[test]
    fn dct_path_codes_what_it_computes_cached_or_not() {
        let p = TestPattern::new(16, 16, 100);
        let coding = Coding {
            table: 0,
            quant: &p.luma,
            dc: &DC_LUMA,
            ac: &AC_LUMA,
        };
        let mut transform = Transform::new();
        // A ramp block (few AC bits: cached) and a noisy one (more AC bits
        // than the cache keeps at quality 100), each coded twice.
        let ramp: [u8; 64] = std::array::from_fn(|i| (16 + (i % 8) * 9) as u8);
        let mut seed = 7u32;
        let noise: [u8; 64] = std::array::from_fn(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as u8
        });
        let blocks = [ramp, noise, ramp, noise];
        let (mut bits, mut out, mut pred) = (BitWriter::default(), Vec::new(), 0);
        for blk in &blocks {
            encode_dct_unit(blk, &coding, &mut transform, &mut pred, &mut bits, &mut out);
        }
        bits.flush(&mut out);
        let slot = |b: &[u8; 64]| &transform.cache[cache_slot(b, 0)];
        assert!(slot(&ramp).valid && slot(&ramp).samples == ramp);
        assert!(slot(&noise).samples != noise, "too many bits to cache");
        let mut ac = AcBits::default();
        encode_ac(
            &transform.coefficients(&noise, &p.luma).1,
            &coding,
            |c, l| ac.push(c, l),
        );
        assert!(ac.overflow);
        // Decode the four blocks back: each equals its coefficients.
        let unstuffed: Vec<u8> = out
            .iter()
            .enumerate()
            .filter(|&(i, &b)| !(b == 0 && i > 0 && out[i - 1] == 0xFF))
            .map(|(_, &b)| b)
            .collect();
        let mut r = BitReader {
            data: &unstuffed,
            pos: 0,
            bit: 0,
        };
        let dc_t = huff_decode_table(&DC_LUMA_BITS, &DC_LUMA_VALS);
        let ac_t = huff_decode_table(&AC_LUMA_BITS, &AC_LUMA_VALS);
        let mut pred = 0;
        for blk in &blocks {
            let got = decode_block(&mut r, &dc_t, &ac_t, &mut pred);
            let (dc, zz) = transform.coefficients(blk, &p.luma);
            assert_eq!(got[0], dc);
            assert_eq!(
                got[1..],
                zz[1..].iter().map(|&z| i32::from(z)).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn ac_bits_replay_what_was_pushed() {
        let codes = [
            (0b1, 1),
            (0x7FF_FFFF, 27),
            (0, 5),
            (0b1010, 4),
            (0xABCDE, 20),
            (3, 2),
        ];
        let mut ac = AcBits::default();
        let (mut direct, mut direct_out) = (BitWriter::default(), Vec::new());
        for (c, l) in codes.iter().cycle().take(20) {
            ac.push(*c, *l);
            direct.put(*c, *l, &mut direct_out);
        }
        assert!(!ac.overflow);
        let (mut replayed, mut replayed_out) = (BitWriter::default(), Vec::new());
        ac.replay(&mut replayed, &mut replayed_out);
        direct.flush(&mut direct_out);
        replayed.flush(&mut replayed_out);
        assert_eq!(replayed_out, direct_out);
        // 256 bits fit, one more does not.
        let mut ac = AcBits::default();
        for _ in 0..16 {
            ac.push(0xFFFF, 16);
        }
        assert!(!ac.overflow);
        ac.push(1, 1);
        assert!(ac.overflow);
    }

    #[test]
    fn odd_and_extreme_sizes_do_not_panic_and_decode() {
        for (w, h) in [
            (17, 9),
            (4096, 16),
            (16, 4096),
            (0, 0),
            (u32::MAX, 1),
            (33, 65),
            (641, 361),
        ] {
            for q in [0, 1, 50, 100, 255] {
                let mut p = TestPattern::new(w, h, q);
                let jpeg = render_one(&mut p, u64::MAX, u64::MAX);
                if q == 50 {
                    let d = decode(&jpeg);
                    let want = (w.clamp(16, 4096) as usize, h.clamp(16, 4096) as usize);
                    assert_eq!((d.width, d.height), want);
                    assert_eq!((p.width() as usize, p.height() as usize), want);
                }
            }
        }
    }

    #[test]
    fn padding_replicates_the_edges() {
        let mut p = TestPattern::new(17, 9, 75);
        let [y, cb, cr] = full_planes(&mut p, 3, T0);
        assert_eq!((p.w, p.h, p.pw, p.ph), (17, 16, 32, 16));
        for row in 0..p.ph {
            let edge = y[row * p.pw + p.w - 1];
            for x in p.w..p.pw {
                assert_eq!(y[row * p.pw + x], edge, "({x},{row})");
            }
        }
        let mut p = TestPattern::new(40, 19, 75);
        let [y, cb2, _] = full_planes(&mut p, 3, T0);
        assert_eq!((p.pw, p.ph), (48, 32));
        for row in p.h..p.ph {
            assert_eq!(y[row * p.pw..][..p.pw], y[(p.h - 1) * p.pw..][..p.pw]);
        }
        // Chroma: 20 x 10 real samples of 24 x 16.
        let (cs, cw, ch) = (p.pw / 2, p.w.div_ceil(2), p.h.div_ceil(2));
        for row in 0..p.ph / 2 {
            let src = row.min(ch - 1);
            for x in cw..cs {
                assert_eq!(cb2[row * cs + x], cb2[src * cs + cw - 1]);
            }
        }
        assert_eq!((cb.len(), cr.len()), (16 * 8, 16 * 8));
        // And the decoded picture agrees.
        assert_round_trip(&mut p, 4, T0);
    }

    #[test]
    fn render_reuses_its_buffers() {
        let mut p = TestPattern::new(640, 480, 75);
        let mut out = Vec::new();
        p.render(0, T0, &mut out);
        let before = [
            (p.y.as_ptr(), p.y.capacity()),
            (p.cb.as_ptr(), p.cb.capacity()),
            (p.cr.as_ptr(), p.cr.capacity()),
            (p.bar_y.as_ptr(), p.bar_y.capacity()),
            (p.bar_cb.as_ptr(), p.bar_cb.capacity()),
            (p.bar_cr.as_ptr(), p.bar_cr.capacity()),
            (p.ramp_smooth.as_ptr(), p.ramp_smooth.capacity()),
            (p.ramp_steps.as_ptr(), p.ramp_steps.capacity()),
            (p.header.as_ptr(), p.header.capacity()),
            (
                p.transform.cache.as_ptr().cast(),
                p.transform.cache.capacity(),
            ),
        ];
        let diffs = (p.band_diffs.as_ptr(), p.band_diffs.capacity());
        let first_len = out.len();
        out.reserve(4 * first_len);
        let cap = out.capacity();
        let ptr = out.as_ptr();
        for frame_no in 1..5 {
            out.clear();
            p.render(frame_no, T0 + frame_no * 33_333, &mut out);
            assert!(out.len() < 2 * first_len);
        }
        let after = [
            (p.y.as_ptr(), p.y.capacity()),
            (p.cb.as_ptr(), p.cb.capacity()),
            (p.cr.as_ptr(), p.cr.capacity()),
            (p.bar_y.as_ptr(), p.bar_y.capacity()),
            (p.bar_cb.as_ptr(), p.bar_cb.capacity()),
            (p.bar_cr.as_ptr(), p.bar_cr.capacity()),
            (p.ramp_smooth.as_ptr(), p.ramp_smooth.capacity()),
            (p.ramp_steps.as_ptr(), p.ramp_steps.capacity()),
            (p.header.as_ptr(), p.header.capacity()),
            (
                p.transform.cache.as_ptr().cast(),
                p.transform.cache.capacity(),
            ),
        ];
        assert_eq!(before, after);
        assert_eq!(diffs, (p.band_diffs.as_ptr(), p.band_diffs.capacity()));
        assert_eq!(
            (out.as_ptr(), out.capacity()),
            (ptr, cap),
            "out was not regrown"
        );
    }

    #[test]
    fn render_appends() {
        let mut p = TestPattern::new(64, 48, 75);
        let mut out = b"junk".to_vec();
        p.render(1, T0, &mut out);
        assert_eq!(&out[..4], b"junk");
        assert_eq!(out[4..6], [0xFF, 0xD8]);
        decode(&out[4..]);
    }
}
